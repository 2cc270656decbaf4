"""The shipped study splits, and the seeded re-sampling protocols, against the study and sklearn."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupShuffleSplit

from sourcematters_jax.data import splits as splits_lib
from sourcematters_jax.data.rawdata import DataError


def test_shipped_chest14_splits_are_the_studys():
    folds = splits_lib.load_chest14_splits()
    assert len(folds.test) == 83 and folds.test["label"].sum() == 31
    assert len(folds.all_training()) == 248
    test_pids = set(folds.test["pid"])
    for train, val in folds.folds:
        assert 217 <= len(train) <= 225 and 23 <= len(val) <= 31
        assert len(train) + len(val) == 248
        assert not set(train["pid"]) & set(val["pid"])  # patient-grouped
        assert not (set(train["pid"]) | set(val["pid"])) & test_pids
    assert (splits_lib.package_splits_dir().parent / "LICENSE.source-matters").is_file()


def test_shipped_sex_splits_follow_the_protocol():
    test, pools = splits_lib.load_sex_splits()
    assert dict(test.groupby(["class", "Patient Gender"]).size()) == {("Atelectasis", "M"): 200,
                                                                     ("No Finding", "F"): 200}
    for p in splits_lib.SEX_P_GRID:
        folds = pools[splits_lib.sex_folder(p)]
        pool = folds.all_training()
        counts = pool.groupby(["class", "Patient Gender"]).size().to_dict()
        assert counts.get(("Atelectasis", "F"), 0) == round(200 * p)
        assert counts.get(("Atelectasis", "M"), 0) == round(200 * (1 - p))
        assert counts[("No Finding", "M")] == 200
        for train, val in folds.folds:
            assert not set(train["pid"]) & set(val["pid"])
            assert 0.12 <= len(val) / len(pool) <= 0.18  # GroupShuffleSplit(test_size=0.15)


def test_group_shuffle_split_is_sklearns():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 60, 200)
    ours = splits_lib.group_shuffle_split(groups, 0.5, np.random.RandomState(42))
    theirs = next(GroupShuffleSplit(n_splits=2, test_size=0.5, random_state=42).split(groups, groups, groups))
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(np.sort(a), np.sort(b))
    ours = splits_lib.group_shuffle_split(groups, 0.15, np.random.RandomState(7))
    theirs = next(GroupShuffleSplit(n_splits=5, test_size=0.15, random_state=7).split(groups, groups, groups))
    np.testing.assert_array_equal(np.sort(ours[1]), np.sort(theirs[1]))


def _data_entry(n_per_group=260, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    pid = 0
    for sex in "MF":
        for labels in ("Atelectasis", "Atelectasis|Effusion", "No Finding", "Effusion"):
            for _ in range(n_per_group):
                pid += 1 if rng.random() < 0.8 else 0
                rows.append({"Image Index": f"{pid:08d}_{len(rows):03d}.png", "Finding Labels": labels,
                             "Patient ID": pid, "Patient Gender": sex,
                             "View Position": "PA" if rng.random() < 0.9 else "AP"})
    return pd.DataFrame(rows)


def test_sex_candidates_are_gender_py_selection():
    entry = _data_entry(20)
    cand = splits_lib.sex_candidates(entry)
    merged = cand.merge(entry, left_on="path", right_on="Image Index")
    assert (merged["View Position"] == "PA").all()
    assert set(merged.loc[merged["label"] == 1, "Finding Labels"]) == {"Atelectasis", "Atelectasis|Effusion"}
    assert set(merged.loc[merged["label"] == 0, "Finding Labels"]) == {"No Finding"}
    expected = entry[(entry["View Position"] == "PA") & (entry["Finding Labels"] != "Effusion")]
    assert len(cand) == len(expected)


def test_sex_resampling_reproduces_the_protocol():
    cand = splits_lib.sex_candidates(_data_entry())
    test, pools = splits_lib.sample_sex_splits(cand, seed=812)
    counts = test.groupby(["class", "Patient Gender"]).size().to_dict()
    assert set(counts) == {("Atelectasis", "M"), ("No Finding", "F")} and counts[("No Finding", "F")] == 200
    assert 170 <= counts[("Atelectasis", "M")] <= 230  # the patient-grouped half of 400
    test_pids = set(test["pid"])
    for p in splits_lib.SEX_P_GRID:
        folds = pools[splits_lib.sex_folder(p)]
        pool = folds.all_training()
        c = pool.groupby(["class", "Patient Gender"]).size().to_dict()
        assert c.get(("Atelectasis", "F"), 0) == int(np.floor(200 * p + 0.5))
        assert c[("No Finding", "M")] == 200
        assert not set(pool.loc[pool["label"] == 1, "pid"]) & set(test.loc[test["label"] == 1, "pid"])
        assert len(folds.folds) == 5
        for train, val in folds.folds:
            assert not set(train["pid"]) & set(val["pid"])
    assert test_pids
    again_test, again = splits_lib.sample_sex_splits(cand, seed=812)
    pd.testing.assert_frame_equal(test, again_test)
    other_test, _ = splits_lib.sample_sex_splits(cand, seed=813)
    assert set(other_test["path"]) != set(test["path"])


def test_sex_resampling_needs_enough_images():
    cand = splits_lib.sex_candidates(_data_entry(30))
    with pytest.raises(DataError, match="needs 400 male Atelectasis images"):
        splits_lib.sample_sex_splits(cand, seed=0)


def test_sex_folder_names():
    assert [splits_lib.sex_folder(p) for p in splits_lib.SEX_P_GRID] == [
        "F_0", "F_10", "F_20", "F_50", "F_80", "F_100"]
    with pytest.raises(ValueError, match="sampled only"):
        splits_lib.sex_folder(0.3)


def test_written_splits_read_back(tmp_path):
    folds = splits_lib.load_chest14_splits()
    splits_lib.write_chest14_splits(folds, tmp_path)
    again = splits_lib.load_chest14_splits(tmp_path)
    pd.testing.assert_frame_equal(folds.test.drop(columns="source_csv"), again.test.drop(columns="source_csv"))
    assert (tmp_path / "test.csv").read_text().splitlines()[0] == ",path,pid,class"
