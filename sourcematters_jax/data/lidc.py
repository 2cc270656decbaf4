"""TFDS builder `lidc_nodules`: LIDC-IDRI 2-D nodule crops, benign vs malignant, CT noise variants.

The study's LIDC protocol is unpublished, so this builder takes crops made with the common pylidc
recipe from manual_dir; `sourcematters prepare-lidc --lidc_root DOWNLOAD --out MANUAL_DIR` makes
them from the LIDC-IDRI download (docs/datasets.md):

  manual_dir/nodules.csv   columns: path, patient_id, malignancy (+ any others, ignored)
      path        crop file relative to manual_dir (.npy: 2-D Hounsfield units; .png: 8-bit grey
                  already windowed to [-1200, 800] HU)
      patient_id  'LIDC-IDRI-0078' or 78
      malignancy  median_high of the radiologists' ratings, 1..5; > 3 malignant (1), < 3 benign
                  (0), 3 dropped
  manual_dir/<the crop files>  square crops

Splits: 'test' (a patient-grouped test_size share of the patients) and 'train' (the rest); per
example `folds` [5]: 1 = train, 2 = val of Monte-Carlo patient-grouped fold k, as chest14.
Variants, computed on the crop at its own resolution, then nearest-resized: clean; ct_noise_base /
ct_noise_confounded (sinogram-domain Poisson noise, `confounders.ct_noise`); xray_noise_base /
xray_noise_confounded (the X-ray photon pipeline without its 512 px resize).
"""

from __future__ import annotations

import pathlib
import re
from typing import Iterator

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from sourcematters_jax.data import confounders, rawdata, splits as splits_lib, tfds_common
from sourcematters_jax.data.chest14 import fold_membership
from sourcematters_jax.data.selection import rng_for, seed_sequence

TABLE = "nodules.csv"
MANUAL_LIDC = __doc__.split("\n\n")[1]
VARIANTS = ("clean", "ct_noise_base", "ct_noise_confounded", "xray_noise_base", "xray_noise_confounded")


def patient_number(value: str, *, where: str) -> int:
    """'LIDC-IDRI-0078' or '78' -> 78."""
    match = re.fullmatch(r"(?:LIDC-IDRI-)?0*(\d+)", str(value).strip())
    if not match:
        raise rawdata.DataError(f"{where}: patient_id {value!r} is neither LIDC-IDRI-NNNN nor a number")
    return int(match.group(1))


def window_hu(hu: np.ndarray) -> np.ndarray:
    """Hounsfield units -> uint8 grey: DISP_WINDOW [-1200, 800] HU onto 0..255, truncated."""
    lo, hi = confounders.DISP_WINDOW
    return np.floor((np.clip(np.asarray(hu, np.float64), lo, hi) - lo) / (hi - lo) * 255.0).astype(np.uint8)


def load_crop(path: pathlib.Path) -> np.ndarray:
    """A crop as uint8 grey: .npy Hounsfield units windowed to DISP_WINDOW, or an 8-bit image."""
    if path.suffix.lower() == ".npy":
        try:
            hu = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise rawdata.DataError(f"unreadable crop {path}: {e}") from e
        if hu.ndim != 2 or not np.issubdtype(hu.dtype, np.number):
            raise rawdata.DataError(f"{path}: expected a 2-D numeric array of HU, got {hu.dtype} {hu.shape}")
        crop = window_hu(hu)
    else:
        crop = rawdata.load_grayscale(path)
    if crop.shape[0] != crop.shape[1]:
        raise rawdata.DataError(f"{path}: crops must be square, got {crop.shape}")
    return crop


def read_nodules(manual_dir: pathlib.Path) -> tuple[pd.DataFrame, list[pathlib.Path]]:
    """The nodule table with labels (malignancy 3 dropped), and every crop file, checked."""
    table_path = manual_dir / TABLE
    df = rawdata.read_table(table_path, ("path", "patient_id", "malignancy"),
                            allowed={"malignancy": [str(i) for i in range(1, 6)]}, integer=("malignancy",))
    wheres = [f"{TABLE} row {i + 1}" for i in range(len(df))]
    df["pid"] = [patient_number(p, where=f"{table_path}: row {i + 1}") for i, p in enumerate(df["patient_id"])]
    df["path"] = [rawdata.check_relative_path(p, where=f"{table_path}: row {i + 1}") for i, p in enumerate(df["path"])]
    df["source_csv"] = wheres
    dup = df["path"][df["path"].duplicated()]
    if len(dup):
        raise rawdata.DataError(f"{table_path}: crop {dup.iloc[0]!r} listed twice")
    df = df[df["malignancy"] != 3].reset_index(drop=True)
    df["label"] = (df["malignancy"] > 3).astype(np.int32)
    missing = [f"{p} ({w})" for p, w in zip(df["path"], df["source_csv"]) if not (manual_dir / p).is_file()]
    if missing:
        raise rawdata.DataError(f"{len(missing)} crop(s) not found under {manual_dir}:" + rawdata.listing(missing))
    return df, [manual_dir / p for p in df["path"]]


