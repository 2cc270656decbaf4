r"""Noise in X-ray: photon-count noise with N=1.5e7 photons (instead of 2e7 for every image) on p_art
of the positives. A subtle confounder (noise SD about 2.1 vs 1.8 grey levels).

The study's grid: p_art 0/.1/.2/.5/.8/1 x ImageNet/RadImageNet/random x 5 folds = 90 members.

  sourcematters sweep --config=configs/xray_noise.py:weights=WEIGHTS \
    --config.manual_dir=NIH --root=sweeps/xray_noise --device_memory_gib=80

Arguments (after ':'; see configs/common.py): p_art, source, fold, seed ('+'-separated), weights,
size, draw, extra_ood, and
  p0: the p_art = 0 protocol (data option p0_protocol). 'clean' (default, the study's, and the one
      the paper comparison uses): the study's Noise panel took its p = 0 point from the runs on the
      raw images (its noise directories start at 10%), so p_art = 0 members train, validate and
      take the i.i.d. test on the raw images and meet noise only in the o.o.d. test.
      'base_noise': p_art = 0 members train on the base-noise (2e7) images like the others.
Expected (paper, mean o.o.d. AUC): ImageNet .82 -> .31 (p_art=.5) -> .00 (p_art=1); RadImageNet
.82 -> .29 -> .04; random init .67 -> .42. No significant ImageNet vs RadImageNet difference.
"""

from sourcematters_jax.configs import common


def get_config(arg=None):
    config, a = common.chest14_config("xray_noise", arg, p0="clean")
    common.set_data_options(config, p0_protocol=a.p0)
    return config
