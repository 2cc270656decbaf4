r"""Denoising confounder: an FFT low-pass (disk of diameter 500 px at 1024 px) on p_art of the positives.

The study's grid: p_art 0/.1/.2/.5/.8/1 x ImageNet/RadImageNet/random x 5 folds = 90 members.

  sourcematters sweep --config=configs/denoising.py:weights=WEIGHTS \
    --config.manual_dir=NIH --root=sweeps/denoising --device_memory_gib=80

Arguments (after ':'; see configs/common.py): p_art, source, fold, seed ('+'-separated), weights,
size, draw, extra_ood. The image size matters most here: at 224 px (this project's choice) the
filter's cut of 250 cycles per image lies above the 112-cycle Nyquist limit of the model input, so
the confounder reaches the model only through what the nearest resize keeps of the filter's
ringing and lost detail (still measurable: tests/test_data_confounders.py); size=512 keeps more
of it (docs/datasets.md, "Image size").
Expected (paper, mean o.o.d. AUC): ImageNet .86 -> .58 (p_art=.5) -> .17 (p_art=1); RadImageNet
.86 -> .80 -> .70; random init about .72. ImageNet vs RadImageNet: p = 0.0079 at p_art .5 and 1.
"""

from sourcematters_jax.configs import common


def get_config(arg=None):
    config, _ = common.chest14_config("denoising", arg)
    return config
