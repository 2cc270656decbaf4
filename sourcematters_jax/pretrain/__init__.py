"""`sourcematters pretrain`: pretrain a source backbone on a classification dataset.

  config  the locked config schema (a ResNet50 recipe) and its validation
  data    datasets (built-in TFDS builders, any TFDS dataset, a folder of class subfolders)
          streamed with grain
  train   pretrain(config, workdir): data-parallel training, Orbax resume, clu summaries, and
          the backbone in the format convert_weights writes
  cli     the command line
"""
