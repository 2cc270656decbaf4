"""Config schema, workdir claiming, member packing and the results table (no model compiles)."""

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

from sourcematters_jax.configs import smoke
from fake_experiment import make_experiment
from sourcematters_jax.train import config as config_lib, packing, results
from sourcematters_jax.train.loop import CONFIG_FILE, claim_workdir, program_members


def test_base_config_is_locked_and_valid():
    c = config_lib.base_config()
    config_lib.validate(c)
    with pytest.raises(AttributeError, match="batchsize"):
        c.batchsize = 3
    with pytest.raises(AttributeError):
        c.augment.rotation = 3.0
    assert c.sweep.experiment == "tag"
    c.experiment = "denoising"  # the sweep follows the program's experiment
    assert c.sweep.experiment == "denoising"


@pytest.mark.parametrize("field,value,match", [
    ("batch_size", 0, "config.batch_size"),
    ("experiment", "tags", "config.experiment"),
    ("model.dtype", "float16", "config.model.dtype"),
    ("augment.zoom", 1.5, "config.augment.zoom"),
    ("execution.strategy", "pmap", "config.execution.strategy"),
    ("dropout_rate", 1.0, "config.dropout_rate"),
])
def test_validate_names_the_bad_field(field, value, match):
    c = config_lib.base_config()
    *parents, leaf = field.split(".")
    node = c
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ValueError, match=match.replace(".", r"\.")):
        config_lib.validate(c)


def test_member_indices_and_sources():
    assert config_lib.parse_member_indices("", 10) is None
    assert config_lib.parse_member_indices("2:5", 10) == [2, 3, 4]
    assert config_lib.parse_member_indices(":2", 10) == [0, 1]
    for bad in ("3", "a:b", "5:5", "1:2:3"):
        with pytest.raises(ValueError, match="member_indices"):
            config_lib.parse_member_indices(bad, 10)
    c = smoke.get_config()
    assert config_lib.source_spec(c, "random") == ("random", "caffe")
    assert config_lib.source_spec(c, "random_div255") == ("random", "caffe_div255")
    with pytest.raises(ValueError, match="config.sources.imagenet is empty"):
        config_lib.source_spec(c, "imagenet")
    with pytest.raises(KeyError, match="not in config.sources"):
        config_lib.source_spec(c, "mine")


def test_smoke_config_is_the_briefed_grid():
    c = smoke.get_config()
    config_lib.validate(c)
    members = program_members(c)
    assert len(members) == 4
    assert {(m.source, m.p_art) for _, m in members} == {
        ("random", 0.0), ("random", 1.0), ("random_div255", 0.0), ("random_div255", 1.0)}
    c.member_indices = "1:3"
    assert [i for i, _ in program_members(c)] == [1, 2]
    with pytest.raises(ValueError, match="unknown config argument"):
        smoke.get_config("epoch=3")


def test_identity_ignores_runtime_fields_only():
    a, b = config_lib.base_config(), config_lib.base_config()
    b.overwrite, b.execution.strategy, b.data_dir = True, "loop", "/elsewhere"
    assert config_lib.identity_json(a) == config_lib.identity_json(b)
    b.learning_rate = 1e-4
    assert config_lib.identity_json(a) != config_lib.identity_json(b)


def test_checkpoint_schedule_is_runtime_and_padding_is_identity():
    a, b = config_lib.base_config(), config_lib.base_config()
    assert (a.checkpoint_every_secs, a.checkpoint_every_epochs, a.keep_checkpoints) == (600.0, 0, 1)
    b.checkpoint_every_secs, b.checkpoint_every_epochs, b.keep_checkpoints = 0.0, 5, 3
    assert config_lib.identity_json(a) == config_lib.identity_json(b)
    b.pad_to_sweep = False
    assert config_lib.identity_json(a) != config_lib.identity_json(b)
    c = smoke.get_config()
    c.checkpoint_every_secs = -1.0
    with pytest.raises(ValueError, match="config.checkpoint_every_secs: must be >= 0"):
        config_lib.validate(c)


def test_claim_workdir_refuses_another_config_unless_overwrite(tmp_path):
    a = smoke.get_config()
    claim_workdir(a, tmp_path)
    claim_workdir(a, tmp_path)  # same config: fine (resume)
    (tmp_path / results.RESULTS_FILE).write_text("member_id,test_set\n")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    b = smoke.get_config()
    b.learning_rate = 1e-4
    with pytest.raises(ValueError, match="different config.*overwrite"):
        claim_workdir(b, tmp_path)
    assert (tmp_path / results.RESULTS_FILE).exists()
    b.overwrite = True
    claim_workdir(b, tmp_path)
    assert not (tmp_path / results.RESULTS_FILE).exists()
    assert not (tmp_path / "checkpoints").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"  # not ours: untouched
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["learning_rate"] == 1e-4


