"""The study's split files: reading, checking, and (re)making them with the study's protocol.

Two layouts, as in github.com/DovileDo/source-matters `data/chest14/` (shipped in this package
under `splits/chest14/`, MIT; see splits/README.md):

  chest14/test.csv, train_fold{1..5}.csv, val_fold{1..5}.csv      columns: ,path,pid,class
      class YES / NO (label 1 / 0); one fixed test set, 5 Monte-Carlo patient-grouped folds.
  chest14/gender/test.csv, gender/F_{0,10,20,50,80,100}/{train,val}_fold{1..5}.csv
      columns: ,path,class,pid,Patient Gender; class Atelectasis / No Finding (label 1 / 0).

Where the study sampled without a seed (gender.py), `sample_sex_splits` redoes its protocol with
an explicit numpy Generator; `group_shuffle_split` follows scikit-learn's GroupShuffleSplit.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
import pathlib
from typing import Sequence

import numpy as np
import pandas as pd

from sourcematters_jax.data import rawdata

N_FOLDS = 5
SEX_P_GRID = (0.0, 0.1, 0.2, 0.5, 0.8, 1.0)  # the F_{0,10,20,50,80,100} folders
CHEST14_LABELS = {"NO": 0, "YES": 1}
SEX_LABELS = {"No Finding": 0, "Atelectasis": 1}
SEX_COLUMNS = ["path", "class", "pid", "Patient Gender"]
CHEST14_COLUMNS = ["path", "pid", "class"]


def package_splits_dir() -> pathlib.Path:
    """`sourcematters_jax/data/splits/chest14`: the study's CSVs shipped with the package."""
    return pathlib.Path(str(importlib.resources.files("sourcematters_jax.data") / "splits" / "chest14"))


def sex_folder(p: float) -> str:
    """The study's folder name for the female proportion p: 0.1 -> 'F_10'."""
    matches = [q for q in SEX_P_GRID if math.isclose(p, q, abs_tol=1e-9)]
    if not matches:
        raise ValueError(f"the sex experiment is sampled only for p in {SEX_P_GRID}, got {p}")
    return f"F_{int(round(matches[0] * 100))}"


@dataclasses.dataclass(frozen=True)
class Folds:
    """A test set and per-fold (train, val) tables; each table has path, pid, label (+ extras)."""

    test: pd.DataFrame
    folds: tuple[tuple[pd.DataFrame, pd.DataFrame], ...]

    def all_training(self) -> pd.DataFrame:
        """Every distinct image that occurs in some fold's train or val table."""
        frames = [t for pair in self.folds for t in pair]
        return pd.concat(frames, ignore_index=True).drop_duplicates("path").reset_index(drop=True)


def _read(path: pathlib.Path, labels: dict[str, int], extra: Sequence[str] = (),
          allowed: dict | None = None) -> pd.DataFrame:
    df = rawdata.read_table(path, ["path", "pid", "class", *extra], index_col=0,
                            allowed={"class": labels, **(allowed or {})}, integer=("pid",))
    df["path"] = [rawdata.check_relative_path(p, where=f"{path}: row {i + 1}") for i, p in enumerate(df["path"])]
    df["label"] = df["class"].map(labels).astype(np.int32)
    dup = df["path"][df["path"].duplicated()]
    if len(dup):
        raise rawdata.DataError(f"{path}: image {dup.iloc[0]!r} listed twice")
    df["source_csv"] = [f"{path.name} row {i + 1}" for i in range(len(df))]
    return df


def load_chest14_splits(splits_dir: str | os.PathLike | None = None) -> Folds:
    """test.csv and train/val_fold{1..5}.csv of the tag / denoising / X-ray noise experiments."""
    d = pathlib.Path(splits_dir) if splits_dir else package_splits_dir()
    test = _read(d / "test.csv", CHEST14_LABELS)
    folds = tuple((_read(d / f"train_fold{k}.csv", CHEST14_LABELS),
                   _read(d / f"val_fold{k}.csv", CHEST14_LABELS)) for k in range(1, N_FOLDS + 1))
    _check_disjoint(test, folds, d)
    return Folds(test, folds)


