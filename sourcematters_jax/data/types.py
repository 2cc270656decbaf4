"""The contract between the datasets and the trainer: an image pool plus per-member index splits.

Paper-scale datasets (hundreds to a few thousand images) are device-resident. The pool holds every
image of an experiment once, at model resolution, as uint8, with every variant the experiment
needs precomputed at full resolution before resizing (exactly as the study did). A member never
copies images: it holds indices into the pool plus, per index, whether to take the confounded
variant. The trainer pads these per-member index arrays to a common length with a mask.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol

import numpy as np

CLEAN, CONFOUNDED = 0, 1  # positions in ImagePool.variants
SPLITS = ("train", "val", "test_iid", "test_ood", "test_clean")
TEST_SPLITS = ("test_iid", "test_ood", "test_clean")
EXTRA_OOD_PREFIX = "test_ood_"  # MemberData.extra_tests keys: test_ood_<other confounder>


@dataclasses.dataclass(frozen=True)
class ImagePool:
    """All images of one experiment.

    Attributes:
      images: uint8 [N, V, H, W] grayscale at model resolution. Variant 0 is the image a member sees
        when it is not confounded ("clean"; for the X-ray noise experiment this is the base-noise
        image), variant 1 the confounded one. V == 1 for experiments that sample instead of draw
        (sex): then no index may be marked confounded.
      variants: names of the V variants, e.g. ('clean', 'tag').
      labels: int32 [N], 0 = negative (NO), 1 = positive (YES).
      patient_ids: int64 [N].
      names: the N image file names (for tracing a prediction back to its file).
      metadata: what the dataset recorded about its build (e.g. the tag font file and its
        sha256; the row blocks below), JSON-like. Empty for pools made in memory.

    A pool may hold the experiment's images several times, as consecutive row blocks of equal
    size, each block with its own (variant 0, variant 1) pair: e.g. a tag pool asked for the
    denoising o.o.d. test holds a second block (clean, lowpass). `metadata['blocks']` then maps
    each block name to [first row, variant 0, variant 1]; the first block is the experiment's own.
    The variant axis stays two wide, so the trainer's gather needs no change.
    """

    images: np.ndarray
    variants: tuple[str, ...]
    labels: np.ndarray
    patient_ids: np.ndarray
    names: tuple[str, ...]
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        n = self.images.shape[0]
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, V, H, W], got {self.images.dtype} {self.images.shape}")
        if self.images.shape[1] != len(self.variants):
            raise ValueError(f"{self.images.shape[1]} image variants but names {self.variants}")
        for field in ("labels", "patient_ids", "names"):
            if len(getattr(self, field)) != n:
                raise ValueError(f"{field} has {len(getattr(self, field))} entries for {n} images")


@dataclasses.dataclass(frozen=True)
class SplitIndex:
    """One split of one member: which pool images, and which of them carry the confounder."""

    indices: np.ndarray  # int32 [n], into ImagePool
    confounded: np.ndarray  # bool [n]: take variant CONFOUNDED instead of CLEAN

    def __post_init__(self):
        if self.indices.shape != self.confounded.shape or self.indices.ndim != 1:
            raise ValueError(f"indices {self.indices.shape} and confounded {self.confounded.shape} differ")


@dataclasses.dataclass(frozen=True)
class MemberData:
    """Every split of one member. `test_clean` never has a confounded image.

    `extra_tests` holds further test splits by name, e.g. 'test_ood_denoising' (the o.o.d. test of
    another confounder, on request: `extra_ood` in docs/datasets.md); they are evaluated and
    reported like the three fixed ones.
    """

    train: SplitIndex
    val: SplitIndex
    test_iid: SplitIndex
    test_ood: SplitIndex
    test_clean: SplitIndex
    extra_tests: Mapping[str, SplitIndex] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for name in self.extra_tests:
            if not name.startswith(EXTRA_OOD_PREFIX) or name in TEST_SPLITS:
                raise ValueError(f"extra test split {name!r} must be named {EXTRA_OOD_PREFIX}<confounder>")

    def test_splits(self) -> dict[str, SplitIndex]:
        """Every test split by name: the three fixed ones, then the extra ones."""
        return {**{s: getattr(self, s) for s in TEST_SPLITS}, **dict(self.extra_tests)}


class ExperimentData(Protocol):
    """What `sourcematters_jax.data.load_experiment` returns and the trainer consumes."""

    experiment: str
    pool: ImagePool

    def member_data(self, p_art: float, fold: int, seed: int) -> MemberData:
        """The member's splits; seeded, and independent of which other members exist."""
        ...
