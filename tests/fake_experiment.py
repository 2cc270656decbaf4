"""A small in-memory ExperimentData for trainer tests (no TFDS, no files).

Images are noise; positives carry a zero-mean checkerboard in the centre (the true signal, which
changes no mean brightness); the confounded variant adds a bright square in the top-left corner
(the shortcut). Splits follow
the study's shape: a fixed test set, folds of train/val, the shortcut on a fraction p_art of the
training and i.i.d.-test positives and on every negative of the o.o.d. test.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sourcematters_jax.data.types import ImagePool, MemberData, SplitIndex


def make_pool(num_images: int = 96, size: int = 32, seed: int = 0, signal: float = 40.0,
              tag: float = 120.0) -> ImagePool:
    rng = np.random.default_rng(seed)
    labels = (np.arange(num_images) % 2).astype(np.int32)
    base = rng.normal(100.0, 20.0, (num_images, size, size))
    c = size // 2
    r = max(size // 6, 2)
    checker = np.where((np.add.outer(np.arange(2 * r), np.arange(2 * r)) % 2) == 0, 1.0, -1.0)
    base[:, c - r:c + r, c - r:c + r] += signal * labels[:, None, None] * checker
    tagged = base.copy()
    q = max(size // 8, 2)
    tagged[:, q:3 * q, q:3 * q] += tag
    images = np.clip(np.stack([base, tagged], axis=1), 0, 255).astype(np.uint8)
    return ImagePool(images=images, variants=("clean", "tag"), labels=labels,
                     patient_ids=np.arange(num_images, dtype=np.int64),
                     names=tuple(f"img{i:04d}.png" for i in range(num_images)))


@dataclasses.dataclass
class FakeExperiment:
    """ExperimentData over `make_pool`: test = the last `num_test` images, folds over the rest."""

    pool: ImagePool
    experiment: str = "tag"
    num_test: int = 24
    val_fraction: float = 0.2

    def member_data(self, p_art: float, fold: int, seed: int) -> MemberData:
        labels = self.pool.labels
        n = len(labels)
        test = np.arange(n - self.num_test, n, dtype=np.int32)
        rest = np.random.default_rng(1000 + fold).permutation(n - self.num_test).astype(np.int32)
        # Folds differ in size, as the study's Monte-Carlo folds do.
        n_val = int(round(self.val_fraction * len(rest))) + 3 * (fold % 3)
        val, train = np.sort(rest[:n_val]), np.sort(rest[n_val:])
        rng = np.random.default_rng([seed, fold, int(round(p_art * 1000))])

        def confound_positives(idx):
            pos = np.flatnonzero(labels[idx] == 1)
            k = int(round(p_art * len(pos)))
            conf = np.zeros(len(idx), bool)
            conf[rng.choice(pos, k, replace=False)] = True
            return conf

        return MemberData(
            train=SplitIndex(train, confound_positives(train)),
            val=SplitIndex(val, confound_positives(val)),
            test_iid=SplitIndex(test, confound_positives(test)),
            test_ood=SplitIndex(test, labels[test] == 0),
            test_clean=SplitIndex(test, np.zeros(len(test), bool)),
        )


def make_experiment(**pool_kwargs) -> FakeExperiment:
    return FakeExperiment(pool=make_pool(**pool_kwargs))
