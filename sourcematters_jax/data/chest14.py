"""TFDS builders for the study's NIH ChestX-ray14 datasets.

chest14_source_matters  the 331-image YES/NO subset of the tag, denoising and X-ray noise
    experiments: the study's split CSVs (shipped), per image the clean radiograph and every
    confounder variant at model resolution. Splits: 'test' (83 images) and 'train' (the 248 images
    of the 5 folds); per example `folds` [5] says 0 = not in fold k, 1 = train, 2 = val.
chest14_sex  the Atelectasis / No Finding PA selection of the sex experiment: the study's published
    gender splits (shipped) or, when the splits directory has none, the same protocol re-sampled
    with a seed. Splits: 'train' (every image of any F_p training pool), 'test' (the o.o.d. test of
    gender/test.csv), 'heldout' (n images per sex x class from patients in no published split, for
    the i.i.d. and sex-balanced clean tests). Per example `membership` [6, 5] (p grid x fold):
    0 absent, 1 train, 2 val.

Both read images from manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS and docs/datasets.md), check
every file before writing anything, and let TFDS write into a temporary directory that is renamed
only when the build completes.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Iterator

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from sourcematters_jax.data import confounders, rawdata, splits as splits_lib, tfds_common
from sourcematters_jax.data.selection import rng_for

NIH_HOMEPAGE = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
MANUAL_CHEST14 = """\
Download NIH ChestX-ray14 (https://nihcc.app.box.com/v/ChestXray-NIHCC) and extract it into
manual_dir: the PNGs either directly in manual_dir, in manual_dir/images/, or in NIH's
manual_dir/images_001/images/ ... images_012/images/ folders. chest14_sex also needs
Data_Entry_2017.csv (or Data_Entry_2017_v2020.csv) in manual_dir."""


def _locate(manual_dir: pathlib.Path, *tables: pd.DataFrame) -> list[list[pathlib.Path]]:
    """The image file of every row of every table; one error lists every missing image."""
    both = pd.concat(tables, ignore_index=True)
    files = rawdata.ImageLocator(manual_dir).find_all(list(both["path"]), list(both["source_csv"]))
    bounds = np.cumsum([0] + [len(t) for t in tables])
    return [files[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _load(path: pathlib.Path) -> np.ndarray:
    return rawdata.load_grayscale(path)


class Chest14SourceMatters(tfds.core.GeneratorBasedBuilder):
    """NIH ChestX-ray14, the study's 331-image subset, with every confounder variant."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Study splits; clean, tag, lowpass, noise_base, noise_confounded."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_CHEST14
    DEFAULTS = {**tfds_common.XRAY_OPTIONS, "splits_dir": None}
    BUILDER_CONFIGS = [tfds_common.make_config(224, DEFAULTS)]

    @classmethod
    def config(cls, image_size: int, **options) -> tfds_common.PoolConfig:
        return tfds_common.make_config(image_size, cls.DEFAULTS, **options)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds_common.dataset_info(
            self, description=__doc__.split("\n\n")[1], homepage=NIH_HOMEPAGE,
            citation=tfds_common.CITATION_SOURCE_MATTERS + "\n" + tfds_common.CITATION_NIH,
            features=source_matters_features(self.builder_config.image_size))

    def _split_generators(self, dl_manager):
        manual_dir = tfds_common.manual_dir_of(dl_manager)
        opts = self.builder_config.options
        folds = splits_lib.load_chest14_splits(opts["splits_dir"])
        return source_matters_split_generators(self, folds, manual_dir)

    def _generate_examples(self, table: pd.DataFrame, files: list[pathlib.Path]) -> Iterator:
        return source_matters_examples(table, files, self.builder_config.image_size, self.builder_config.options)


def source_matters_features(size: int) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "name": tfds.features.Text(),
        "patient_id": np.int64,
        "label": tfds.features.ClassLabel(names=list(splits_lib.CHEST14_LABELS)),
        "folds": tfds.features.Tensor(shape=(splits_lib.N_FOLDS,), dtype=np.int8),
        "images": tfds.features.FeaturesDict(
            {v: tfds_common.image_feature(size) for v in tfds_common.XRAY_VARIANTS}),
    })


