"""Reusing finished members: `sourcematters evaluate | saliency | features` on a tiny trained sweep.

One module fixture trains a 2-member sweep (tag, p_art 0 and 1, 32 px synthetic X-rays, one
ResNet stage of width 4, 2 epochs) as `sourcematters sweep` does; every test reuses it.
"""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from sourcematters_jax.launch import config_io, local, plan as plan_lib
from sourcematters_jax import cli
from sourcematters_jax.data import confounders
from sourcematters_jax.models import ResNet
from sourcematters_jax.models.classifier import Classifier
from sourcematters_jax.reuse import members as members_lib, saliency
from sourcematters_jax.reuse.runner import MemberWeights
from sourcematters_jax.train import state as state_lib

TINY = """
from sourcematters_jax.configs import demo

def get_config(arg=None):
    config = demo.get_config(arg)
    config.image_size = 32
    config.model.stage_sizes = (1,)
    config.model.width = 4
    config.num_epochs = 2
    config.patience = 2
    with config.data_options.unlocked():
        config.data_options.full_size = 64
    return config
"""
P0, P1 = "tag-random-p0-f1-s1", "tag-random-p1-f1-s1"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reuse")
    config = tmp / "tiny.py"
    config.write_text(TINY)
    root, tfds = tmp / "sweep", tmp / "tfds"
    spec, overrides = f"{config}:p_art=0+1,seed=1,source=random", [f"--config.data_dir={tfds}"]
    # What `sourcematters sweep` / the demo do, without their report: plan, manifest, train.
    plan = plan_lib.make_plan(root, config_io.load_config(spec, overrides), 2, config_spec=spec,
                              overrides=overrides)
    plan_lib.write_manifest(plan)
    local.run_in_process(plan, plan.pending())
    results = plan_lib.collect_results(plan)
    return {"tmp": tmp, "root": root, "tfds": tfds, "config": spec,
            "results": pd.read_csv(results)}


def run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_evaluate_on_the_training_config_reproduces_the_trainers_aucs(sweep, capsys):
    out = sweep["tmp"] / "eval_same"
    status, text, _ = run(capsys, "evaluate", "--workdir", sweep["root"], "--config", sweep["config"],
                          f"--config.data_dir={sweep['tfds']}", "--out", out)
    assert status == 0, text
    table = pd.read_csv(out / "results.csv")
    assert {"trained_on", "evaluated_on"} <= set(table.columns)
    assert set(table["trained_on"]) == set(table["evaluated_on"]) == {"tag/synthetic_cxr"}
    merged = sweep["results"].merge(table, on=["member_id", "test_set"])
    assert len(merged) == len(sweep["results"]) == 6
    np.testing.assert_allclose(merged["auc_x"], merged["auc_y"], atol=1e-6)
    np.testing.assert_allclose(merged["auc_keras_x"], merged["auc_keras_y"], atol=1e-6)
    assert (pd.read_csv(out / "predictions.csv")["evaluated_on"] == "tag/synthetic_cxr").all()


def test_evaluate_on_another_confounder_and_the_report_shows_it(sweep, capsys):
    out = sweep["root"] / "cross_denoising"
    status, text, _ = run(capsys, "evaluate", "--workdir", sweep["root"], "--member", P1,
                          "--config", sweep["config"], f"--config.data_dir={sweep['tfds']}",
                          "--config.experiment=denoising", "--config.sweep.experiment=denoising",
                          "--out", out)
    assert status == 0, text
    table = pd.read_csv(out / "results.csv")
    assert list(table["member_id"].unique()) == [P1] and len(table) == 3
    assert set(table["evaluated_on"]) == {"denoising/synthetic_cxr"}
    assert table["experiment"].eq("tag").all()  # the member's own fields stay as trained
    report_dir = sweep["tmp"] / "report"
    status, _, err = run(capsys, "report", "--workdir", sweep["root"], "--workdir", out,
                         "--out", report_dir)
    assert status == 0, err
    page = (report_dir / "report.md").read_text()
    assert "## Cross-evaluation" in page and "denoising/synthetic_cxr o.o.d." in page
    assert "6 rows; 6 with status 'ok' from 2 members" in page  # no cross row in the statistics
    cross = pd.read_csv(report_dir / "cross_evaluation.csv")
    assert set(cross["evaluated_on"]) == {"denoising/synthetic_cxr"} and (cross["n"] == 1).all()