class LidcNodules(tfds.core.GeneratorBasedBuilder):
    """LIDC-IDRI nodule crops (benign / malignant) with CT and X-ray noise variants."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "pylidc-recipe crops; patient-grouped test set and 5 MC folds."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_LIDC
    DEFAULTS = {"split_seed": 812, "test_size": 0.2, "val_size": 0.1, "noise_seed": 0,
                "ct_photons_base": 2e6, "ct_photons_confounded": 1e6, "pixel_size_cm": 0.07,
                "n_angles": 180, "xray_photons_base": confounders.PHOTONS_BASE,
                "xray_photons_confounded": confounders.PHOTONS_CONFOUNDED}
    BUILDER_CONFIGS = [tfds_common.make_config(64, DEFAULTS)]

    @classmethod
    def config(cls, image_size: int, **options) -> tfds_common.PoolConfig:
        return tfds_common.make_config(image_size, cls.DEFAULTS, **options)

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return tfds_common.dataset_info(
            self, description="LIDC-IDRI 2-D nodule crops, benign vs malignant, CT noise variants.",
            homepage="https://doi.org/10.7937/K9/TCIA.2015.LO9QL9SX",
            citation=tfds_common.CITATION_SOURCE_MATTERS,
            features=tfds.features.FeaturesDict({
                "name": tfds.features.Text(),
                "patient_id": np.int64,
                "label": tfds.features.ClassLabel(names=["benign", "malignant"]),
                "malignancy": np.int32,
                "folds": tfds.features.Tensor(shape=(splits_lib.N_FOLDS,), dtype=np.int8),
                "images": tfds.features.FeaturesDict({v: tfds_common.image_feature(size) for v in VARIANTS}),
            }))

    def _split_generators(self, dl_manager):
        o = self.builder_config.options
        manual_dir = tfds_common.manual_dir_of(dl_manager)
        df, files = read_nodules(manual_dir)
        df["file"] = files
        train_idx, test_idx = splits_lib.group_shuffle_split(df["pid"].to_numpy(), o["test_size"],
                                                             rng_for("lidc_test", o["split_seed"]))
        test, rest = df.iloc[test_idx].reset_index(drop=True), df.iloc[train_idx].reset_index(drop=True)
        folds = splits_lib.Folds(test, splits_lib.monte_carlo_folds(
            rest, splits_lib.N_FOLDS, o["val_size"], rng_for("lidc_folds", o["split_seed"])))
        rest["folds"] = list(fold_membership(folds, rest["path"]))
        test["folds"] = list(np.zeros((len(test), splits_lib.N_FOLDS), np.int8))
        return {"train": self._generate_examples(rest), "test": self._generate_examples(test)}

    def variants(self, crop: np.ndarray, name: str) -> dict[str, np.ndarray]:
        """Every variant of one crop at model resolution."""
        o, size = self.builder_config.options, self.builder_config.image_size

        def seed(kind):
            return seed_sequence("lidc", o["noise_seed"], name, kind)

        ct = dict(pixel_size_cm=o["pixel_size_cm"], n_angles=o["n_angles"])
        full = {
            "clean": crop,
            "ct_noise_base": confounders.ct_noise(crop, o["ct_photons_base"], seed("ct_base"), **ct),
            "ct_noise_confounded": confounders.ct_noise(crop, o["ct_photons_confounded"], seed("ct_conf"), **ct),
            "xray_noise_base": confounders.xray_noise(crop, o["xray_photons_base"], seed("xray_base"),
                                                      size=crop.shape),
            "xray_noise_confounded": confounders.xray_noise(crop, o["xray_photons_confounded"],
                                                            seed("xray_conf"), size=crop.shape),
        }
        return {k: confounders.resize_nearest(v, size) for k, v in full.items()}

    def _generate_examples(self, table: pd.DataFrame) -> Iterator:
        for row in table.itertuples(index=False):
            yield row.path, {
                "name": row.path, "patient_id": row.pid, "label": int(row.label),
                "malignancy": int(row.malignancy), "folds": np.asarray(row.folds, np.int8),
                "images": self.variants(load_crop(row.file), row.path),
            }
