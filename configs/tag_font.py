r"""Tag-font sensitivity at demo size: the demo's model and data (configs/demo.py) with one tag font.

p_art 0 / .1 / .5 / 1 x random init x fold 1 x seeds 1-3 = 12 members in one program.

The study drew its tag with `findfont(FontProperties(family='sans-serif', weight='light'))`,
which is DejaVu Sans ExtraLight on a machine with the common DejaVu fonts and DejaVu Sans Book
without them; the project's default is matplotlib's bundled Book face. One program per font
(the font is a property of the dataset, not a member):

  python -m sourcematters_jax.main --config=configs/tag_font.py:font=bundled \
    --workdir=workdirs/tag_font/bundled --config.data_dir=workdirs/tfds
  python -m sourcematters_jax.main --config=configs/tag_font.py:font=study_call \
    --workdir=workdirs/tag_font/study_call --config.data_dir=workdirs/tfds

Arguments (after ':'): font ('bundled', 'study_call' (default) or a .ttf path), p_art, seed
('+'-separated).
Expected: the numbers measured on a 2-core CPU are in docs/datasets.md ("Tag font"); the
synthetic tag is a 48 px letter on 256 px images (tag_scale 3), resized to 64 px, where the
ExtraLight strokes are about one pixel wide.
"""

from sourcematters_jax.configs import common, demo


def get_config(arg=None):
    a = common.parse_arg(arg, font="study_call", p_art=(0.0, 0.1, 0.5, 1.0), seed=(1, 2, 3))
    config = demo.get_config(f"p_art={'+'.join(map(str, a.p_art))},seed={'+'.join(map(str, a.seed))}")
    common.set_data_options(config, tag_font=a.font)
    return config
