"""A synthetic NIH ChestX-ray14 download: PNGs, Data_Entry_2017.csv and the study's split CSVs.

`generate(out_dir, spec)` writes, deterministically from `spec.seed`:

  out_dir/images/{pid:08d}_{follow_up:03d}.png    grayscale radiographs, spec.image_size px
  out_dir/Data_Entry_2017.csv                      NIH's columns (labels, patient, sex, view, ...)
  out_dir/splits/chest14/test.csv, train_fold{k}.csv, val_fold{k}.csv   (,path,pid,class)
  out_dir/splits/chest14/gender/test.csv, F_{p}/{train,val}_fold{k}.csv (,path,class,pid,...)
  out_dir/spec.json

so the real chest14 builders run on it unchanged (manual_dir=out_dir, splits_dir=out_dir/splits/
chest14). Sizes mirror the study's chest14 subset (331 images, 270 patients, 99 YES / 232 NO,
a patient-grouped test set of 83 = 52 NO / 31 YES, 5 Monte-Carlo patient-grouped folds with 10%
of patients in val) plus a population for the sex experiment at a quarter of the study's sample
sizes. The directory appears atomically: it is written under a temporary name and renamed when
complete, so an interrupted run never leaves a directory that looks finished.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np
import pandas as pd
from PIL import Image

from sourcematters_jax import atomic_files
from sourcematters_jax.data import splits as splits_lib
from sourcematters_jax.data import synthetic_images

SPEC_FILE = "spec.json"
CHEST14_YES_LABELS = ("Atelectasis", "Nodule", "Mass", "Consolidation", "Atelectasis|Effusion", "Infiltration")


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. The defaults are the demo's dataset."""

    seed: int = 0
    image_size: int = 256
    generator_version: int = 2  # bump whenever synthetic_images draws differently
    # chest14 subset (tag / denoising / X-ray noise experiments)
    n_patients: int = 270
    n_images: int = 331
    n_yes: int = 99
    n_test_no: int = 52
    n_test_yes: int = 31
    n_folds: int = splits_lib.N_FOLDS
    val_size: float = 0.1
    # extra population for the sex experiment: images per (sex, class), plus distractors
    extra_male_pos: int = 180
    extra_female_pos: int = 110
    extra_male_neg: int = 90
    extra_female_neg: int = 90
    extra_ap_views: int = 20
    extra_other_findings: int = 20
    sex_sizes: splits_lib.SexSizes = splits_lib.SexSizes(100, 50, 50, 50)
    follow_up_rate: float = 0.2  # chance that an extra image is a follow-up of the previous patient

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def name(self) -> str:
        """A directory name that changes whenever any field does."""
        import hashlib
        return f"s{self.seed}_{self.image_size}px_{hashlib.sha256(self.to_json().encode()).hexdigest()[:10]}"


def _population(spec: SyntheticSpec, rng: np.random.Generator) -> pd.DataFrame:
    """One row per image: pid, sex, opacity count, labels, view, split group."""
    n_extra = (spec.extra_male_pos + spec.extra_female_pos + spec.extra_male_neg
               + spec.extra_female_neg + spec.extra_ap_views + spec.extra_other_findings)
    pids = rng.choice(np.arange(1, 30806), size=spec.n_patients + n_extra, replace=False)
    rows = []
    # chest14 subset: every patient has an image, the rest are follow-ups of random patients
    owners = np.concatenate([np.arange(spec.n_patients),
                             rng.integers(0, spec.n_patients, spec.n_images - spec.n_patients)])
    yes = np.zeros(spec.n_images, bool)
    yes[rng.choice(spec.n_images, spec.n_yes, replace=False)] = True
    sexes = np.where(rng.random(spec.n_patients) < 0.55, "M", "F")
    for i, owner in enumerate(owners):
        label = rng.choice(CHEST14_YES_LABELS) if yes[i] else "No Finding"
        rows.append(dict(pid=pids[owner], sex=sexes[owner], positive=yes[i], labels=label,
                         view="PA", group="chest14"))
    # extra population; a new patient unless it is a follow-up of the previous one
    groups = ([("M", True, "PA")] * spec.extra_male_pos + [("F", True, "PA")] * spec.extra_female_pos
              + [("M", False, "PA")] * spec.extra_male_neg + [("F", False, "PA")] * spec.extra_female_neg
              + [(None, None, "AP")] * spec.extra_ap_views + [(None, True, "other")] * spec.extra_other_findings)
    next_pid, prev = spec.n_patients, None
    for sex, positive, view in groups:
        sex = sex or ("M" if rng.random() < 0.5 else "F")
        positive = bool(rng.random() < 0.4) if positive is None else positive
        if prev is not None and prev[1] == sex and rng.random() < spec.follow_up_rate:
            pid = prev[0]
        else:
            pid, next_pid = pids[next_pid], next_pid + 1
        prev = (pid, sex)
        if view == "other":
            labels, view = "Effusion", "PA"
        else:
            labels = ("Atelectasis" if rng.random() < 0.8 else "Atelectasis|Effusion") if positive else "No Finding"
        rows.append(dict(pid=pid, sex=sex, positive=positive, labels=labels, view=view, group="extra"))
    df = pd.DataFrame(rows)
    df["follow_up"] = df.groupby("pid").cumcount()
    df["path"] = [f"{p:08d}_{f:03d}.png" for p, f in zip(df["pid"], df["follow_up"])]
    df["age"] = rng.integers(18, 85, len(df))
    df["opacities"] = np.where(df["positive"], rng.integers(1, 4, len(df)), 0)
    return df


