"""`sourcematters pretrain` on a tiny folder dataset: killed after a checkpoint and resumed (same
weights as an uninterrupted run, compared exactly: same seeds, same compiled programs on CPU), its
backbone loads with `pretrained.load` and fine-tunes in the smoke config; plus its input pipeline
and the built-in source datasets."""

import logging
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from flax import traverse_util
from PIL import Image

from sourcematters_jax.configs import smoke
from fake_experiment import make_experiment
from sourcematters_jax.launch import config_io
from sourcematters_jax import pretrained
from sourcematters_jax.data import source_images
from sourcematters_jax.data.source_builders import SOURCE_BUILDERS
from sourcematters_jax.pretrain import data as data_lib
from sourcematters_jax.pretrain.train import BACKBONE_DIR, CHECKPOINT_DIR, pretrain, source_name

REPO = pathlib.Path(__file__).resolve().parents[1]
PRETRAIN = REPO / "configs" / "pretrain.py"
CLASSES = ("ankle", "brain", "lung")
# 10 images per class, 2 held out: 24 training images, batch 8 -> 3 steps/epoch, 4 epochs.
TOTAL_STEPS, CHECKPOINT_EVERY, KILL_AT_STEP = 12, 4, 6


def overrides(dataset):
    # The smoke config's ResNet (two stages of one block, width 4), at 16 px.
    return [f"--config.dataset={dataset}", "--config.image_size=16", "--config.model.stage_sizes=(1, 1)",
            "--config.model.width=4", "--config.batch_size=8", "--config.num_epochs=4",
            "--config.optimizer=adam", "--config.learning_rate=0.003", "--config.warmup_epochs=1",
            "--config.val_fraction=0.2", "--config.eval_batch_size=6", "--config.num_workers=2",
            f"--config.checkpoint_every_steps={CHECKPOINT_EVERY}", "--config.log_every_steps=3",
            "--config.source=tiny_folder"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """ROOT/<class>/*.png: grey and RGB images of mixed sizes, a class-dependent brightness."""
    root = tmp_path_factory.mktemp("folder_dataset") / "images"
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (root / name / "sub").mkdir(parents=True)
        for i in range(10):
            shape = (20 + i, 24) if i % 2 else (18, 18, 3)
            pixels = np.clip(rng.normal(60 + 70 * label, 30, shape), 0, 255).astype(np.uint8)
            where = root / name / ("sub" if i % 3 == 0 else "")
            Image.fromarray(pixels).save(where / f"{i:02d}.png")
    return root


def load(folder, *extra):
    return config_io.load_config(str(PRETRAIN), overrides(str(folder)) + list(extra))


KILLER = textwrap.dedent("""
    import os, signal, sys
    from clu import periodic_actions
    from sourcematters_jax.pretrain import cli

    kill_at = int(os.environ["KILL_AT_STEP"])
    report = periodic_actions.ReportProgress.__call__

    def report_then_kill(self, step, *args, **kwargs):
        out = report(self, step, *args, **kwargs)
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    periodic_actions.ReportProgress.__call__ = report_then_kill
    sys.exit(cli.main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def uninterrupted(folder, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pretrain") / "uninterrupted"
    return pretrain(load(folder), workdir)


def test_killed_run_resumes_to_the_uninterrupted_weights(folder, uninterrupted, tmp_path, caplog):
    workdir = tmp_path / "killed"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    proc = subprocess.run(
        [sys.executable, str(script), f"--config={PRETRAIN}", f"--workdir={workdir}",
         *overrides(str(folder))],
        cwd=REPO, env={**os.environ, "KILL_AT_STEP": str(KILL_AT_STEP)},
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (workdir / BACKBONE_DIR).exists()
    assert sorted(p.name for p in (workdir / CHECKPOINT_DIR).iterdir() if p.name.isdigit()) == ["4"]

    with caplog.at_level(logging.INFO):
        backbone = pretrain(load(folder), workdir)
    assert f"resumed from step {CHECKPOINT_EVERY}" in caplog.text
    got, meta = pretrained.load(backbone)
    want, want_meta = pretrained.load(uninterrupted)
    g, w = traverse_util.flatten_dict(got), traverse_util.flatten_dict(want)
    assert g.keys() == w.keys()
    for key in w:
        np.testing.assert_array_equal(g[key], w[key], err_msg=str(key))
    assert meta["pretraining"] == want_meta["pretraining"]

    caplog.clear()
    with caplog.at_level(logging.INFO):  # finished: returns at once
        assert pretrain(load(folder), workdir) == backbone
    assert "finished; nothing to do" in caplog.text


def test_backbone_has_the_converted_format_and_fine_tunes(folder, uninterrupted, tmp_path):
    variables, meta = pretrained.load(uninterrupted)  # strict: shapes of the recorded architecture
    assert pretrained.read_metadata(uninterrupted)["format"] == pretrained.FORMAT
    assert meta["source"] == "tiny_folder" and meta["preprocessing"] == "caffe"
    assert meta["architecture"] == {"family": "keras_resnet_v1", "stage_sizes": [1, 1], "width": 4}
    assert meta["dataset"]["kind"] == "folder" and meta["dataset"]["classes"] == list(CLASSES)
    assert meta["dataset"]["train_examples"] == 24 and meta["dataset"]["eval_examples"] == 6
    assert meta["pretraining"]["steps"] == TOTAL_STEPS
    assert 0 <= meta["pretraining"]["eval_accuracy"] <= 1
    assert np.isfinite(meta["pretraining"]["final_train_loss"])
    assert set(variables) == {"params", "batch_stats"} and "conv1_conv" in variables["params"]

    from sourcematters_jax.train.loop import train_and_evaluate

    # The smoke config on the trainer tests' in-memory 32 px pool (no dataset build).
    config = smoke.get_config(f"strategy=vmap,epochs=1,pretrained={uninterrupted}")
    results = pd.read_csv(train_and_evaluate(config, tmp_path / "finetune",
                                             data=make_experiment(num_images=80, size=32)))
    assert set(results["source"]) == {"random", "imagenet"} and (results["status"] == "ok").all()
    assert set(results.loc[results["source"] == "imagenet", "preprocessing"]) == {"caffe"}


def test_another_config_in_the_workdir_is_refused(folder, uninterrupted):
    with pytest.raises(ValueError, match="another config"):
        pretrain(load(folder, "--config.seed=1"), uninterrupted.parent)


def test_train_stream_resumes_at_any_step_and_shards_by_process():
    records = [(np.full((4, 4), i, np.uint8), i % 3) for i in range(10)]
    data = data_lib.ClassificationData("list", "folder", records, None, ("a", "b", "c"),
                                       decode=lambda r: r)
    # 4 px images: below what a pretraining run accepts (16), fine for the stream alone.
    config = config_io.load_config(str(PRETRAIN), ["--config.image_size=4", "--config.batch_size=4",
                                                   "--config.num_workers=0"], check=lambda c: None)
    full = list(data_lib.train_batches(data, config, start_step=0, total_steps=7,
                                       process_index=0, process_count=1))
    late = list(data_lib.train_batches(data, config, start_step=5, total_steps=7,
                                       process_index=0, process_count=1))
    assert len(full) == 7 and len(late) == 2
    for a, b in zip(full[5:], late):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    # every epoch (of 10, 2 full batches) sees each example once before the next epoch starts
    seen = np.concatenate([b["image"][:, 2, 2, 0] for b in full[:2]])
    assert len(set(seen.tolist())) == 8
    halves = [next(data_lib.train_batches(data, config, start_step=0, total_steps=1,
                                          process_index=p, process_count=2)) for p in (0, 1)]
    assert all(len(h["label"]) == 2 for h in halves)


def test_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "one" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="at least 2 class subfolders"):
        data_lib.scan_folder(tmp_path / "one")
    (tmp_path / "one" / "b").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "one" / "a" / "x.png")
    with pytest.raises(ValueError, match="b: class folder holds no images"):
        data_lib.scan_folder(tmp_path / "one")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        data_lib.scan_folder(tmp_path / "missing")
    (tmp_path / "one" / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png: cannot read image"):
        data_lib._read_image(str(tmp_path / "one" / "b" / "broken.png"))


def test_model_images_are_rgb_at_the_model_size():
    grey = np.arange(30, dtype=np.uint8).reshape(5, 6)
    out = data_lib.to_model_image(grey, 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 2]).all()
    same = data_lib.to_model_image(np.dstack([grey[:5, :5]] * 3), 5)
    np.testing.assert_array_equal(same[..., 1], grey[:5, :5])
    with pytest.raises(ValueError, match="shape"):
        data_lib.to_model_image(np.zeros((4, 4, 2), np.uint8), 4)


def test_source_names():
    config = config_io.load_config(f"{PRETRAIN}:dataset=synthetic_radiology")
    assert source_name(config) == "radiology"
    config = config_io.load_config(str(PRETRAIN), ["--config.dataset=/data/RadImageNet-v2/"])
    assert source_name(config) == "radimagenet_v2"
    config = config_io.load_config(str(PRETRAIN), ["--config.source=random"])
    with pytest.raises(ValueError, match="config.source"):
        source_name(config)


@pytest.mark.parametrize("dataset", sorted(SOURCE_BUILDERS))
def test_source_builders_are_seeded_classification_sets(dataset, tmp_path):
    cls = SOURCE_BUILDERS[dataset]
    config = cls.config(16, train_per_class=2, test_per_class=1)
    builder = cls(config=config, data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    sources = builder.as_data_source()
    classes = builder.info.features["label"].names
    assert tuple(classes) == cls.CLASSES and len(classes) >= 6
    assert len(sources["train"]) == 2 * len(classes) and len(sources["test"]) == len(classes)
    example = sources["train"][0]
    assert example["image"].shape == ((16, 16, 3) if dataset == "synthetic_natural" else (16, 16))
    draw = source_images.draw_natural if dataset == "synthetic_natural" else source_images.draw_radiology
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    np.testing.assert_array_equal(draw(1, 32, rng()), draw(1, 32, rng()))
    images = [draw(k, 32, rng()).astype(float) for k in range(len(classes))]
    assert all(im.std() > 5 for im in images), "a class draws a flat image"
