r"""The demo: the tag confounder on built-in synthetic chest X-rays, tiny ResNet, random init, CPU.

p_art 0 / 0.5 / 1 x random init x fold 1 x 3 seeds = 9 members in one program: 64 px images, a
ResNet with one block per stage and width 8, the study's recipe otherwise (Adam 1e-3, Keras
augmentation, best-val-loss weights) with batch 16 for 20 epochs. Run:

  bash scripts/demo.sh                      # installs, then runs `sourcematters demo`
  sourcematters demo [--root=DIR] [--fresh] # the same, already installed
  sourcematters sweep --config=configs/demo.py --root=workdirs/demo_sweep   # the sweep alone

Arguments (after ':'): p_art, seed ('+'-separated), e.g. configs/demo.py:seed=1+2+3+4+5.
Expected (measured on a 2-core CPU: about 2-6.5 min wall depending on other load, 2.9-4.6
CPU-minutes, most of it the 20 epochs): i.i.d. AUC rises with p_art as the tag helps (about
.55-.72 / .81-.83 / 1.00), while
o.o.d. AUC (tag on every negative, none on the positives) falls from about .6-.7 at p_art=0 to
about 0.00 at p_art=0.5 and 1: the network has learned the tag, not the disease. Random init on
217 training images learns the disease only weakly, so p_art=0 varies between seeds (sd .1-.2).
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
    config.batch_size = 16  # 217 training images: 14 steps per epoch
    config.eval_batch_size = 128
    config.num_epochs = 20
    config.patience = 20
    config.progress_every_secs = 10.0
    return config
