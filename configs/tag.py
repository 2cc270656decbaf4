r"""Tag confounder: a white "R" on a fraction p_art of the positive training X-rays (chest14).

The study's grid: p_art 0/.1/.2/.5/.8/1 x ImageNet/RadImageNet/random x 5 folds x seed 812
= 90 members. Run it (from the repository root; weights converted once with `sourcematters convert`
into WEIGHTS/imagenet and WEIGHTS/radimagenet; NIH ChestX-ray14 extracted into NIH,
see docs/datasets.md):

  sourcematters sweep --config=configs/tag.py:weights=WEIGHTS \
    --config.manual_dir=NIH --root=sweeps/tag --device_memory_gib=80

or one program (e.g. ImageNet only, two seeds) without the launcher:

  python -m sourcematters_jax.main --config=configs/tag.py:weights=WEIGHTS,source=imagenet,seed=812+813 \
    --config.manual_dir=NIH --workdir=runs/tag_imagenet

Arguments (after ':'; see configs/common.py): p_art, source, fold, seed ('+'-separated), weights,
size (224, this project's choice; 512 the alternative), draw, extra_ood, and
  font: the tag's TrueType face (data option tag_font): 'bundled' (default: matplotlib's
        DejaVuSans.ttf, the same on every machine), 'study_call' (what the study's
        findfont(FontProperties(family='sans-serif', weight='light')) returns on this machine:
        DejaVuSans-ExtraLight.ttf where fonts-dejavu-extra is installed, else DejaVuSans.ttf) or a
        path to a .ttf. The built dataset records the resolved file and its sha256.
Expected (paper, mean o.o.d. AUC over folds, Keras-compatible): ImageNet falls from .86 at p_art=0 to
.38 at .5 and .01 at 1; RadImageNet degrades less (.84 -> .72 -> .43); random init stays about .68.
i.i.d. AUC stays .80-1.00 for both pretrained sources. ImageNet vs RadImageNet at p_art=.5:
permutation p = 0.0079.
"""

from sourcematters_jax.configs import common


def get_config(arg=None):
    config, a = common.chest14_config("tag", arg, font="bundled")
    common.set_data_options(config, tag_font=a.font)
    return config