def source_matters_examples(table: pd.DataFrame, files: list[pathlib.Path], size: int, opts) -> Iterator:
    for row, path in zip(table.itertuples(index=False), files):
        image = _load(path)
        yield row.path, {
            "name": row.path, "patient_id": row.pid, "label": int(row.label),
            "folds": np.asarray(row.folds, np.int8),
            "images": tfds_common.xray_variants(image, row.path, size, opts),
        }


def fold_membership(folds: splits_lib.Folds, paths: pd.Series) -> np.ndarray:
    """int8 [n, n_folds]: 1 where the image is in fold k's train table, 2 in its val table."""
    out = np.zeros((len(paths), len(folds.folds)), np.int8)
    for k, (train, val) in enumerate(folds.folds):
        out[paths.isin(train["path"]).to_numpy(), k] = 1
        out[paths.isin(val["path"]).to_numpy(), k] = 2
    return out


def source_matters_split_generators(builder, folds: splits_lib.Folds, manual_dir: pathlib.Path) -> dict:
    """'train' and 'test' generators of chest14-style examples; checks every image file first."""
    training = folds.all_training()
    training = training.assign(folds=list(fold_membership(folds, training["path"])))
    test = folds.test.assign(folds=list(np.zeros((len(folds.test), len(folds.folds)), np.int8)))
    train_files, test_files = _locate(manual_dir, training, test)
    return {"train": builder._generate_examples(training, train_files),
            "test": builder._generate_examples(test, test_files)}


@dataclasses.dataclass(frozen=True)
class SexTables:
    """The sex experiment's images: o.o.d. test, training pools, and the held-out reserve."""

    test: pd.DataFrame
    pools: dict[str, splits_lib.Folds]
    heldout: pd.DataFrame


def sex_tables(splits_dir, data_entry: pd.DataFrame, *, resample: bool | None, sample_seed: int,
               n_heldout: int, sizes: splits_lib.SexSizes, heldout_seed: int) -> SexTables:
    """The study's gender splits (or a seeded re-sampling) plus held-out images per group.

    Held-out images come from `data_entry`'s Atelectasis / No Finding PA images of patients that
    occur in no split at all: `n_heldout` each of female/male positives and negatives.
    """
    candidates = splits_lib.sex_candidates(data_entry)
    if resample is None:
        resample = not splits_lib.has_sex_splits(splits_dir)
    if resample:
        test, pools = splits_lib.sample_sex_splits(candidates, sample_seed, sizes)
    else:
        test, pools = splits_lib.load_sex_splits(splits_dir)
    used = set(test["pid"])
    for folds in pools.values():
        used |= set(folds.all_training()["pid"])
    free = candidates[~candidates["pid"].isin(used)]
    rng = rng_for("sex_heldout", heldout_seed)
    parts = []
    for cls in splits_lib.SEX_LABELS:
        for sex in ("F", "M"):
            group = free[(free["class"] == cls) & (free["Patient Gender"] == sex)]
            if len(group) < n_heldout:
                raise rawdata.DataError(f"held-out {sex} {cls}: need {n_heldout} images of patients outside "
                                        f"the splits, the metadata table has {len(group)}")
            parts.append(group.iloc[np.sort(rng.choice(len(group), n_heldout, replace=False))])
    heldout = pd.concat(parts, ignore_index=True)
    heldout["source_csv"] = [f"Data_Entry row of {p}" for p in heldout["path"]]
    for t in (test, *(f for folds in pools.values() for pair in folds.folds for f in pair)):
        if "source_csv" not in t:
            t["source_csv"] = [f"re-sampled split, {p}" for p in t["path"]]
    return SexTables(test, pools, heldout)


