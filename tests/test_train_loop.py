"""End to end on the built-in synthetic chest X-rays: configs/smoke.py, 4 members on 2 devices.

One uninterrupted program (module fixture) is checked for its outputs, the science, summaries
and export; a second copy of the same command is SIGKILLed in the middle of epoch 3 in a
subprocess and resumed here, and must give identical results (same seeds, same compiled programs
on CPU: compared exactly). The smoke's second source is a converted checkpoint of the tiny
ResNet written with `pretrained.save`, whose metadata asks for preprocessing 'none'.
"""

import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from sourcematters_jax.configs import smoke
from sourcematters_jax import pretrained
from sourcematters_jax.data import load_experiment
from sourcematters_jax.models import ResNet
from sourcematters_jax.train import checkpoints, state as st
from sourcematters_jax.train.loop import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.py"
EPOCHS = 20
STEPS_PER_EPOCH = 7  # ceil(217 / 32): synthetic_cxr fold 1
KILL_AT_STEP = 2 * STEPS_PER_EPOCH + 3  # mid-epoch 3, after the epoch-2 checkpoint


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_loop")
    module = ResNet(stage_sizes=(1, 1), width=4)
    variables = jax.device_get(module.init(jax.random.key(123), jnp.zeros((1, 32, 32, 3))))
    meta = {"source": "test-tiny", "preprocessing": "none",
            "architecture": pretrained.architecture_of(module)}
    ckpt = pretrained.save(root / "tiny_pretrained", variables, meta)
    variables["params"]["conv1_conv"]["kernel"] = np.full_like(
        variables["params"]["conv1_conv"]["kernel"], np.nan)
    broken = pretrained.save(root / "nan_pretrained", variables, meta)
    return {"root": root, "tfds": root / "tfds", "pretrained": ckpt, "nan_pretrained": broken}


def smoke_arg(dirs):
    return f"strategy=vmap,epochs={EPOCHS},pretrained={dirs['pretrained']}"


def make_config(dirs):
    config = smoke.get_config(smoke_arg(dirs))
    config.data_dir = str(dirs["tfds"])
    config.checkpoint_every_epochs = 1  # a runtime field: the killed copy below uses it too
    return config


@pytest.fixture(scope="module")
def uninterrupted(dirs):
    workdir = dirs["root"] / "uninterrupted"
    path = train_and_evaluate(make_config(dirs), workdir)
    return {"workdir": workdir, "results": pd.read_csv(path),
            "predictions": pd.read_csv(workdir / "predictions.csv")}


def test_results_hold_every_member_and_test_set(uninterrupted):
    table = uninterrupted["results"]
    assert len(table) == 12
    assert {"member_index", "member_id", "experiment", "source", "p_art", "fold", "seed",
            "test_set", "auc", "auc_keras", "status"} <= set(table.columns)
    assert sorted(table["member_index"].unique()) == [0, 1, 2, 3]
    assert set(zip(table["source"], table["p_art"])) == {
        ("random", 0.0), ("random", 1.0), ("imagenet", 0.0), ("imagenet", 1.0)}
    assert all(sorted(g) == ["clean", "iid", "ood"] for _, g in table.groupby("member_id")["test_set"])
    assert (table["status"] == "ok").all()
    assert table["auc"].between(0, 1).all() and table["auc_keras"].between(0, 1).all()
    # Every test example once: the study's 83-image test set (31 positives), no padding.
    assert (table["n_examples"] == 83).all() and (table["n_positive"] == 31).all()
    assert (table["epochs_trained"] == EPOCHS).all() and table["best_epoch"].between(1, EPOCHS).all()
    # Preprocessing per source: random -> caffe, the checkpoint's metadata -> none.
    assert dict(zip(table["source"], table["preprocessing"])) == {"random": "caffe", "imagenet": "none"}
    preds = uninterrupted["predictions"]
    assert len(preds) == 4 * 3 * 83
    ood = preds[preds["test_set"] == "ood"]
    assert (ood["confounded"] == (ood["label"] == 0)).all()


def test_members_are_split_over_both_devices(uninterrupted):
    program = json.loads((uninterrupted["workdir"] / "program.json").read_text())
    assert program["strategy"] == "vmap" and program["devices"] == [0, 1]
    assert sorted(program["member_devices"].values()) == [0, 0, 1, 1]
    assert program["steps_per_epoch"] == STEPS_PER_EPOCH


def test_science_the_tag_is_a_shortcut_only_when_trained_on(uninterrupted):
    auc = uninterrupted["results"].pivot_table(index=["source", "p_art"], columns="test_set",
                                               values="auc")
    # Trained with the tag on every positive, members rank tagged negatives above untagged
    # positives (o.o.d. far below i.i.d.); never shown the tag, they have not learned it as a
    # sign of disease, so o.o.d. does not drop below i.i.d. At 32 px the tiny model barely
    # learns the disease itself (p_art=0 AUCs 0.4-0.6), so an unseen bright letter can move its
    # near-chance scores either way: o.o.d. has landed 0.32 *above* i.i.d. for the checkpoint
    # source. The shortcut is a drop, so "close" is checked as "no drop beyond 0.25" here.
    for source in ("random", "imagenet"):
        shortcut, clean = auc.loc[(source, 1.0)], auc.loc[(source, 0.0)]
        gap_shortcut, gap_clean = shortcut["iid"] - shortcut["ood"], clean["iid"] - clean["ood"]
        assert shortcut["iid"] > 0.75 and gap_shortcut > 0.4, auc
        assert gap_clean < 0.25 and gap_shortcut > gap_clean + 0.4, auc


