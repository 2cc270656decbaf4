"""Bad input fails early, names the file and row, and leaves no dataset that looks complete."""

import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sourcematters_jax.data import experiment, rawdata, synthetic, testing
from sourcematters_jax.data.rawdata import DataError


def _table(paths, classes=None):
    classes = classes or ["YES" if i % 3 == 0 else "NO" for i in range(len(paths))]
    pids = [int(p.split("_")[0]) if p[0].isdigit() else 1 for p in paths]
    return pd.DataFrame({"path": paths, "pid": pids, "class": classes})


@pytest.fixture
def small_nih(tmp_path):
    """12 PNGs in NIH's images_001/images/ and a splits dir in the study's format using them."""
    names = [f"{i:08d}_000.png" for i in range(1, 13)]
    labels = [int(i % 3 == 0) for i in range(12)]
    testing.write_images(tmp_path / "nih", pd.DataFrame({"path": names, "label": labels, "sex": "M"}),
                         size=32, folder="images_001/images")
    splits = tmp_path / "splits"
    testing.write_chest14_csvs(splits, _table(names[:4]), _table(names[4:10]), _table(names[10:]))
    return tmp_path / "nih", splits


def _build(tmp_path, manual_dir, splits_dir):
    return experiment.load_experiment("tag", dataset="chest14_source_matters", data_dir=tmp_path / "tfds",
                                      manual_dir=manual_dir, image_size=16, splits_dir=str(splits_dir))


def _assert_nothing_complete(tmp_path):
    tfds_dir = tmp_path / "tfds"
    assert not list(tfds_dir.rglob("dataset_info.json")), "a failed build left a dataset behind"
    assert not list(tfds_dir.rglob("*.array_record*")), "a failed build left records behind"


def test_small_fixture_builds(tmp_path, small_nih):
    e = _build(tmp_path, *small_nih)
    assert e.pool.images.shape == (12, 2, 16, 16)
    m = e.member_data(1.0, 5, 0)
    assert len(m.train.indices) == 6 and len(m.val.indices) == 2 and len(m.test_iid.indices) == 4
    assert (e.pool.images[:, 1] != e.pool.images[:, 0]).any()


def test_path_escaping_the_data_directory(tmp_path, small_nih):
    manual, splits = small_nih
    test = pd.read_csv(splits / "test.csv", index_col=0)
    test.loc[2, "path"] = "../../etc/00000003_000.png"
    test.to_csv(splits / "test.csv")
    with pytest.raises(DataError, match=r"test\.csv: row 3: image path '\.\./\.\./etc/00000003_000\.png' escapes"):
        _build(tmp_path, manual, splits)
    for bad in ("/abs/x.png", "C:/x.png", "a/../../x.png", ""):
        with pytest.raises(DataError):
            rawdata.check_relative_path(bad, where="t")
    assert rawdata.check_relative_path("images_001/images/./x.png", where="t") == "images_001/images/x.png"


def test_missing_images_are_all_listed_with_their_rows(tmp_path, small_nih):
    manual, splits = small_nih
    for name in ("00000002_000.png", "00000005_000.png", "00000011_000.png"):
        (manual / "images_001" / "images" / name).unlink()
    with pytest.raises(DataError) as err:
        _build(tmp_path, manual, splits)
    msg = str(err.value)
    assert "3 image(s) not found" in msg  # test, train and val images, all in one message
    assert "00000002_000.png (test.csv row 2)" in msg
    assert "00000005_000.png (train_fold1.csv row 1)" in msg and "00000011_000.png (val_fold1.csv row 1)" in msg
    _assert_nothing_complete(tmp_path)


def test_unreadable_image_leaves_no_dataset(tmp_path, small_nih):
    manual, splits = small_nih
    bad = manual / "images_001" / "images" / "00000009_000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=r"unreadable image .*00000009_000\.png"):
        _build(tmp_path, manual, splits)
    _assert_nothing_complete(tmp_path)
    bad.unlink()  # after the fix, the same data_dir builds normally
    testing.write_images(manual, pd.DataFrame({"path": [bad.name], "label": [0], "sex": ["M"]}),
                         folder="images_001/images")
    assert len(_build(tmp_path, manual, splits).pool.names) == 12


def test_csv_missing_column(tmp_path, small_nih):
    manual, splits = small_nih
    pd.read_csv(splits / "val_fold3.csv", index_col=0).drop(columns="pid").to_csv(splits / "val_fold3.csv")
    with pytest.raises(DataError, match=r"val_fold3\.csv: missing column\(s\) \['pid'\]"):
        _build(tmp_path, manual, splits)


def test_csv_unknown_label(tmp_path, small_nih):
    manual, splits = small_nih
    t = pd.read_csv(splits / "train_fold2.csv", index_col=0)
    t.loc[4, "class"] = "MAYBE"
    t.to_csv(splits / "train_fold2.csv")
    with pytest.raises(DataError, match=r"train_fold2\.csv: row 5: unknown class 'MAYBE'"):
        _build(tmp_path, manual, splits)