def has_sex_splits(splits_dir: str | os.PathLike | None = None) -> bool:
    d = pathlib.Path(splits_dir) if splits_dir else package_splits_dir()
    return (d / "gender" / "test.csv").is_file()


def load_sex_splits(splits_dir: str | os.PathLike | None = None) -> tuple[pd.DataFrame, dict[str, Folds]]:
    """gender/test.csv (the o.o.d. test) and {F_p: Folds} for p in SEX_P_GRID."""
    d = (pathlib.Path(splits_dir) if splits_dir else package_splits_dir()) / "gender"
    sex = {"Patient Gender": ("M", "F")}
    test = _read(d / "test.csv", SEX_LABELS, ["Patient Gender"], sex)
    pools = {}
    for p in SEX_P_GRID:
        sub = d / sex_folder(p)
        folds = tuple((_read(sub / f"train_fold{k}.csv", SEX_LABELS, ["Patient Gender"], sex),
                       _read(sub / f"val_fold{k}.csv", SEX_LABELS, ["Patient Gender"], sex))
                      for k in range(1, N_FOLDS + 1))
        _check_disjoint(test, folds, sub)
        pools[sex_folder(p)] = Folds(test, folds)
    return test, pools


def _check_disjoint(test: pd.DataFrame, folds, where: pathlib.Path) -> None:
    test_paths = set(test["path"])
    for k, (train, val) in enumerate(folds, start=1):
        overlap = sorted((set(train["path"]) | set(val["path"])) & test_paths)
        both = sorted(set(train["path"]) & set(val["path"]))
        if overlap or both:
            raise rawdata.DataError(f"{where}: fold {k}: images in both test and training "
                                    f"{overlap[:5]} or in both train and val {both[:5]}")


