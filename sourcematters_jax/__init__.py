"""sourcematters-jax: JAX/Flax reimplementation of the "Source Matters" study (Juodelyte et al., 2024).

Subpackages:
  models   Keras-topology ResNet50 (and tiny variants) in Flax Linen, plus the study's head.
  data     Confounders, the study's splits, TFDS builders, synthetic chest X-rays, member selection.
  train    Many-member fine-tuning in one sharded, jitted program.
  results  Metrics tables, the study's figures and permutation tests.
"""

__version__ = "0.1.0"