def test_pack_member_arrays_pads_with_masks():
    exp = make_experiment(num_images=80)
    mds = [exp.member_data(0.5, f, 1) for f in (1, 2, 3)]
    arrays = packing.pack_member_arrays(mds, batch_size=16, eval_batch_size=10)
    batch, steps = packing.train_layout(mds, 16)
    assert arrays.train.indices.shape == (3, batch * steps)
    for m, md in enumerate(mds):
        for split in ("train", "val", "test_iid", "test_ood", "test_clean"):
            ex, want = getattr(arrays, split), getattr(md, split)
            n = len(want.indices)
            assert ex.mask[m].sum() == n and ex.mask[m, :n].all()
            np.testing.assert_array_equal(ex.indices[m, :n], want.indices)
            np.testing.assert_array_equal(ex.confounded[m, :n], want.confounded)
            assert not ex.confounded[m, n:].any()
    assert arrays.val.indices.shape[1] % 10 == 0
    # A study batch larger than every training set becomes one full-set step per epoch.
    assert packing.train_layout(mds, 256) == (max(len(md.train.indices) for md in mds), 1)


def test_results_tables_and_completeness(tmp_path):
    rows = [{"member_index": 7, "member_id": "tag-random-p1-f1-s812", "experiment": "tag",
             "source": "random", "p_art": 1.0, "fold": 1, "seed": 812, "preprocessing": "caffe"}]
    labels = np.array([0, 1, 0, 1, 1])
    splits, probs = {}, {}
    for split in ("test_iid", "test_ood", "test_clean"):
        splits[split] = {"indices": np.array([[0, 1, 2, 3, 0]]), "mask": np.array([[1, 1, 1, 1, 0]], bool),
                         "confounded": np.zeros((1, 5), bool)}
        p1 = np.array([[0.1, 0.9, 0.2, 0.8, 0.99]], np.float32)
        probs[split] = np.stack([1 - p1, p1], axis=-1)
    program = {"dataset": "x", "image_size": 32, "model_stage_sizes": "1-1", "model_width": 4,
               "model_dtype": "float32"}
    table, preds = results.build_tables(rows, program, labels, [f"n{i}" for i in range(5)], splits,
                                        probs, np.array([3]), np.array([0.5]), np.array([4]),
                                        np.array([False]))
    assert list(table.columns) == list(results.COLUMNS)
    assert list(table["test_set"]) == ["iid", "ood", "clean"]
    assert (table["auc"] == 1.0).all() and (table["n_examples"] == 4).all()  # padding dropped
    assert (table["status"] == "ok").all() and len(preds) == 12
    path = results.write_atomic(table, tmp_path / results.RESULTS_FILE)
    assert results.is_complete(path, ["tag-random-p1-f1-s812"])
    assert not results.is_complete(path, ["tag-random-p1-f1-s812", "other"])
    pd.read_csv(path).iloc[:2].to_csv(path, index=False)
    assert not results.is_complete(path, ["tag-random-p1-f1-s812"])
    assert not list(pathlib.Path(tmp_path).glob(".*tmp*"))
    # A member stopped by a NaN keeps its best state's AUC, flagged; one without a best state: NaN.
    table, _ = results.build_tables(rows, program, labels, list("abcde"), splits, probs,
                                    np.array([0]), np.array([np.inf]), np.array([1]),
                                    np.array([True]))
    assert (table["status"] == "nonfinite_loss").all() and table["auc"].isna().all()


@pytest.mark.parametrize("change,match", [
    (lambda c: setattr(c.sweep, "source", ("random", "imagenet")), "config.sources.imagenet is empty"),
    (lambda c: setattr(c, "image_size", 48), "config.image_size is 48"),
])
def test_bad_input_leaves_the_workdir_untouched(tmp_path, change, match):
    from sourcematters_jax.train.loop import train_and_evaluate

    config = smoke.get_config()
    change(config)
    with pytest.raises(ValueError, match=match):
        train_and_evaluate(config, tmp_path / "work", data=make_experiment(num_images=80, size=32))
    assert not (tmp_path / "work").exists()
