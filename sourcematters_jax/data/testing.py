"""Small fake raw downloads for tests (in the spirit of `tfds.testing`): NIH layout and LIDC crops.

`write_study_nih(root)` writes a tiny PNG for every image the study's split CSVs name, plus a
`Data_Entry_2017.csv` consistent with them and a reserve of extra patients for the sex
experiment's held-out tests, so the real builders run on the real split files in seconds.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pandas as pd
from PIL import Image

from sourcematters_jax.data import splits as splits_lib


def _image(rng: np.random.Generator, size: int, label: int, sex: str) -> np.ndarray:
    """A cheap stand-in radiograph: a gradient, noise, a brighter block for positives."""
    image = np.linspace(40, 160, size)[None, :] + rng.normal(0, 12, (size, size))
    image[size // 3:size // 2, size // 3:size // 2] += 50 * int(label)
    image[-size // 4:] += 20 * (sex == "F")
    return np.clip(image, 0, 255).astype(np.uint8)


def write_images(root: str | os.PathLike, table: pd.DataFrame, size: int = 32, seed: int = 0,
                 folder: str = "images") -> None:
    """A PNG per row of `table` (columns path, label, sex) under root/folder/."""
    out = pathlib.Path(root) / folder
    out.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(table.itertuples(index=False)):
        rng = np.random.default_rng([seed, i])
        Image.fromarray(_image(rng, size, row.label, row.sex)).save(out / row.path, compress_level=1)


def write_study_nih(root: str | os.PathLike, size: int = 32, n_reserve: int = 4, seed: int = 0) -> pd.DataFrame:
    """Every image of the shipped study CSVs + Data_Entry_2017.csv; returns the Data_Entry table.

    chest14 images get 'Nodule' (YES) or 'No Finding' (NO) and a random sex; gender images keep
    their CSV class and sex. `n_reserve` extra PA images per (sex, class) of new patients are
    added for the held-out reserve. Images are spread over NIH's images_001/images, images_002/
    images folders to exercise the lookup.
    """
    rng = np.random.default_rng(seed)
    folds = splits_lib.load_chest14_splits()
    chest = pd.concat([folds.test, folds.all_training()], ignore_index=True)
    rows = {p: dict(path=p, pid=pid, labels="Nodule" if lab else "No Finding", sex=rng.choice(["M", "F"]),
                    label=lab) for p, pid, lab in zip(chest["path"], chest["pid"], chest["label"])}
    test, pools = splits_lib.load_sex_splits()
    for t in [test] + [f for folds in pools.values() for pair in folds.folds for f in pair]:
        for p, pid, cls, sex in zip(t["path"], t["pid"], t["class"], t["Patient Gender"]):
            rows[p] = dict(path=p, pid=pid, labels=cls, sex=sex, label=splits_lib.SEX_LABELS[cls])
    pid = 40000
    for sex in ("M", "F"):
        for cls in splits_lib.SEX_LABELS:
            for _ in range(n_reserve):
                pid += 1
                rows[f"{pid:08d}_000.png"] = dict(path=f"{pid:08d}_000.png", pid=pid, labels=cls, sex=sex,
                                                  label=splits_lib.SEX_LABELS[cls])
    table = pd.DataFrame(sorted(rows.values(), key=lambda r: r["path"]))
    half = len(table) // 2
    write_images(root, table.iloc[:half], size, seed, folder="images_001/images")
    write_images(root, table.iloc[half:], size, seed + 1, folder="images_002/images")
    entry = pd.DataFrame({"Image Index": table["path"], "Finding Labels": table["labels"], "Follow-up #": 0,
                          "Patient ID": table["pid"], "Patient Age": 50, "Patient Gender": table["sex"],
                          "View Position": "PA"})
    entry.to_csv(pathlib.Path(root) / "Data_Entry_2017.csv", index=False)
    return entry


def write_lidc(root: str | os.PathLike, n_patients: int = 12, per_patient: int = 3, size: int = 24,
               seed: int = 0) -> pd.DataFrame:
    """Fake nodule crops (.npy HU; every fourth as PNG) and nodules.csv; returns the table."""
    rng = np.random.default_rng(seed)
    root = pathlib.Path(root)
    (root / "crops").mkdir(parents=True, exist_ok=True)
    rows = []
    yy, xx = np.mgrid[:size, :size] - size / 2
    for p in range(1, n_patients + 1):
        for n in range(per_patient):
            malignancy = int(rng.integers(1, 6))
            radius = size / 8 * (1 + 0.3 * malignancy)
            hu = -850 + rng.normal(0, 30, (size, size)) + 900 * (np.hypot(yy, xx) < radius)
            name = f"crops/LIDC-IDRI-{p:04d}_n{n}"
            if (len(rows) % 4) == 3:
                lo, hi = -1200, 800
                grey = np.floor((np.clip(hu, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)
                Image.fromarray(grey).save(root / f"{name}.png")
                name += ".png"
            else:
                np.save(root / f"{name}.npy", hu.astype(np.int16))
                name += ".npy"
            rows.append(dict(path=name, patient_id=f"LIDC-IDRI-{p:04d}", malignancy=malignancy))
    table = pd.DataFrame(rows)
    table.to_csv(root / "nodules.csv", index=False)
    return table


def write_chest14_csvs(out_dir: str | os.PathLike, test: pd.DataFrame, train: pd.DataFrame,
                       val: pd.DataFrame, n_folds: int = splits_lib.N_FOLDS) -> None:
    """The study's chest14 CSV layout with the same train/val tables in every fold."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    test.to_csv(out / "test.csv")
    for k in range(1, n_folds + 1):
        train.to_csv(out / f"train_fold{k}.csv")
        val.to_csv(out / f"val_fold{k}.csv")
