r"""Noise in CT: low-dose photon-count noise on the CT crops of p_art of the malignant nodules (LIDC-IDRI).

The study's grid: p_art 0/.1/.2/.5/.8/1 x ImageNet/RadImageNet/random x 5 folds = 90 members. The
study did not publish its CT protocol or noise levels; this project's recipe is in PROTOCOL.md
(pylidc consensus crops, malignancy median_high > 3 vs < 3). The noise levels are data options:
sinogram-domain Poisson noise with 2e6 photons on every crop and 1e6 on confounded ones
(change with --config.data_options.ct_photons_confounded=5e5). Needs the LIDC-IDRI nodule crops (nodules.csv + crops, see docs/datasets.md) in LIDC,
made from the download by `sourcematters prepare-lidc --lidc_root DOWNLOAD --out LIDC`:

  sourcematters sweep --config=configs/ct_noise.py:weights=WEIGHTS \
    --config.manual_dir=LIDC --root=sweeps/ct_noise --device_memory_gib=80

Arguments (after ':'; see configs/common.py): p_art, source, fold, seed ('+'-separated), weights.
Expected (paper, mean o.o.d. AUC): ImageNet .81 -> .33 (p_art=.5) -> .14 (p_art=1); RadImageNet
.84 -> .45 -> .24; random init .52 -> .07 (a strong confounder: every source learns it).
"""

from sourcematters_jax.configs import common


def get_config(arg=None):
    config, _ = common.study_config("ct_noise", arg)
    # Photons per detector pixel of every crop (base) and of the confounded crops instead; fewer
    # photons, more noise. The builder's defaults (lidc.LidcNodules.DEFAULTS), made visible here.
    common.set_data_options(config, ct_photons_base=2e6, ct_photons_confounded=1e6)
    return config