def test_saliency_writes_the_grid_and_scores(sweep, capsys):
    out = sweep["tmp"] / "saliency_ig"
    status, text, err = run(capsys, "saliency", "--workdir", sweep["root"], "--images", 2,
                            "--method", "integrated_gradients", "--steps", 8, "--out", out)
    assert status == 0, err
    for name in ("saliency_grid.png", "saliency_grid.pdf", "scores.csv", "summary.csv", "maps.npz",
                 f"scores/{P0}.csv", f"scores/{P1}.csv"):
        assert (out / name).is_file(), name
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 2 * 2 * 2  # members x images x variants
    assert scores["inside_fraction"].between(0, 1).all() and (scores["region"] == "tag_box").all()
    maps = np.load(out / "maps.npz")
    assert maps["maps"].shape == (2, 2, 2, 32, 32) and (maps["maps"] >= 0).all()
    region = saliency.tag_region(members_lib.load(sweep["root"], [P0])[0].program_config(), 32)
    assert np.isclose(scores["area_fraction"].iloc[0], region.mean())
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["member_id"]) == [P0, P1] and summary["inside_confounded"].notna().all()


def test_gradcam_on_a_program_workdir_needs_its_data_dir(sweep, capsys):
    program = sweep["root"] / "program_000"
    out = sweep["tmp"] / "saliency_gc"
    status, _, err = run(capsys, "saliency", "--workdir", program, "--member", P1, "--images", 1,
                         "--method", "gradcam", "--data_dir", sweep["tfds"], "--out", out)
    assert status == 0, err
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores["variant"]) == ["clean", "confounded"]
    assert scores["change_vs_clean"].between(0, 1).all()


def test_saliency_of_a_global_confounder_scores_the_change(sweep, capsys):
    out = sweep["tmp"] / "saliency_denoising"
    status, _, err = run(capsys, "saliency", "--workdir", sweep["root"], "--member", P1,
                         "--images", 1, "--config", sweep["config"],
                         f"--config.data_dir={sweep['tfds']}", "--config.experiment=denoising",
                         "--config.sweep.experiment=denoising", "--out", out)
    assert status == 0, err
    summary = pd.read_csv(out / "summary.csv")
    assert summary["region"].tolist() == ["none"] and summary["inside_confounded"].isna().all()
    assert summary["change_vs_clean"].between(0, 1).all()


def test_features_have_the_backbone_width_and_feed_the_head(sweep, capsys):
    out = sweep["tmp"] / "features"
    status, _, err = run(capsys, "features", "--workdir", sweep["root"], "--member", P0,
                         "--out", out)
    assert status == 0, err
    feats = np.load(out / P0 / "features.npy")
    index = pd.read_csv(out / P0 / "index.csv")
    assert feats.shape == (len(index), 16) and feats.dtype == np.float32  # 4 * width 4 * 2**0
    assert set(index["split"]) == {"train", "val", "test_iid", "test_ood", "test_clean"}
    # The head on the features gives the trainer's test probabilities.
    (lm,) = members_lib.load(sweep["root"], [P0])
    head = lm.variables["params"]["head"]
    logits = feats @ head["kernel"] + head["bias"]
    prob = jax.nn.softmax(logits)[:, 1]
    preds = pd.read_csv(sweep["root"] / "program_000" / "predictions.csv")
    preds = preds[(preds["member_id"] == P0) & (preds["test_set"] == "clean")]
    clean = index["split"] == "test_clean"
    np.testing.assert_array_equal(index.loc[clean, "pool_index"], preds["pool_index"])
    np.testing.assert_allclose(np.asarray(prob)[clean.to_numpy()], preds["prob_positive"],
                               atol=1e-5)
    assert pd.read_csv(out / "members.csv")["dim"].tolist() == [16]