def test_tensorboard_streams_per_member(uninterrupted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = uninterrupted["workdir"] / "tensorboard"
    for member_id in uninterrupted["results"]["member_id"].unique():
        events = EventAccumulator(str(root / member_id), size_guidance={"tensors": 0})
        events.Reload()
        tags = set(events.Tags()["tensors"])
        assert {"train_loss", "val_loss", "best_val_loss", "auc_ood", "auc_keras_iid"} <= tags
        assert [e.step for e in events.Tensors("val_loss")] == list(range(1, EPOCHS + 1))
    assert (root / "program").is_dir()


def test_finished_workdir_returns_at_once(dirs, uninterrupted):
    path = uninterrupted["workdir"] / "results.csv"
    before = path.stat().st_mtime_ns
    assert train_and_evaluate(make_config(dirs), uninterrupted["workdir"]) == path
    assert path.stat().st_mtime_ns == before


def test_workdir_of_another_config_is_refused(dirs, uninterrupted):
    config = make_config(dirs)
    config.learning_rate = 1e-4
    with pytest.raises(ValueError, match="different config"):
        train_and_evaluate(config, uninterrupted["workdir"])


def test_best_member_exports_and_reloads_for_evaluation(dirs, uninterrupted, tmp_path):
    member_id = "tag-imagenet-p1-f1-s812"
    out = checkpoints.export_member(uninterrupted["workdir"], member_id, tmp_path / "export")
    variables, meta = checkpoints.read_exported(out)
    assert meta["member"]["member_id"] == member_id and meta["preprocessing"] == "none"
    with pytest.raises(FileExistsError):
        checkpoints.export_member(uninterrupted["workdir"], member_id, out)
    with pytest.raises(KeyError, match="not in this program"):
        checkpoints.load_member(uninterrupted["workdir"], "tag-random-p0.5-f1-s812")
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        checkpoints.load_member(tmp_path / "nowhere", member_id)
    assert not (tmp_path / "nowhere").exists()
    preds = uninterrupted["predictions"]
    rows = preds[(preds["member_id"] == member_id) & (preds["test_set"] == "ood")]
    pool = load_experiment("tag", dataset="synthetic_cxr", data_dir=dirs["tfds"], image_size=32).pool
    images = pool.images[rows["pool_index"].to_numpy(), rows["confounded"].to_numpy().astype(int)]
    model = st.build_model(meta["model"], 0.5)
    mean, scale = st.preprocessing_constants(meta["preprocessing"])
    logits = jax.jit(model.apply)(variables, st.normalize(jnp.asarray(images, jnp.float32), mean, scale))
    np.testing.assert_allclose(jax.nn.softmax(logits)[:, 1], rows["prob_positive"], rtol=1e-5, atol=1e-6)


def test_nonfinite_source_stops_its_members_only(dirs, uninterrupted):
    # Same shapes and settings as the smoke program (so its compiled programs are reused), but
    # the second source's weights are NaN: its members must stop at once, the others train.
    config = smoke.get_config(f"strategy=vmap,epochs=2,pretrained={dirs['nan_pretrained']}")
    config.data_dir, config.patience = str(dirs["tfds"]), EPOCHS
    table = pd.read_csv(train_and_evaluate(config, dirs["root"] / "nan"))
    broken, fine = table[table["source"] == "imagenet"], table[table["source"] == "random"]
    assert (broken["status"] == "nonfinite_loss").all() and broken["auc"].isna().all()
    assert (broken["epochs_trained"] == 0).all() and (broken["best_epoch"] == 0).all()
    assert (fine["status"] == "ok").all() and (fine["epochs_trained"] == 2).all()
    assert fine["auc"].notna().all()


KILLER = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    from sourcematters_jax import main  # sets XLA_FLAGS before JAX loads
    from sourcematters_jax.train import summaries
    from absl import app

    kill_at = int(os.environ["KILL_AT_STEP"])
    committed = pathlib.Path(os.environ["WAIT_FOR_CHECKPOINT"])
    step = summaries.Summaries.step

    def step_then_kill(self, n):
        step(self, n)
        if n == kill_at:
            # Checkpoints are written in the background while training goes on: wait until
            # the epoch-2 one is committed (renamed into place), then die mid-epoch 3.
            deadline = time.time() + 300
            while not committed.is_dir() and time.time() < deadline:
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)

    summaries.Summaries.step = step_then_kill
    app.run(main.main)
""")


def test_kill_and_resume_gives_identical_results(dirs, uninterrupted, tmp_path, caplog):
    workdir = dirs["root"] / "killed"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    proc = subprocess.run(
        [sys.executable, str(script), f"--config={SMOKE}:{smoke_arg(dirs)}",
         f"--workdir={workdir}", f"--config.data_dir={dirs['tfds']}",
         "--config.checkpoint_every_epochs=1"],
        cwd=REPO, env={**os.environ, "KILL_AT_STEP": str(KILL_AT_STEP),
                       "WAIT_FOR_CHECKPOINT": str(workdir / "checkpoints" / "2"),
                       "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache")},
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (workdir / "results.csv").exists()
    ckpt = checkpoints.ProgramCheckpoints(workdir)
    assert ckpt.latest_epoch() == 2
    ckpt.close()

    with caplog.at_level(logging.INFO):
        path = train_and_evaluate(make_config(dirs), workdir)
    assert "resumed from epoch 2" in caplog.text
    resumed = pd.read_csv(path)
    pd.testing.assert_frame_equal(resumed, uninterrupted["results"], check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(workdir / "predictions.csv"),
                                  uninterrupted["predictions"], check_exact=True)


def test_cli_rejects_a_config_key_that_does_not_exist(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sourcematters_jax.main", f"--config={SMOKE}",
         f"--workdir={tmp_path}", "--config.batchsize=4"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "batchsize" in proc.stderr
    assert not (tmp_path / "config.json").exists()
