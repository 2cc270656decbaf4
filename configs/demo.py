r"""The demo: the tag confounder on built-in synthetic chest X-rays, tiny ResNet, random init, CPU.

p_art 0 / 0.5 / 1 x random init x fold 1 x 3 seeds = 9 members, 64 px images, a ResNet with one
block per stage and width 8. Runs end to end in a few minutes on 2 CPU cores:

  bash scripts/demo.sh                      # installs, then runs `sourcematters demo`
  sourcematters demo [--root=DIR]           # the same, already installed
  sourcematters sweep --config=configs/demo.py --root=runs/demo   # the sweep alone

Arguments (after ':'): p_art, seed ('+'-separated), e.g. configs/demo.py:seed=1+2+3+4+5.
Expected: i.i.d. AUC stays high (about 0.8-1.0) at every p_art, while o.o.d. AUC (tag on every
negative, none on the positives) falls from about the i.i.d. value at p_art=0 to far below 0.5 at
p_art=1: the network has learned the tag, not the disease.
"""

from configs import common


def get_config(arg=None):
    a = common.parse_arg(arg, p_art=(0.0, 0.5, 1.0), seed=(1, 2, 3))
    config, _ = common.study_config(
        "tag", f"source=random,fold=1,p_art={'+'.join(map(str, a.p_art))},"
               f"seed={'+'.join(map(str, a.seed))}")
    config.dataset = "synthetic_cxr"
    config.image_size = 64
    config.model.stage_sizes = (1, 1, 1, 1)
    config.model.width = 8
    config.batch_size = 32
    config.eval_batch_size = 128
    config.num_epochs = 10
    config.patience = 10
    config.progress_every_secs = 10.0
    return config