@pytest.mark.parametrize("case", ["unknown_member", "unfinished", "image_size", "model", "not_a_workdir"])
def test_bad_input_is_named_and_nothing_is_written(sweep, capsys, case):
    workdir, extra = sweep["root"], []
    if case == "unknown_member":
        extra, expect = ["--member", "tag-random-p0.3-f1-s1"], "unknown member(s) ['tag-random-p0.3-f1-s1']"
    elif case == "unfinished":
        workdir = sweep["tmp"] / "unfinished"
        if not workdir.exists():
            shutil.copytree(sweep["root"] / "program_000", workdir)
            (workdir / "results.csv").unlink()
        expect = f"not finished (no complete results.csv): ['{workdir}']"
    elif case == "image_size":
        extra, expect = ["--config.image_size=64"], f"{P0}: image_size 32 (config.image_size 64)"
    elif case == "model":
        extra, expect = ["--config.model.width=8"], f"{P0}: model {{'stage_sizes': [1], 'width': 4}}"
    else:
        workdir, expect = sweep["tmp"], "neither a sweep root"
    for command in ("evaluate", "saliency", "features"):
        out = sweep["tmp"] / f"bad_{case}_{command}"
        status, _, err = run(capsys, command, "--workdir", workdir, *extra, "--config",
                             sweep["config"], f"--config.data_dir={sweep['tfds']}", "--out", out)
        assert status == 2 and expect in err, (command, err)
        assert not out.exists()


def test_tag_box_holds_every_tag_pixel():
    for size, scale in ((1024, 1.0), (256, 3.0), (256, 1.0), (64, 3.0)):
        tagged = confounders.add_tag(np.zeros((size, size), np.uint8), scale=scale)
        ys, xs = np.nonzero(tagged)
        left, top, right, bottom = confounders.tag_box((size, size), scale=scale)
        assert left <= xs.min() and xs.max() < right and top <= ys.min() and ys.max() < bottom
        assert (right - left) * (bottom - top) < 2 * (np.ptp(xs) + 1) * (np.ptp(ys) + 1)


def test_tag_region_covers_the_pools_tag(sweep):
    (lm,) = members_lib.load(sweep["root"], [P1])
    config = lm.program_config(data_dir=sweep["tfds"])
    from sourcematters_jax.train.inputs import load_data

    images = load_data(config).pool.images.astype(int)
    changed = (images[:, 1] != images[:, 0]).any(axis=0)
    region = saliency.tag_region(config, 32)
    assert changed.any() and not (changed & ~region).any()
    assert region.mean() < 0.1


def tiny_weights(seed=0, size=16):
    model = Classifier(backbone=ResNet(stage_sizes=(1,), width=4), dropout_rate=0.5)
    variables = model.init(jax.random.key(seed), jnp.zeros((1, size, size, 3)), train=False)
    mean, scale = state_lib.preprocessing_constants("caffe")
    w = MemberWeights(params=variables["params"], batch_stats=variables["batch_stats"],
                      pixel_mean=jnp.asarray(mean), pixel_scale=jnp.float32(scale))
    images = jax.random.uniform(jax.random.key(seed + 1), (3, size, size), maxval=255.0)
    return model, w, images


def test_gradcam_reads_the_classifiers_own_score():
    model, w, images = tiny_weights()

    @jax.jit
    def check(w, images):
        acts = saliency.last_stage(model, w, state_lib.normalize(images, w.pixel_mean,
                                                                 w.pixel_scale))
        from_stage = saliency.head_score(model, w.params, jnp.mean(acts, axis=(1, 2)))
        return acts, from_stage, saliency.classifier_score(model, w, images), *saliency.gradcam(
            model, w, images)

    acts, from_stage, direct, maps, score = check(w, images)
    assert acts.shape == (3, 4, 4, 16)  # 16 px: the stem halves twice; 4 * width 4 channels
    np.testing.assert_allclose(from_stage, direct, rtol=1e-5, atol=1e-5)
    assert maps.shape == images.shape and (maps >= 0).all() and (maps > 0).any()
    np.testing.assert_allclose(score, direct, atol=1e-5)


def test_integrated_gradients_are_complete():
    model, w, images = tiny_weights()
    attr, s_x, s_black = jax.jit(lambda w, im: saliency.integrated_gradients(
        model, w, im, steps=128))(w, images)
    total, expected = np.asarray(attr.sum(axis=(1, 2))), np.asarray(s_x - s_black)
    # Completeness (Sundararajan et al.): the attributions sum to s(x) - s(black). The midpoint
    # rule on this piecewise-linear (ReLU) model at 128 steps is within 2% of the largest
    # difference (measured: 0.2%); a wrong baseline or a missing x * gradient is far off.
    np.testing.assert_allclose(total, expected, atol=0.02 * np.abs(expected).max())
    assert np.abs(expected).max() > 0.1