def group_shuffle_split(groups: Sequence[int], test_size: float, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test) with whole groups on one side, as sklearn's GroupShuffleSplit.

    ceil(test_size * n_groups) randomly chosen groups form the test side, the rest the train side.
    """
    classes, inverse = np.unique(np.asarray(groups), return_inverse=True)
    n_test = int(math.ceil(test_size * len(classes)))
    if not 0 < n_test < len(classes):
        raise ValueError(f"cannot split {len(classes)} groups with test_size={test_size}")
    perm = rng.permutation(len(classes))
    test_groups = perm[:n_test]
    is_test = np.isin(inverse, test_groups)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def monte_carlo_folds(df: pd.DataFrame, n_folds: int, val_size: float, rng: np.random.Generator
                      ) -> tuple[tuple[pd.DataFrame, pd.DataFrame], ...]:
    """n_folds independent patient-grouped (train, val) splits of df (the study's 5 'folds')."""
    out = []
    for _ in range(n_folds):
        tr, va = group_shuffle_split(df["pid"].to_numpy(), val_size, rng)
        out.append((df.iloc[tr].reset_index(drop=True), df.iloc[va].reset_index(drop=True)))
    return tuple(out)


def _sample(df: pd.DataFrame, n: int, rng: np.random.Generator, what: str) -> pd.DataFrame:
    if len(df) < n:
        raise rawdata.DataError(f"the sex experiment needs {n} {what} images, only {len(df)} available")
    return df.iloc[np.sort(rng.choice(len(df), size=n, replace=False))].reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class SexSizes:
    """How many images gender.py sampled per group (study: 400 / 200 / 200 / 200)."""

    male_pos: int = 400
    female_pos: int = 200
    male_neg: int = 200
    female_neg: int = 200


def sex_candidates(data_entry: pd.DataFrame) -> pd.DataFrame:
    """gender.py's selection: PA views; Atelectasis anywhere in the labels, or 'No Finding'.

    Returns columns path, class, pid, Patient Gender (the study's CSV columns) plus label.
    """
    pa = data_entry[data_entry["View Position"].str.strip() == "PA"]
    labels = pa["Finding Labels"].str.split("|")
    pos = labels.map(lambda ls: "Atelectasis" in ls)
    neg = labels.map(lambda ls: "No Finding" in ls) & ~pos
    out = pd.DataFrame({
        "path": pa["Image Index"], "pid": pa["Patient ID"].astype(np.int64),
        "Patient Gender": pa["Patient Gender"],
        "class": np.where(pos, "Atelectasis", "No Finding"),
    })[(pos | neg).to_numpy()]
    out["label"] = out["class"].map(SEX_LABELS).astype(np.int32)
    return out.sort_values("path").reset_index(drop=True)


def sample_sex_splits(candidates: pd.DataFrame, seed: int, sizes: SexSizes = SexSizes(),
                      n_folds: int = N_FOLDS, val_size: float = 0.15
                      ) -> tuple[pd.DataFrame, dict[str, Folds]]:
    """gender.py's protocol, seeded: the o.o.d. test set and {F_p: Folds} for p in SEX_P_GRID.

    Samples male/female positives/negatives; a patient-grouped half of the male positives plus
    all female negatives is the o.o.d. test set; for each p the training pool is round(p * n_fp)
    female positives + round((1 - p) * n_mp_train) male positives (from the train half) + the
    male negatives, split into n_folds patient-grouped (train, val) folds (val_size of patients).
    Each p is drawn with its own Generator (seed, p), so a pool does not depend on the grid.
    """
    rng = np.random.default_rng([seed, 0])
    by = {(c, s): candidates[(candidates["class"] == c) & (candidates["Patient Gender"] == s)]
          for c in SEX_LABELS for s in ("M", "F")}
    male_pos = _sample(by["Atelectasis", "M"], sizes.male_pos, rng, "male Atelectasis")
    female_pos = _sample(by["Atelectasis", "F"], sizes.female_pos, rng, "female Atelectasis")
    male_neg = _sample(by["No Finding", "M"], sizes.male_neg, rng, "male No Finding")
    female_neg = _sample(by["No Finding", "F"], sizes.female_neg, rng, "female No Finding")
    tr, te = group_shuffle_split(male_pos["pid"].to_numpy(), 0.5, rng)
    male_pos_train = male_pos.iloc[tr].reset_index(drop=True)
    test = pd.concat([male_pos.iloc[te], female_neg], ignore_index=True)
    pools = {}
    for i, p in enumerate(SEX_P_GRID):
        prng = np.random.default_rng([seed, 1, i])
        n_f = int(math.floor(p * len(female_pos) + 0.5))
        n_m = int(math.floor((1 - p) * len(male_pos_train) + 0.5))
        pool = pd.concat([_sample(female_pos, n_f, prng, "female positive"),
                          _sample(male_pos_train, n_m, prng, "male positive"), male_neg],
                         ignore_index=True)
        pools[sex_folder(p)] = Folds(test, monte_carlo_folds(pool, n_folds, val_size, prng))
    return test, pools


def write_chest14_splits(folds: Folds, out_dir: str | os.PathLike) -> None:
    """Writes test.csv and train/val_fold{k}.csv in the study's format (,path,pid,class)."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folds.test[CHEST14_COLUMNS].to_csv(out / "test.csv")
    for k, (train, val) in enumerate(folds.folds, start=1):
        train[CHEST14_COLUMNS].to_csv(out / f"train_fold{k}.csv")
        val[CHEST14_COLUMNS].to_csv(out / f"val_fold{k}.csv")


def write_sex_splits(test: pd.DataFrame, pools: dict[str, Folds], out_dir: str | os.PathLike) -> None:
    """Writes gender/test.csv and gender/F_p/{train,val}_fold{k}.csv in the study's format."""
    out = pathlib.Path(out_dir) / "gender"
    out.mkdir(parents=True, exist_ok=True)
    test[SEX_COLUMNS].to_csv(out / "test.csv")
    for name, folds in pools.items():
        (out / name).mkdir(exist_ok=True)
        for k, (train, val) in enumerate(folds.folds, start=1):
            train[SEX_COLUMNS].to_csv(out / name / f"train_fold{k}.csv")
            val[SEX_COLUMNS].to_csv(out / name / f"val_fold{k}.csv")