def _chest14_folds(df: pd.DataFrame, spec: SyntheticSpec, rng: np.random.Generator) -> splits_lib.Folds:
    """A patient-grouped test set with exactly the study's class counts, then MC folds."""
    sub = df[df["group"] == "chest14"].copy()
    sub["class"] = np.where(sub["positive"], "YES", "NO")
    sub["label"] = sub["positive"].astype(np.int32)
    need = {"NO": spec.n_test_no, "YES": spec.n_test_yes}
    test_pids = []
    for pid in rng.permutation(sub["pid"].unique()):
        counts = sub[sub["pid"] == pid]["class"].value_counts()
        if all(counts.get(c, 0) <= need[c] for c in need):
            test_pids.append(pid)
            for c in need:
                need[c] -= counts.get(c, 0)
        if not any(need.values()):
            break
    if any(need.values()):
        raise RuntimeError(f"could not fill the synthetic test set exactly ({need} left)")
    is_test = sub["pid"].isin(test_pids)
    test = sub[is_test].sort_values("path").reset_index(drop=True)
    rest = sub[~is_test].sort_values("path").reset_index(drop=True)
    return splits_lib.Folds(test, splits_lib.monte_carlo_folds(rest, spec.n_folds, spec.val_size, rng))


def _data_entry(df: pd.DataFrame, spec: SyntheticSpec) -> pd.DataFrame:
    return pd.DataFrame({
        "Image Index": df["path"], "Finding Labels": df["labels"], "Follow-up #": df["follow_up"],
        "Patient ID": df["pid"], "Patient Age": df["age"], "Patient Gender": df["sex"],
        "View Position": df["view"], "OriginalImage[Width": spec.image_size, "Height]": spec.image_size,
        "OriginalImagePixelSpacing[x": 0.143 * 1024 / spec.image_size,
        "y]": 0.143 * 1024 / spec.image_size,
    })


def _write(out: pathlib.Path, spec: SyntheticSpec) -> None:
    rng = np.random.default_rng([spec.seed, 0])
    df = _population(spec, rng)
    anatomy_rng = np.random.default_rng([spec.seed, 1])
    anatomy = {pid: synthetic_images.sample_anatomy(anatomy_rng, sex)
               for pid, sex in df.drop_duplicates("pid")[["pid", "sex"]].itertuples(index=False)}
    (out / "images").mkdir(parents=True)
    for i, row in enumerate(df.itertuples(index=False)):
        image_rng = np.random.default_rng([spec.seed, 2, i])
        image = synthetic_images.draw_image(anatomy[row.pid], spec.image_size, image_rng, int(row.opacities))
        Image.fromarray(image).save(out / "images" / row.path, compress_level=1)
    entry = _data_entry(df, spec)
    entry.to_csv(out / "Data_Entry_2017.csv", index=False)
    split_dir = out / "splits" / "chest14"
    splits_lib.write_chest14_splits(_chest14_folds(df, spec, np.random.default_rng([spec.seed, 3])), split_dir)
    test, pools = splits_lib.sample_sex_splits(splits_lib.sex_candidates(entry), seed=spec.seed,
                                               sizes=spec.sex_sizes)
    splits_lib.write_sex_splits(test, pools, split_dir)
    (out / SPEC_FILE).write_text(spec.to_json())


def generate(out_dir: str | os.PathLike, spec: SyntheticSpec = SyntheticSpec()) -> pathlib.Path:
    """Writes the synthetic download to `out_dir` unless it is already there; returns out_dir.

    Raises if `out_dir` holds a dataset generated from a different spec.
    """
    out = pathlib.Path(out_dir)
    if out.exists():
        found = (out / SPEC_FILE).read_text() if (out / SPEC_FILE).is_file() else None
        if found != spec.to_json():
            raise FileExistsError(f"{out} exists but was not generated from this spec "
                                  f"(found {found}); remove it or choose another directory")
        return out
    try:
        with atomic_files.new_directory(out) as tmp:
            _write(tmp, spec)
    except FileExistsError:
        if not (out / SPEC_FILE).is_file():  # not a concurrent writer that finished first
            raise
    return out


def splits_dir(raw_dir: str | os.PathLike) -> pathlib.Path:
    """Where `generate` put the study-format split CSVs."""
    return pathlib.Path(raw_dir) / "splits" / "chest14"
