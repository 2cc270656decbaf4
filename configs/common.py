"""Shared pieces of the experiment configs: `parse_arg` and the study's grid.

Every config file has `get_config(arg=None)`; `arg` is what follows ':' in
`--config=configs/tag.py:ARG`, a comma-separated list of `key=value` pairs (big_vision style):

    --config=configs/tag.py:p_art=0+0.5+1,source=imagenet,seed=812+813

Each config declares the keys it accepts with their defaults; a key it does not declare is an
error that names it. A default's type decides how a value parses (tuples take '+'-separated
values, bools accept a bare `key` for True). Any other field is set with the usual override,
`--config.batch_size=64`; the returned config is locked, so a misspelt field is an error too.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from sourcematters_jax import experiments
from sourcematters_jax.members import P_ART_GRID, PAPER_SOURCES, STUDY_SEED
from sourcematters_jax.train.config import base_config

PAPER_FOLDS = (1, 2, 3, 4, 5)
# The model input side. The study passed it on the command line and never published it; 224 is
# this project's choice (ResNet50's usual input). At 224 the study's 64 px tag is ~14 px (44 changed
# pixels) and the low-pass cut (250 cycles per image) lies above the 112-cycle Nyquist limit, so
# denoising acts only through what survives the nearest resize; 512 keeps more of both
# (docs/datasets.md, "Image size").
PROJECT_IMAGE_SIZE = 224
ALTERNATIVE_IMAGE_SIZE = 512


def _parse_value(key: str, text: str, default: Any) -> Any:
    if isinstance(default, tuple):
        element = default[0] if default else ""
        return tuple(_parse_value(key, part, element) for part in text.split("+") if part != "")
    try:
        if isinstance(default, bool):
            if text.lower() in ("", "1", "true", "yes"):
                return True
            if text.lower() in ("0", "false", "no"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ValueError(f"config argument {key}={text!r}: expected a {type(default).__name__}") from None
    return text


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
    """Parse a get_config argument 'k1=v1,k2=v2' against `spec` (key -> default value).

    Raises:
      ValueError: an unknown key (named, with the accepted keys) or a value of the wrong type.
    """
    values = dict(spec)
    for item in (arg or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, has_value, text = item.partition("=")
        key = key.strip()
        if key not in spec:
            raise ValueError(f"unknown config argument {key!r} in {arg!r}; accepted: {sorted(spec)}")
        if not has_value and not isinstance(spec[key], bool):
            raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
        values[key] = _parse_value(key, text.strip(), spec[key])
    return ml_collections.ConfigDict(values)


def study_config(experiment: str, arg: str | None, **extra_spec: Any) -> tuple[ml_collections.ConfigDict,
                                                                                   ml_collections.ConfigDict]:
    """The paper's grid for one experiment: base_config() with the experiment, dataset and sweep.

    The dataset is the experiment's study dataset (experiments.get(experiment).dataset).

    Arguments accepted in `arg` (each restricts or changes the sweep):
      p_art:   '+'-separated fractions of confounded positives (default 0+0.1+0.2+0.5+0.8+1)
      source:  '+'-separated sources (default imagenet+radimagenet+random)
      fold:    '+'-separated folds (default 1+2+3+4+5)
      seed:    '+'-separated seeds (default 812, the study's)
      weights: a directory holding converted checkpoints `imagenet/` and `radimagenet/`
               (what `sourcematters convert` wrote); sets config.sources.* to them
      size:    the model input side in pixels (default 224: this project's choice, the study
               never published its value; 512 is the documented alternative, see
               docs/datasets.md "Image size")
      draw:    (experiments that draw their confounders, i.e. not sex) which positives carry the confounder: 'per_member' (default; a
               draw per seed, fold and split) or 'shared' (the study's one draw per p_art over
               the whole dataset); data option confound_draw, see docs/datasets.md
    plus `extra_spec` (key -> default) for the calling config.
    Returns:
      (config, parsed arg), the config still locked.
    """
    exp = experiments.get(experiment)
    draw = {"draw": "per_member"} if exp.draws_confounders else {}
    a = parse_arg(arg, p_art=tuple(P_ART_GRID), source=tuple(PAPER_SOURCES), fold=PAPER_FOLDS,
                  seed=(STUDY_SEED,), weights="", size=PROJECT_IMAGE_SIZE, **draw, **extra_spec)
    for key in ("p_art", "source", "fold", "seed"):
        if not a[key]:
            raise ValueError(f"config argument {key} selects no values")
    config = base_config()
    config.experiment = experiment
    config.dataset = exp.dataset
    config.sweep.source = tuple(a.source)
    config.sweep.p_art = tuple(float(p) for p in a.p_art)
    config.sweep.fold = tuple(a.fold)
    config.sweep.seed = tuple(a.seed)
    config.image_size = a.size
    if draw:
        set_data_options(config, confound_draw=a.draw)
    if a.weights:
        root = a.weights.rstrip("/")
        config.sources.imagenet = f"{root}/imagenet"
        config.sources.radimagenet = f"{root}/radimagenet"
    return config, a


def chest14_config(experiment: str, arg: str | None, **extra_spec: Any
                   ) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
    """`study_config` for the experiments sharing one build (tag / denoising / xray_noise), plus

      extra_ood: '+'-separated other chest14 confounders whose o.o.d. tests every member is also
                 scored on (results.csv test sets ood_<confounder>), e.g. denoising+xray_noise;
                 data option extra_ood (default none)
    """
    if not experiments.build_peers(experiment):
        raise ValueError(f"chest14_config is for experiments that share a build "
                         f"(Experiment.shared_build), not {experiment!r}")
    config, a = study_config(experiment, arg, extra_ood="", **extra_spec)
    set_data_options(config, extra_ood=a.extra_ood)
    return config, a


def set_data_options(config: ml_collections.ConfigDict, **options: Any) -> None:
    """Add dataset builder options to `config.data_options` (then locked like the rest).

    They become ordinary overridable fields (`--config.data_options.KEY=VALUE`); the builder
    rejects names it does not know.
    """
    with config.data_options.unlocked():
        for key, value in options.items():
            config.data_options[key] = value
