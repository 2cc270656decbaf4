"""Every TFDS builder, built from small fixtures in a subprocess where TensorFlow cannot be imported.

The subprocess removes TensorFlow from the import system (as if it were not installed), builds
chest14_source_matters and chest14_sex from tiny PNGs named as in the study's split CSVs, lidc_nodules
from fake crops and synthetic_cxr from scratch, each through `load_experiment`, twice for
determinism, and saves the pools and memberships; the tests here compare them with the study's CSVs.
"""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sourcematters_jax.data import splits as splits_lib

SCRIPT = r'''
import importlib.abc, importlib.machinery, json, pathlib, sys

class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Wraps the path finder so that `tensorflow` is not found, as if it were not installed."""
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "tensorflow":
            return None
        return self.inner.find_spec(name, path, target)
    def invalidate_caches(self):
        self.inner.invalidate_caches()

sys.meta_path[:] = [_NoTensorFlow(f) if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
try:
    import tensorflow
    raise SystemExit("tensorflow still importable")
except ImportError:
    pass

import numpy as np
from sourcematters_jax.data import experiment, testing

root = pathlib.Path(sys.argv[1])
testing.write_study_nih(root / "nih", size=32, n_reserve=4)
testing.write_lidc(root / "lidc")
DETERMINISM = ("chest14", "lidc", "synthetic_tag")  # builds twice: confounder noise, CT noise, generator
runs = {
    "chest14": ("tag", "chest14_source_matters", root / "nih", {}),
    "sex": ("sex", "chest14_sex", root / "nih", {"n_heldout": 4}),
    "lidc": ("ct_noise", "lidc_nodules", root / "lidc", {}),
    "synthetic_tag": ("tag", "synthetic_cxr", None, {"full_size": 64}),
    "synthetic_sex": ("sex", "synthetic_cxr", None, {"full_size": 64}),
}

out = {}


def build(key, exp, dataset, manual, options):
    for attempt in ("a", "b") if key in DETERMINISM else ("a",):
        e = experiment.load_experiment(exp, dataset=dataset, data_dir=root / f"tfds_{attempt}",
                                       manual_dir=manual, image_size=16, **options)
        arrays = dict(images=e.pool.images, labels=e.pool.labels, patient_ids=e.pool.patient_ids,
                      names=np.asarray(e.pool.names), membership=e.membership, is_test=e.is_test)
        if exp == "sex":
            arrays.update(is_heldout=e.is_heldout, sex=e.sex)
        np.savez(root / f"{key}_{attempt}.npz", **arrays)
    out[key] = list(e.pool.variants)


for key, run in runs.items():
    build(key, *run)
# The real chest14 builders on the synthetic download that synthetic_cxr generated above.
raw = next((root / "tfds_a" / "downloads" / "synthetic_cxr_raw").iterdir())
splits = str(raw / "splits" / "chest14")
build("nih_on_synthetic", "tag", "chest14_source_matters", raw, {"splits_dir": splits, "tag_scale": 3.0})
build("sex_on_synthetic", "sex", "chest14_sex", raw, {"splits_dir": splits, "n_heldout": 25, "heldout_seed": 0})
out["tensorflow_loaded"] = "tensorflow" in sys.modules
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("builders")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])

    def load(key, attempt="a"):
        with np.load(root / f"{key}_{attempt}.npz") as z:
            return {k: z[k] for k in z.files}

    return info, load


def test_builds_without_tensorflow(built):
    info, _ = built
    assert info["tensorflow_loaded"] is False
    assert info["chest14"] == ["clean", "tag"]
    assert info["sex"] == ["clean"]
    assert info["lidc"] == ["ct_noise_base", "ct_noise_confounded"]


@pytest.mark.parametrize("key", ["chest14", "lidc", "synthetic_tag"])
def test_building_twice_gives_identical_arrays(built, key):
    _, load = built
    a, b = load(key, "a"), load(key, "b")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _names(z, mask):
    return set(z["names"][mask])


def test_chest14_split_sizes_and_classes_equal_the_study_csvs(built):
    _, load = built
    z = load("chest14")
    d = splits_lib.package_splits_dir()
    test = pd.read_csv(d / "test.csv", index_col=0)
    assert len(test) == 83 and dict(test["class"].value_counts()) == {"NO": 52, "YES": 31}
    assert _names(z, z["is_test"]) == set(test["path"])
    assert z["is_test"].sum() == 83 and z["labels"][z["is_test"]].sum() == 31
    assert len(z["names"]) == 331 and z["labels"].sum() == 99
    label_of = dict(zip(z["names"], z["labels"]))
    for k in range(1, 6):
        for code, split in ((1, "train"), (2, "val")):
            csv = pd.read_csv(d / f"{split}_fold{k}.csv", index_col=0)
            mask = z["membership"][:, k - 1] == code
            assert _names(z, mask) == set(csv["path"]), (split, k)
            assert all(label_of[p] == (c == "YES") for p, c in zip(csv["path"], csv["class"]))
            pid_of = dict(zip(z["names"], z["patient_ids"]))
            assert all(pid_of[p] == pid for p, pid in zip(csv["path"], csv["pid"]))


def test_chest14_sex_matches_the_published_gender_splits(built):
    _, load = built
    z = load("sex")
    d = splits_lib.package_splits_dir() / "gender"
    test = pd.read_csv(d / "test.csv", index_col=0)
    assert _names(z, z["is_test"]) == set(test["path"])
    for i, p in enumerate(splits_lib.SEX_P_GRID):
        for k in range(1, 6):
            for code, split in ((1, "train"), (2, "val")):
                csv = pd.read_csv(d / splits_lib.sex_folder(p) / f"{split}_fold{k}.csv", index_col=0)
                assert _names(z, z["membership"][:, i, k - 1] == code) == set(csv["path"]), (p, k, split)
    # held-out reserve: 4 per (sex, class), patients outside every split
    held = z["is_heldout"]
    assert held.sum() == 16
    for sex in "MF":
        for label in (0, 1):
            assert (held & (z["sex"] == sex) & (z["labels"] == label)).sum() == 4
    used = set(z["patient_ids"][~held])
    assert not used & set(z["patient_ids"][held])


def test_lidc_drops_indeterminate_and_groups_patients(built):
    _, load = built
    z = load("lidc")
    raw = _lidc_table()  # the fixture's table, rewritten from the same seed
    kept = raw[raw["malignancy"] != 3]
    assert set(z["names"]) == set(kept["path"])
    label_of = dict(zip(kept["path"], (kept["malignancy"] > 3).astype(int)))
    assert all(label_of[n] == lab for n, lab in zip(z["names"], z["labels"]))
    test_pids = set(z["patient_ids"][z["is_test"]])
    assert test_pids and not test_pids & set(z["patient_ids"][~z["is_test"]])
    for k in range(5):
        tr = set(z["patient_ids"][z["membership"][:, k] == 1])
        va = set(z["patient_ids"][z["membership"][:, k] == 2])
        assert tr and va and not tr & va
        assert ((z["membership"][:, k] > 0) | z["is_test"]).all()


def _lidc_table():
    import tempfile
    from sourcematters_jax.data import testing
    with tempfile.TemporaryDirectory() as d:
        return testing.write_lidc(d)


def test_synthetic_mirrors_chest14_sizes(built):
    _, load = built
    z = load("synthetic_tag")
    assert len(z["names"]) == 331 and z["labels"].sum() == 99
    assert len(set(z["patient_ids"])) == 270
    assert z["is_test"].sum() == 83 and z["labels"][z["is_test"]].sum() == 31
    test_pids = set(z["patient_ids"][z["is_test"]])
    assert not test_pids & set(z["patient_ids"][~z["is_test"]])
    for k in range(5):
        n_train, n_val = (z["membership"][:, k] == 1).sum(), (z["membership"][:, k] == 2).sum()
        assert n_train + n_val == 248 and 15 <= n_val <= 40
    s = load("synthetic_sex")
    test = s["is_test"]  # the patient-grouped test half of 100 male positives + 50 female negatives
    assert set(s["sex"][test & (s["labels"] == 1)]) == {"M"} and set(s["sex"][test & (s["labels"] == 0)]) == {"F"}
    assert (test & (s["labels"] == 0)).sum() == 50 and 40 <= (test & (s["labels"] == 1)).sum() <= 60


def test_synthetic_signals_are_real_but_imperfect(built):
    """Disease is learnable from the clean pixels but not perfectly; sex (the shortcut) is easy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    _, load = built
    z = load("synthetic_tag")
    x = z["images"][:, 0].reshape(len(z["labels"]), -1) / 255.0
    train = z["membership"][:, 0] == 1
    clf = LogisticRegression(C=1.0, max_iter=3000).fit(x[train], z["labels"][train])
    auc = roc_auc_score(z["labels"][z["is_test"]], clf.decision_function(x[z["is_test"]]))
    assert 0.65 < auc < 0.98
    s = load("synthetic_sex")
    x = s["images"][:, 0].reshape(len(s["labels"]), -1) / 255.0
    female = s["sex"] == "F"
    train = ~s["is_test"] & ~s["is_heldout"]
    clf = LogisticRegression(C=1.0, max_iter=3000).fit(x[train], female[train])
    assert roc_auc_score(female[s["is_heldout"]], clf.decision_function(x[s["is_heldout"]])) > 0.85


@pytest.mark.parametrize("kind", ["tag", "sex"])
def test_real_builders_on_the_synthetic_download_give_the_same_pool(built, kind):
    _, load = built
    synthetic, real = load(f"synthetic_{kind}"), load(("nih" if kind == "tag" else "sex") + "_on_synthetic")
    assert synthetic.keys() == real.keys()
    for k in synthetic:
        np.testing.assert_array_equal(synthetic[k], real[k], err_msg=k)
