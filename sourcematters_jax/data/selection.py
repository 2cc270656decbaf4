"""Which images of a member carry the confounder: seeded, nested across p_art, order-independent.

The study drew `df[positives].sample(frac=p_art)` once per p_art over the whole dataset, without a
seed, and used that one directory for training, validation and the i.i.d. test (so validation
positives carried the confounder at the same rate as training positives). Here, for each
(seed, fold, split) one random permutation of that split's positives is drawn from a Generator
seeded by a hash of the key (never Python's salted hash()), and the first round(p_art * n_pos)
of them are confounded:

  * the fraction is exact per split (round half up), not only in expectation;
  * selections are nested: every image confounded at p_art is also confounded at any larger p_art;
  * a member's selection depends only on (seed, fold, split, p_art) and the split's images, never
    on which other members exist or their order;
  * the i.i.d. test selection is keyed without the fold, so all folds of a seed are evaluated on
    the same i.i.d. test images, as in the study (one test directory per p_art).

`shared_confounded` offers the study's single draw instead (option confound_draw='shared'): one
permutation of all positives of the dataset per seed, the first round(p_art * n_pos) confounded,
and every fold's train / val / i.i.d. test take that one selection; the fraction is then exact
only over the whole dataset (docs/datasets.md says what this does to the fold spread).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from sourcematters_jax.data.types import SplitIndex


def seed_sequence(*key: object) -> np.random.SeedSequence:
    """A SeedSequence from a stable hash of `key` (same value in every process and platform)."""
    key = tuple(k.item() if isinstance(k, np.generic) else k for k in key)  # np.int64(1) == 1 here
    digest = hashlib.sha256(repr(key).encode()).digest()
    return np.random.SeedSequence([int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)])


def rng_for(*key: object) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(*key))


def n_confounded(p_art: float, n_positive: int) -> int:
    """round(p_art * n_positive), halves rounded up (Python's round() would round to even)."""
    if not 0.0 <= p_art <= 1.0:
        raise ValueError(f"p_art must lie in [0, 1], got {p_art}")
    return int(math.floor(p_art * n_positive + 0.5 + 1e-9))


def confound_positives(indices: np.ndarray, labels: np.ndarray, p_art: float, *key: object) -> SplitIndex:
    """A SplitIndex over `indices` (sorted) with round(p_art * n_pos) positives confounded.

    Args:
      indices: pool indices of the split.
      labels: the pool's labels (indexed by `indices`).
      p_art: fraction of the split's positives that carry the confounder.
      key: identifies the (seed, fold, split); the permutation of positives depends on it only.
    """
    idx = np.sort(np.asarray(indices, np.int32))
    positives = np.flatnonzero(labels[idx] == 1)
    order = rng_for("confound", *key).permutation(len(positives))
    confounded = np.zeros(len(idx), bool)
    confounded[positives[order[:n_confounded(p_art, len(positives))]]] = True
    return SplitIndex(idx, confounded)


def shared_confounded(labels: np.ndarray, p_art: float, seed: int) -> np.ndarray:
    """bool [N]: the study's one draw per p_art over all N pool images (nested in p_art).

    round(p_art * n_pos) of the pool's positives, the first ones of a permutation keyed by the
    seed only, so every fold (and source) of a seed sees the same confounded images.
    """
    positives = np.flatnonzero(np.asarray(labels) == 1)
    order = rng_for("confound_shared", seed).permutation(len(positives))
    mask = np.zeros(len(labels), bool)
    mask[positives[order[:n_confounded(p_art, len(positives))]]] = True
    return mask


def from_mask(indices: np.ndarray, mask: np.ndarray) -> SplitIndex:
    """A SplitIndex over `indices` (sorted) confounded where the pool-wide `mask` is True."""
    idx = np.sort(np.asarray(indices, np.int32))
    return SplitIndex(idx, np.asarray(mask, bool)[idx])


def ood(indices: np.ndarray, labels: np.ndarray) -> SplitIndex:
    """The o.o.d. test: the confounder on every negative and on no positive."""
    idx = np.sort(np.asarray(indices, np.int32))
    return SplitIndex(idx, labels[idx] == 0)


def clean(indices: np.ndarray) -> SplitIndex:
    idx = np.sort(np.asarray(indices, np.int32))
    return SplitIndex(idx, np.zeros(len(idx), bool))