class Chest14Sex(tfds.core.GeneratorBasedBuilder):
    """NIH ChestX-ray14, the sex experiment's Atelectasis / No Finding PA images."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Study gender splits (or seeded re-sampling); held-out reserve."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_CHEST14
    DEFAULTS = {"splits_dir": None, "resample": None, "sample_seed": 812, "heldout_seed": 812,
                "n_heldout": 100, "sizes": dataclasses.astuple(splits_lib.SexSizes())}
    BUILDER_CONFIGS = [tfds_common.make_config(224, DEFAULTS)]

    @classmethod
    def config(cls, image_size: int, **options) -> tfds_common.PoolConfig:
        if "sizes" in options and options["sizes"] is not None:
            options["sizes"] = tuple(options["sizes"])
        return tfds_common.make_config(image_size, cls.DEFAULTS, **options)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds_common.dataset_info(
            self, description=__doc__.split("\n\n")[1], homepage=NIH_HOMEPAGE,
            citation=tfds_common.CITATION_SOURCE_MATTERS + "\n" + tfds_common.CITATION_NIH,
            features=sex_features(self.builder_config.image_size))

    def _split_generators(self, dl_manager):
        manual_dir = tfds_common.manual_dir_of(dl_manager)
        o = self.builder_config.options
        entry = rawdata.read_data_entry(rawdata.find_data_entry(manual_dir))
        tables = sex_tables(o["splits_dir"], entry, resample=o["resample"], sample_seed=o["sample_seed"],
                            n_heldout=o["n_heldout"], sizes=splits_lib.SexSizes(*o["sizes"]),
                            heldout_seed=o["heldout_seed"])
        return sex_split_generators(self, tables, manual_dir)

    def _generate_examples(self, table: pd.DataFrame, files: list[pathlib.Path]) -> Iterator:
        return sex_examples(table, files, self.builder_config.image_size)


def sex_features(size: int) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "name": tfds.features.Text(),
        "patient_id": np.int64,
        "label": tfds.features.ClassLabel(names=list(splits_lib.SEX_LABELS)),
        "sex": tfds.features.ClassLabel(names=["M", "F"]),
        "membership": tfds.features.Tensor(
            shape=(len(splits_lib.SEX_P_GRID), splits_lib.N_FOLDS), dtype=np.int8),
        "image": tfds_common.image_feature(size),
    })


def sex_examples(table: pd.DataFrame, files: list[pathlib.Path], size: int) -> Iterator:
    for row, path in zip(table.itertuples(index=False), files):
        yield row.path, {
            "name": row.path, "patient_id": row.pid, "label": int(row.label), "sex": row.sex,
            "membership": np.asarray(row.membership, np.int8),
            "image": confounders.resize_nearest(_load(path), size),
        }


def sex_membership(pools: dict[str, splits_lib.Folds], paths: pd.Series) -> np.ndarray:
    """int8 [n, len(SEX_P_GRID), n_folds]: 1 train / 2 val of pool F_p, fold k."""
    return np.stack([fold_membership(pools[splits_lib.sex_folder(p)], paths)
                     for p in splits_lib.SEX_P_GRID], axis=1)


def sex_split_generators(builder, tables: SexTables, manual_dir: pathlib.Path) -> dict:
    """'train', 'test' and 'heldout' generators of sex examples; checks every image file first."""
    training = pd.concat([f.all_training() for f in tables.pools.values()],
                         ignore_index=True).drop_duplicates("path").reset_index(drop=True)
    named = {}
    for split, table in (("train", training), ("test", tables.test), ("heldout", tables.heldout)):
        table = table.rename(columns={"Patient Gender": "sex"}).reset_index(drop=True)
        named[split] = table.assign(membership=list(sex_membership(tables.pools, table["path"])))
    files = _locate(manual_dir, *named.values())
    return {split: builder._generate_examples(t, f) for (split, t), f in zip(named.items(), files)}
