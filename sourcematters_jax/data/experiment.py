"""`load_experiment`: build (if needed) and read a TFDS dataset into an ImagePool + member splits.

This is the data side of the trainer contract (types.py). The pool holds every image of the
experiment once, sorted by file name, with the two variants the experiment needs (one for sex);
`member_data(p_art, fold, seed)` returns index splits and per-index confounder masks, computed by
selection.py so that they are seeded, nested across p_art and independent of other members.
Folds are numbered 1..5, as in the study's file names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import pathlib
from typing import Any, Mapping

import numpy as np
import tensorflow_datasets as tfds

from sourcematters_jax import experiments
from sourcematters_jax.data import selection, split_options, splits as splits_lib
from sourcematters_jax.data.types import EXTRA_OOD_PREFIX, ImagePool, MemberData, SplitIndex

# Importing the builder modules registers them with TFDS.
from sourcematters_jax.data.chest14 import Chest14Sex, Chest14SourceMatters
from sourcematters_jax.data.lidc import LidcNodules
from sourcematters_jax.data.synthetic_builder import SyntheticCxr

# The TFDS builder of each dataset name (experiments.Experiment.datasets names these keys).
BUILDERS = {"chest14_source_matters": Chest14SourceMatters, "chest14_sex": Chest14Sex,
            "lidc_nodules": LidcNodules, "synthetic_cxr": SyntheticCxr}


def make_builder(experiment: str, *, dataset: str, data_dir: str | os.PathLike | None, image_size: int,
                 **options: Any) -> tfds.core.DatasetBuilder:
    """The TFDS builder (array_record) for `dataset` at `image_size`, checked against `experiment`."""
    exp = experiments.get(experiment)
    if dataset not in exp.datasets:
        raise ValueError(f"experiment {experiment!r} runs on {exp.datasets}, not {dataset!r}")
    cls = BUILDERS[dataset]
    if dataset == experiments.SYNTHETIC_DATASET:
        options.setdefault("kind", exp.synthetic_kind)
    config = cls.config(image_size, **options)
    if any(c.name == config.name for c in cls.BUILDER_CONFIGS):
        config = config.name  # TFDS refuses an equal-named config object; names encode options
    return cls(config=config, data_dir=os.fspath(data_dir) if data_dir else None, file_format="array_record")


def read_split(source) -> dict[str, np.ndarray | list]:
    """Every example of an ArrayRecordDataSource, as column lists."""
    rows = [source[i] for i in range(len(source))]
    return {k: [r[k] for r in rows] for k in (rows[0] if rows else {})}


@dataclasses.dataclass(frozen=True)
class FoldExperiment:
    """An experiment of split design FOLDS: a fixed test set and per-fold train/val membership.

    membership: int8 [N, n_folds], 1 = train, 2 = val of fold k (k = 1..n_folds); is_test: bool [N],
    both over the N images of the pool's first block. blocks: block name -> first pool row (see
    ImagePool; empty = the pool is one block); options: split_options.SplitOptions.
    """

    experiment: str
    pool: ImagePool
    membership: np.ndarray
    is_test: np.ndarray
    blocks: Mapping[str, int] = dataclasses.field(default_factory=dict)
    options: split_options.SplitOptions = split_options.SplitOptions()

    def _fold(self, fold: int) -> int:
        if not 1 <= int(fold) <= self.membership.shape[1]:
            raise ValueError(f"fold must be in 1..{self.membership.shape[1]}, got {fold}")
        return int(fold) - 1

    def _block(self, name: str) -> int:
        if name not in self.blocks:
            raise ValueError(f"the pool holds no {name!r} block (blocks {sorted(self.blocks)})")
        return self.blocks[name]

    def member_data(self, p_art: float, fold: int, seed: int) -> MemberData:
        k, labels = self._fold(fold), self.pool.labels
        n = self.membership.shape[0]
        test = np.flatnonzero(self.is_test)
        train_idx = np.flatnonzero(self.membership[:, k] == 1)
        val_idx = np.flatnonzero(self.membership[:, k] == 2)
        if self.options.confound_draw == "shared":
            mask = selection.shared_confounded(labels[:n], p_art, seed)
            train, val, test_iid = (selection.from_mask(i, mask) for i in (train_idx, val_idx, test))
        else:
            train = selection.confound_positives(train_idx, labels, p_art, seed, fold, "train")
            val = selection.confound_positives(val_idx, labels, p_art, seed, fold, "val")
            test_iid = selection.confound_positives(test, labels, p_art, seed, "test_iid")
        if self.options.p0_protocol == "clean" and p_art == 0:
            # The study's p = 0 point: runs on the raw images (nothing is confounded at p = 0).
            off = self._block(split_options.CLEAN_BLOCK)
            train, val, test_iid = (SplitIndex(s.indices + off, s.confounded) for s in (train, val, test_iid))
        extra = {f"{EXTRA_OOD_PREFIX}{e}": selection.ood(test + self._block(e), labels)
                 for e in self.options.extra_ood}
        return MemberData(train=train, val=val, test_iid=test_iid, test_ood=selection.ood(test, labels),
                          test_clean=selection.clean(test), extra_tests=extra)


@dataclasses.dataclass(frozen=True)
class SexExperiment:
    """An experiment of split design HELDOUT_BY_SEX (the sex experiment): sampled, not drawn, so V == 1
    and nothing is marked confounded.

    membership: int8 [N, len(SEX_P_GRID), n_folds]; is_test: the o.o.d. test (gender/test.csv);
    is_heldout: the reserve from which each member's i.i.d. and clean tests are drawn; sex: 'M'/'F'.
    """

    experiment: str
    pool: ImagePool
    membership: np.ndarray
    is_test: np.ndarray
    is_heldout: np.ndarray
    sex: np.ndarray

    def _groups(self, seed: int, split: str) -> dict[tuple[int, str], np.ndarray]:
        """Held-out images per (label, sex), each in one seeded order (nested selections)."""
        out = {}
        for label in (0, 1):
            for sex in ("F", "M"):
                idx = np.flatnonzero(self.is_heldout & (self.pool.labels == label) & (self.sex == sex))
                out[label, sex] = idx[selection.rng_for("sex", seed, split, label, sex).permutation(len(idx))]
        return out

    def member_data(self, p_art: float, fold: int, seed: int) -> MemberData:
        splits_lib.sex_folder(p_art)  # raises for a p_art the study did not sample
        pi = next(i for i, q in enumerate(splits_lib.SEX_P_GRID) if math.isclose(q, p_art, abs_tol=1e-9))
        if not 1 <= int(fold) <= self.membership.shape[2]:
            raise ValueError(f"fold must be in 1..{self.membership.shape[2]}, got {fold}")
        member = self.membership[:, pi, int(fold) - 1]
        iid = self._groups(seed, "test_iid")
        n = min(len(iid[1, "F"]), len(iid[1, "M"]), len(iid[0, "M"]))
        n_f = selection.n_confounded(p_art, n)
        test_iid = np.concatenate([iid[1, "F"][:n_f], iid[1, "M"][:n - n_f], iid[0, "M"][:n]])
        bal = self._groups(seed, "test_clean")
        half = min(len(v) for v in bal.values()) // 2
        test_clean = np.concatenate([v[:half] for v in bal.values()])
        return MemberData(
            train=selection.clean(np.flatnonzero(member == 1)),
            val=selection.clean(np.flatnonzero(member == 2)),
            test_iid=selection.clean(test_iid),
            test_ood=selection.clean(np.flatnonzero(self.is_test)),
            test_clean=selection.clean(test_clean),
        )


@contextlib.contextmanager
def _build_lock(builder: tfds.core.DatasetBuilder):
    """An exclusive file lock per dataset config, so parallel programs build it once.

    Programs of one sweep start together on the same data_dir; the first builds while the others
    wait, then find the dataset prepared. Remote data_dirs (gs://...) are not locked.
    """
    path = os.fspath(builder.data_dir)
    if "://" in path:
        yield
        return
    lock = pathlib.Path(path).parent / f"{pathlib.Path(path).name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _decode(names) -> tuple[str, ...]:
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def load_experiment(experiment: str, *, dataset: str, data_dir: str | os.PathLike | None,
                    manual_dir: str | os.PathLike | None = None, image_size: int, **options: Any):
    """Builds `dataset` into data_dir if needed and returns the experiment's ExperimentData.

    Args:
      experiment: a name of experiments.NAMES (tag, denoising, sex, ...).
      dataset: one of that experiment's `datasets` (experiments.py), a key of BUILDERS.
      data_dir: TFDS data directory ('' or None: TFDS's default).
      manual_dir: the raw download for builders that need one ('' or None: TFDS's default,
        <data_dir>/downloads/manual). synthetic_cxr needs none.
      image_size: model input side in pixels.
      **options: builder options (see each builder's DEFAULTS), e.g. splits_dir, tag_scale, seed,
        tag_font; and the split options extra_ood, p0_protocol, confound_draw (split_options.py),
        which change the member splits, not the build.
    """
    splits_opts, options = split_options.split_options(experiment, dataset, options)
    builder = make_builder(experiment, dataset=dataset, data_dir=data_dir, image_size=image_size, **options)
    with _build_lock(builder):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir or None))
    # A builder made before another process finished the build holds stale info: read it afresh.
    builder = make_builder(experiment, dataset=dataset, data_dir=data_dir, image_size=image_size, **options)
    return experiment_from_builder(experiment, builder, splits_opts)


def read_examples(builder: tfds.core.DatasetBuilder) -> tuple[dict[str, list], np.ndarray]:
    """Every example of every split, sorted by file name: (feature -> values, split of each)."""
    sources = builder.as_data_source()
    columns = {split: read_split(src) for split, src in sorted(sources.items()) if len(src)}
    if not columns:
        raise RuntimeError(f"{builder.data_dir} holds no examples")
    split_of = np.asarray([s for s, c in columns.items() for _ in c["name"]])
    merged = {k: [v for c in columns.values() for v in c[k]] for k in next(iter(columns.values()))}
    merged["name"] = list(_decode(merged["name"]))
    order = np.argsort(np.asarray(merged["name"]))
    return {k: [v[i] for i in order] for k, v in merged.items()}, split_of[order]


def _metadata(builder: tfds.core.DatasetBuilder) -> dict[str, Any]:
    """The builder's recorded metadata (options, resolved font, ...) as plain JSON-like values."""
    meta = builder.info.metadata
    return json.loads(json.dumps(dict(meta) if meta else {}, default=str))


def experiment_from_builder(experiment: str, builder: tfds.core.DatasetBuilder,
                            options: split_options.SplitOptions | None = None):
    """The ExperimentData of a prepared builder: its pool (the experiment's variants) + splits.

    `options` (split_options.SplitOptions; default: the defaults for `experiment`) may add row
    blocks to the pool: the raw images for xray_noise's p0_protocol='clean', and the other
    confounders' variant pairs for extra_ood.
    """
    if options is None:
        options, _ = split_options.split_options(experiment, builder.name, {})
    ex, split_of = read_examples(builder)
    exp = experiments.get(experiment)
    variants = exp.variants
    meta = _metadata(builder)
    if "images" not in ex:
        images = np.stack(ex["image"])[:, None]
        blocks = {experiment: variants}
    else:
        blocks = split_options.pool_blocks(experiment, options)
        images = np.concatenate([np.stack([np.stack([im[v] for v in pair]) for im in ex["images"]])
                                 for pair in blocks.values()])
    n, b = len(ex["name"]), len(blocks)
    offsets = {name: i * n for i, name in enumerate(blocks)}
    if b > 1:
        meta["blocks"] = {name: [offsets[name], *pair] for name, pair in blocks.items()}
    pool = ImagePool(images=images.astype(np.uint8), variants=variants,
                     labels=np.tile(np.asarray(ex["label"], np.int32), b),
                     patient_ids=np.tile(np.asarray(ex["patient_id"], np.int64), b),
                     names=tuple(ex["name"]) * b, metadata=meta)
    if exp.split_design == experiments.HELDOUT_BY_SEX:
        return SexExperiment(experiment, pool, np.stack(ex["membership"]), is_test=split_of == "test",
                             is_heldout=split_of == "heldout", sex=np.asarray(["M", "F"])[np.asarray(ex["sex"])])
    return FoldExperiment(experiment, pool, np.stack(ex["folds"]), is_test=split_of == "test",
                          blocks=offsets, options=options)
