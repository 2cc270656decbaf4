r"""X-ray noise in CT: the X-ray photon-count noise (a weaker level) on the CT crops of p_art of the
malignant nodules (LIDC-IDRI).

The study's grid: p_art 0/.1/.2/.5/.8/1 x ImageNet/RadImageNet/random x 5 folds = 90 members. The
levels (unpublished in the study) are data options: 2e7 photons on every crop, 1.5e7 on confounded
ones, as for the X-ray experiment (--config.data_options.xray_photons_confounded=...). Needs the
LIDC-IDRI nodule crops (nodules.csv + crops, see docs/datasets.md) in LIDC:

  sourcematters sweep --config=configs/ct_xray_noise.py:weights=WEIGHTS \
    --config.manual_dir=LIDC --root=sweeps/ct_xray_noise --device_memory_gib=80

Arguments (after ':'; see configs/common.py): p_art, source, fold, seed ('+'-separated), weights.
Expected (paper, mean o.o.d. AUC): ImageNet .82 -> .69 (p_art=.5) -> .50 (p_art=1); RadImageNet
.81 -> .80 -> .68; random init .75 -> .57.
"""

from sourcematters_jax.configs import common


def get_config(arg=None):
    config, _ = common.study_config("ct_xray_noise", arg)
    # Photons per detector pixel of every crop (base) and of the confounded crops instead; fewer
    # photons, more noise. The builder's defaults (lidc.LidcNodules.DEFAULTS), made visible here.
    common.set_data_options(config, xray_photons_base=2e7, xray_photons_confounded=1.5e7)
    return config
