"""Options of an experiment's member splits, as opposed to options of the TFDS build.

They change which pool rows and masks `member_data` returns, never the stored images, so
`load_experiment` takes them out of its keyword options before the builder sees the rest (and
they never enter the dataset's config name):

  extra_ood      other chest14 confounders whose o.o.d. tests every member is also scored on,
                 e.g. ('denoising', 'xray_noise') for a tag experiment: test splits
                 'test_ood_denoising', 'test_ood_xray_noise' (results.csv test sets
                 'ood_denoising', ...), as each of the study's runs logged AUC on all three
                 o.o.d. sets. Only among experiments that share a build (Experiment.shared_build:
                 tag / denoising / xray_noise on chest14_source_matters or synthetic_cxr, whose
                 builders store every variant).
  p0_protocol    only for experiments with a default p0_protocol (Experiment.p0_protocol:
                 xray_noise). 'clean' (the study's, the default): the p_art = 0 members train,
                 validate and take their i.i.d. test on the raw images, as the study's p = 0 point
                 came from its clean-image runs; they meet noise only in the o.o.d. test.
                 'base_noise': p_art = 0 members see the base-noise (2e7 photons) images like
                 every other member (this project's earlier behaviour).
  confound_draw  'per_member' (default): each (seed, fold, split) draws its own confounded
                 positives (selection.confound_positives). 'shared': the study's one draw per
                 p_art over all positives of the dataset, shared by every fold of a seed
                 (selection.shared_confounded).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from sourcematters_jax import experiments

P0_PROTOCOLS = ("clean", "base_noise")
CONFOUND_DRAWS = ("per_member", "shared")
CLEAN_BLOCK = "clean"  # the raw images of the xray_noise pool (for p0_protocol='clean')


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    """Validated split options (see the module docstring)."""

    extra_ood: tuple[str, ...] = ()
    p0_protocol: str | None = None
    confound_draw: str = "per_member"


DEFAULTS = {f.name: f.default for f in dataclasses.fields(SplitOptions)}


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, (str, tuple, list)) and len(value) == 0)


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.replace("+", ",").split(",")
    return tuple(str(v).strip() for v in value if str(v).strip())


def split_options(experiment: str, dataset: str, options: Mapping[str, Any]
                  ) -> tuple[SplitOptions, dict[str, Any]]:
    """(SplitOptions, the remaining builder options) from `load_experiment`'s keyword options.

    None, '' and () mean the default. Raises ValueError naming the option for a value that does
    not apply to this experiment or dataset.
    """
    builder_options = {k: v for k, v in options.items() if k not in DEFAULTS}
    given = {k: options[k] for k in DEFAULTS if k in options and not _unset(options[k])}
    exp = experiments.get(experiment)
    extra = _names(given.get("extra_ood", ()))
    if extra:
        peers = experiments.build_peers(experiment)
        if not peers or dataset not in exp.datasets:
            sharing = tuple(e for e in experiments.NAMES if experiments.build_peers(e))
            raise ValueError(f"option extra_ood={extra}: only the {sharing} experiments, each on its "
                             f"datasets, carry the other confounders, not {experiment!r} on {dataset!r}")
        bad = sorted(set(extra) - set(peers))
        if bad or len(set(extra)) != len(extra):
            raise ValueError(f"option extra_ood={extra}: expected distinct values among "
                             f"{sorted(peers)} for experiment {experiment!r}")
    p0 = given.get("p0_protocol")
    if p0 is not None and exp.p0_protocol is None:
        owners = " or ".join(repr(e) for e in experiments.NAMES if experiments.get(e).p0_protocol)
        raise ValueError(f"option p0_protocol={p0!r} applies to experiment {owners} only, "
                         f"not {experiment!r}")
    if exp.p0_protocol is not None:
        p0 = p0 or exp.p0_protocol
        if p0 not in P0_PROTOCOLS:
            raise ValueError(f"option p0_protocol={p0!r}: expected one of {P0_PROTOCOLS}")
    draw = given.get("confound_draw", "per_member")
    if draw not in CONFOUND_DRAWS:
        raise ValueError(f"option confound_draw={draw!r}: expected one of {CONFOUND_DRAWS}")
    if draw != "per_member" and not exp.draws_confounders:
        raise ValueError(f"option confound_draw={draw!r}: the {experiment} experiment samples its "
                         "pools and draws nothing")
    return SplitOptions(extra_ood=extra, p0_protocol=p0, confound_draw=draw), builder_options


def pool_blocks(experiment: str, options: SplitOptions) -> dict[str, tuple[str, ...]]:
    """The pool's row blocks: name -> (variant 0, variant 1); the experiment's own block first.

    Each experiment's pair is its Experiment.variants (experiments.py).
    """
    blocks = {experiment: experiments.get(experiment).variants}
    if options.p0_protocol == "clean":
        blocks[CLEAN_BLOCK] = ("clean", "clean")
    for other in options.extra_ood:
        blocks[other] = experiments.get(other).variants
    return blocks
