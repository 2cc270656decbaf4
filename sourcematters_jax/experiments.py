"""The study's six experiments, in one place: `EXPERIMENTS` (name -> Experiment) and `get(name)`.

Every part of the project that depends on which experiment it runs reads an attribute of the
`Experiment` here instead of keeping its own list of names or testing `experiment == "sex"`:
members and the config schema validate names against `NAMES`; data/ builds `datasets` and reads
the `variants` pair the builders store, and picks the member splits by `split_design`; the
configs take `dataset`; the report takes `title` and `figure`. Facts from PROTOCOL.md
("Datasets", "Confounders", "Evaluation"). The order of `EXPERIMENTS` is the study's (the key
order of reference/paper_results.csv and of the report's tables).

This module imports nothing of the project (and no JAX or TFDS), so anything may import it.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Mapping

# How a member's train / val / test splits are made (data/experiment.py).
FOLDS = "folds"  # one fixed test set, 5 patient-grouped folds; confounded positives are drawn
HELDOUT_BY_SEX = "heldout_by_sex"  # sampled pools per p_art; i.i.d./clean tests from held-out patients
SPLIT_DESIGNS = (FOLDS, HELDOUT_BY_SEX)
MODALITIES = ("xray", "ct")
FIGURES = ("main", "noise")  # the paper's two figures (results/figures.py)
SYNTHETIC_DATASET = "synthetic_cxr"  # the generated stand-in for the NIH download


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One experiment of the study: what it runs on and how its members' splits are made.

    name:            the key in results.csv, paper_results.csv and config.experiment.
    title:           the display name of tables and figure panels (the paper's).
    modality:        'xray' or 'ct'.
    datasets:        the TFDS datasets (data/experiment.BUILDERS keys) it can run on; the first is
                     the study's (the configs' default), the others stand-ins (synthetic_cxr).
    variants:        the pool's image variants (0 = unconfounded, 1 = confounded) as the builders
                     store them; one variant for a sampled experiment (nothing is drawn).
    split_design:    FOLDS or HELDOUT_BY_SEX (see the constants above).
    figure:          the paper figure whose panels include it ('main' or 'noise').
    synthetic_kind:  synthetic_cxr's `kind` option for this experiment (None: no synthetic stand-in).
    shared_build:    experiments with the same (non-None) value read one build that stores all their
                     variants, so each can also score its members on the others' o.o.d. tests
                     (data option extra_ood).
    p0_protocol:     the default data option p0_protocol (None: the option does not apply).
    tag_box:         the confounder is the drawn tag, whose box reuse/saliency.py scores.
    """

    name: str
    title: str
    modality: str
    datasets: tuple[str, ...]
    variants: tuple[str, ...]
    split_design: str
    figure: str
    synthetic_kind: str | None = None
    shared_build: str | None = None
    p0_protocol: str | None = None
    tag_box: bool = False

    def __post_init__(self):
        def need(ok: bool, field: str, msg: str) -> None:
            if not ok:
                raise ValueError(f"experiment {self.name!r}: field {field} {msg} "
                                 f"(got {getattr(self, field)!r})")

        need(self.modality in MODALITIES, "modality", f"must be one of {MODALITIES}")
        need(self.split_design in SPLIT_DESIGNS, "split_design", f"must be one of {SPLIT_DESIGNS}")
        need(self.figure in FIGURES, "figure", f"must be one of {FIGURES}")
        need(len(self.datasets) >= 1 and len(set(self.datasets)) == len(self.datasets), "datasets",
             "must name at least one dataset, each once")
        need(len(self.variants) == (2 if self.draws_confounders else 1), "variants",
             "must be a (clean, confounded) pair for drawn confounders, one variant for sampled ones")
        need((self.synthetic_kind is None) == (SYNTHETIC_DATASET not in self.datasets), "synthetic_kind",
             f"is set exactly when {SYNTHETIC_DATASET!r} is among the datasets")

    @property
    def dataset(self) -> str:
        """The study's dataset: what the experiment's config builds."""
        return self.datasets[0]

    @property
    def draws_confounders(self) -> bool:
        """True when each member draws which positives carry the confounder (not the sex design)."""
        return self.split_design == FOLDS


_CHEST14 = ("chest14_source_matters", SYNTHETIC_DATASET)
_ALL = (
    Experiment("tag", "Tag", "xray", _CHEST14, ("clean", "tag"), FOLDS, "main",
               synthetic_kind="source_matters", shared_build="chest14", tag_box=True),
    Experiment("denoising", "Denoising", "xray", _CHEST14, ("clean", "lowpass"), FOLDS, "main",
               synthetic_kind="source_matters", shared_build="chest14"),
    Experiment("sex", "Sex", "xray", ("chest14_sex", SYNTHETIC_DATASET), ("clean",), HELDOUT_BY_SEX,
               "main", synthetic_kind="sex"),
    Experiment("xray_noise", "Noise in X-ray", "xray", _CHEST14, ("noise_base", "noise_confounded"),
               FOLDS, "noise", synthetic_kind="source_matters", shared_build="chest14",
               p0_protocol="clean"),
    Experiment("ct_noise", "Noise in CT", "ct", ("lidc_nodules",), ("ct_noise_base", "ct_noise_confounded"),
               FOLDS, "noise"),
    Experiment("ct_xray_noise", "X-ray noise in CT", "ct", ("lidc_nodules",),
               ("xray_noise_base", "xray_noise_confounded"), FOLDS, "noise"),
)
EXPERIMENTS: Mapping[str, Experiment] = types.MappingProxyType({e.name: e for e in _ALL})
NAMES: tuple[str, ...] = tuple(EXPERIMENTS)


def get(name: str) -> Experiment:
    """The Experiment called `name`.

    Raises:
      ValueError: `name` is not an experiment of the study (the message lists the valid names).
    """
    try:
        return EXPERIMENTS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown experiment {name!r}; expected one of {NAMES}") from None


def where(**attributes: object) -> tuple[str, ...]:
    """Names of the experiments whose attributes equal all of `attributes`, in the study's order.

    E.g. where(figure='main') -> ('tag', 'denoising', 'sex').
    """
    fields = {f.name for f in dataclasses.fields(Experiment)} | {"dataset", "draws_confounders"}
    unknown = sorted(set(attributes) - fields)
    if unknown:
        raise ValueError(f"unknown Experiment attribute(s) {unknown}; expected some of {sorted(fields)}")
    return tuple(e.name for e in _ALL if all(getattr(e, k) == v for k, v in attributes.items()))


def build_peers(name: str) -> tuple[str, ...]:
    """The other experiments that share `name`'s build (their o.o.d. tests are extra_ood choices)."""
    shared = get(name).shared_build
    return () if shared is None else tuple(n for n in where(shared_build=shared) if n != name)
