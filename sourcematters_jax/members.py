"""Members: one fine-tuning run of the study (experiment x source x p_art x fold x seed).

A sweep is a mapping from member field to the values it takes; `expand_sweep` turns it into the
list of members in a fixed, documented order, so member indices are stable across processes
(launchers pack index ranges; resumed programs find their members again).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterable, Mapping, Sequence

from sourcematters_jax import experiments

P_ART_GRID = (0.0, 0.1, 0.2, 0.5, 0.8, 1.0)
PAPER_SOURCES = ("imagenet", "radimagenet", "random")
RANDOM_SOURCE = "random"  # Keras-default random initialisation; needs no weight file.
STUDY_SEED = 812


@dataclasses.dataclass(frozen=True, order=True)
class Member:
    """One fine-tuning run. All fields are plain values so a member is a results-table row."""

    experiment: str
    source: str
    p_art: float
    fold: int
    seed: int = STUDY_SEED

    def __post_init__(self):
        experiments.get(self.experiment)  # raises ValueError naming the valid experiments
        if not 0.0 <= float(self.p_art) <= 1.0:
            raise ValueError(f"p_art must lie in [0, 1], got {self.p_art!r}")
        if not self.source or "/" in self.source:
            raise ValueError(f"source must be a non-empty name without '/', got {self.source!r}")

    @property
    def member_id(self) -> str:
        """A readable unique id, safe as a directory name: `tag-imagenet-p0.5-f1-s812`."""
        return f"{self.experiment}-{self.source}-p{float(self.p_art):g}-f{self.fold}-s{self.seed}"

    def as_row(self) -> dict[str, Any]:
        return {"member_id": self.member_id, **dataclasses.asdict(self)}


MEMBER_FIELDS = tuple(f.name for f in dataclasses.fields(Member))


def expand_sweep(sweep: Mapping[str, Sequence[Any]]) -> list[Member]:
    """Cartesian product of the sweep's values, in the order of MEMBER_FIELDS (last varies fastest).

    Args:
      sweep: field name -> sequence of values, for every field in MEMBER_FIELDS.
    Raises:
      KeyError naming any missing or unknown field; ValueError on an empty value list.
    """
    unknown = sorted(set(sweep) - set(MEMBER_FIELDS))
    missing = [f for f in MEMBER_FIELDS if f not in sweep]
    if unknown or missing:
        raise KeyError(f"sweep fields: unknown {unknown}, missing {missing}; expected {MEMBER_FIELDS}")
    values = []
    for field in MEMBER_FIELDS:
        vals = sweep[field]
        vals = [vals] if isinstance(vals, (str, int, float)) else list(vals)
        if not vals:
            raise ValueError(f"sweep field {field!r} has no values")
        values.append(vals)
    members = [Member(*combo) for combo in itertools.product(*values)]
    ids = [m.member_id for m in members]
    if len(set(ids)) != len(ids):
        raise ValueError("sweep has duplicate members")
    return members


def select_members(members: Sequence[Member], indices: Iterable[int] | None) -> list[Member]:
    """The members at `indices` (all when None), with a clear error for out-of-range indices."""
    if indices is None:
        return list(members)
    indices = list(indices)
    bad = [i for i in indices if not 0 <= i < len(members)]
    if bad:
        raise IndexError(f"member indices {bad} out of range for a sweep of {len(members)} members")
    return [members[i] for i in indices]
