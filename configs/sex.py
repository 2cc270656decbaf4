r"""Sex confounder: positives (atelectasis) are female at proportion p_art in training, sampled from
NIH ChestX-ray14 with the study's splits; the o.o.d. test pairs male positives with female negatives.

The study's grid: p_art 0/.1/.2/.5/.8/1 x ImageNet/RadImageNet/random x 5 folds = 90 members.
Needs the NIH images and Data_Entry_2017.csv in NIH (the builder's manual_dir):

  sourcematters sweep --config=configs/sex.py:weights=WEIGHTS \
    --config.manual_dir=NIH --root=sweeps/sex --device_memory_gib=80

Arguments (after ':'; see configs/common.py): p_art, source, fold, seed ('+'-separated), weights.
Expected (paper, mean o.o.d. AUC): ImageNet .69 -> .38 (p_art=.5) -> .11 (p_art=1); RadImageNet
.71 -> .53 -> .17; random init .58 -> .45. ImageNet vs RadImageNet: p = 0.0079 at p_art .1/.5/.8/1.
"""

from sourcematters_jax.configs import common


def get_config(arg=None):
    config, _ = common.study_config("sex", arg)
    return config
