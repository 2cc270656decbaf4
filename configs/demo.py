r"""The demo: the tag confounder on built-in synthetic chest X-rays, three sources, tiny ResNet, CPU.

Sources natural and radiology (pretrained by `sourcematters demo` with configs/pretrain.py's tiny
recipe on the built-in synthetic_natural / synthetic_radiology datasets, see
sourcematters_jax/demo_sources.py) and random init, x p_art 0 / 0.5 / 1 x fold 1 x 3 seeds = 27
members in one program: 64 px images, a ResNet with one block per stage and width 8, the study's
recipe otherwise (Adam 1e-3, Keras augmentation, best-val-loss weights) with batch 16 for 20
epochs. Run:

  bash scripts/demo.sh                      # installs, then runs `sourcematters demo`
  sourcematters demo [--root=DIR] [--fresh] # the same, already installed
  sourcematters sweep --config=configs/demo.py:source=random --root=workdirs/demo_sweep   # a sweep alone
  (the pretrained sources need their checkpoints: --config.sources.natural=DIR ...)

Arguments (after ':'): p_art, seed, source ('+'-separated), e.g. configs/demo.py:seed=1+2+3+4+5.
What to expect is in the README's demo section (measured numbers and times).
"""

from sourcematters_jax.configs import common


def get_config(arg=None):
    a = common.parse_arg(arg, p_art=(0.0, 0.5, 1.0), seed=(1, 2, 3),
                         source=("natural", "radiology", "random"))
    config, _ = common.study_config(
        "tag", f"source={'+'.join(a.source)},fold=1,p_art={'+'.join(map(str, a.p_art))},"
               f"seed={'+'.join(map(str, a.seed))}")
    with config.sources.unlocked():  # '' = pretrained by the demo into ROOT/sources/NAME
        config.sources.natural = ""
        config.sources.radiology = ""
    config.dataset = "synthetic_cxr"
    config.image_size = 64
    config.model.stage_sizes = (1, 1, 1, 1)
    config.model.width = 8
    config.batch_size = 16  # 217 training images: 14 steps per epoch
    config.eval_batch_size = 128
    config.num_epochs = 20
    config.patience = 20
    config.progress_every_secs = 10.0
    return config