def test_csv_bad_integer(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"path": ["a.png", "b.png"], "pid": ["1", "x7"], "class": ["NO", "YES"]}).to_csv(path)
    with pytest.raises(DataError, match=r"t\.csv: row 2: column 'pid' must be an integer, got 'x7'"):
        rawdata.read_table(path, ["path", "pid", "class"], integer=["pid"], index_col=0)


def test_data_entry_checks(tmp_path):
    path = tmp_path / "Data_Entry_2017.csv"
    pd.DataFrame({"Image Index": ["a.png"], "Finding Labels": ["No Finding"], "Patient ID": [1],
                  "Patient Gender": ["X"], "View Position": ["PA"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="row 1: unknown Patient Gender 'X'"):
        rawdata.read_data_entry(path)
    with pytest.raises(DataError, match="missing the NIH metadata table"):
        rawdata.find_data_entry(tmp_path / "elsewhere")


def test_missing_manual_dir_gives_the_instructions(tmp_path):
    with pytest.raises(FileNotFoundError, match="ChestX-ray14"):
        experiment.load_experiment("tag", dataset="chest14_source_matters", data_dir=tmp_path / "tfds",
                                   manual_dir=tmp_path / "nowhere", image_size=16)


def test_lidc_bad_rows(tmp_path):
    testing.write_lidc(tmp_path, n_patients=2, per_patient=2)
    table = pd.read_csv(tmp_path / "nodules.csv")
    broken = table.copy()
    broken.loc[1, "malignancy"] = 7
    broken.to_csv(tmp_path / "nodules.csv", index=False)
    from sourcematters_jax.data import lidc
    with pytest.raises(DataError, match=r"nodules\.csv: row 2: unknown malignancy '7'"):
        lidc.read_nodules(tmp_path)
    broken = table.copy()
    broken.loc[0, "patient_id"] = "patient seven"
    broken.to_csv(tmp_path / "nodules.csv", index=False)
    with pytest.raises(DataError, match="row 1: patient_id 'patient seven'"):
        lidc.read_nodules(tmp_path)
    np.save(tmp_path / "crops" / "wide.npy", np.zeros((4, 6), np.int16))
    with pytest.raises(DataError, match="square"):
        lidc.load_crop(tmp_path / "crops" / "wide.npy")


def test_unknown_options_and_combinations(tmp_path):
    with pytest.raises(TypeError, match="tag_scael"):
        experiment.make_builder("tag", dataset="synthetic_cxr", data_dir=tmp_path, image_size=16, tag_scael=2)
    with pytest.raises(ValueError, match="runs on"):
        experiment.make_builder("sex", dataset="chest14_source_matters", data_dir=tmp_path, image_size=16)
    with pytest.raises(ValueError, match="unknown experiment"):
        experiment.make_builder("tags", dataset="synthetic_cxr", data_dir=tmp_path, image_size=16)


def test_interrupted_synthetic_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return np.zeros((8, 8), np.uint8)

    monkeypatch.setattr(synthetic.synthetic_images, "draw_image", failing)
    out = tmp_path / "raw"
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(out, synthetic.SyntheticSpec(image_size=8))
    assert not out.exists() and list(pathlib.Path(tmp_path).iterdir()) == []


def test_synthetic_download_finished_first_by_another_writer_is_kept(monkeypatch, tmp_path):
    """Two writers of one download: the one that loses the final rename keeps the winner's copy
    when it is complete (its spec file is there), and refuses a foreign directory."""
    spec, out = synthetic.SyntheticSpec(image_size=8), tmp_path / "raw"
    write = synthetic._write

    def other_writer_wins(tmp, spec):
        out.mkdir()
        write(out, spec)  # the other writer's complete copy lands while this one writes
        write(tmp, spec)

    monkeypatch.setattr(synthetic, "_write", other_writer_wins)
    assert synthetic.generate(out, spec) == out
    assert (out / synthetic.SPEC_FILE).read_text() == spec.to_json()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no temporary left

    foreign = tmp_path / "foreign"
    monkeypatch.setattr(synthetic, "_write", lambda tmp, spec: (foreign / "other").mkdir(parents=True))
    with pytest.raises(FileExistsError, match="another writer"):
        synthetic.generate(foreign, spec)
    assert sorted(p.name for p in foreign.iterdir()) == ["other"]


def test_parallel_programs_build_a_dataset_once(tmp_path):
    """Programs of a sweep start together on one data_dir: both must get the same complete dataset."""
    script = (
        "import sys, hashlib; from sourcematters_jax.data import load_experiment\n"
        "e = load_experiment('tag', dataset='synthetic_cxr', data_dir=sys.argv[1], image_size=8, full_size=32)\n"
        "print(hashlib.sha256(e.pool.images.tobytes()).hexdigest(), len(e.pool.names))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    lines = [out.strip().splitlines()[-1] for out, _ in outs]
    assert lines[0] == lines[1] and lines[0].endswith(" 331")
