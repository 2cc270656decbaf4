"""Issue 16 in the trainer: cross-confounder o.o.d. rows in results.csv, val AUC in the summaries,
and the xray_noise p = 0 members' training batches drawn from the clean images.

One 2-member, 2-epoch program of the smoke model (32 px synthetic tag data) with
extra_ood=('denoising', 'xray_noise').
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from sourcematters_jax.configs import smoke
from sourcematters_jax.data import load_experiment
from sourcematters_jax.train import checkpoints, metrics, packing, state as st, step
from sourcematters_jax.train.loop import train_and_evaluate

EPOCHS = 2
TEST_SETS = ["iid", "ood", "clean", "ood_denoising", "ood_xray_noise"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_fidelity")
    config = smoke.get_config(f"strategy=vmap,epochs={EPOCHS}")
    config.data_dir = str(root / "tfds")
    config.sweep.source = ("random",)
    with config.data_options.unlocked():
        config.data_options.extra_ood = ("denoising", "xray_noise")
    workdir = root / "work"
    path = train_and_evaluate(config, workdir)
    return {"config": config, "workdir": workdir, "results": pd.read_csv(path),
            "predictions": pd.read_csv(workdir / "predictions.csv")}


def test_results_gain_cross_confounder_ood_rows(run):
    results, preds = run["results"], run["predictions"]
    for _, rows in results.groupby("member_id"):
        assert rows["test_set"].tolist() == TEST_SETS
        assert (rows["n_examples"] == 83).all() and (rows["status"] == "ok").all()
    for (member, test_set), p in preds.groupby(["member_id", "test_set"]):
        row = results[(results.member_id == member) & (results.test_set == test_set)].iloc[0]
        assert row["auc"] == pytest.approx(metrics.roc_auc(p["label"], p["prob_positive"]))
        if test_set.startswith("ood"):  # the confounder on every negative and on no positive
            np.testing.assert_array_equal(p["confounded"], p["label"] == 0)
    # the extra tests are other images than the member's own o.o.d. test (other variants)
    a = preds[(preds.test_set == "ood")].groupby("member_id")["prob_positive"].apply(np.asarray)
    b = preds[(preds.test_set == "ood_denoising")].groupby("member_id")["prob_positive"].apply(np.asarray)
    assert all(not np.allclose(a[m], b[m]) for m in a.index)


def _scalars(events, tag):
    from tensorboard.util import tensor_util

    return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}


def test_summaries_carry_val_auc_per_epoch(run):
    """Every epoch's val AUCs are written; at the best epoch they are the best weights' AUCs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = load_experiment("tag", dataset="synthetic_cxr", data_dir=run["config"].data_dir, image_size=32)
    for member_id, rows in run["results"].groupby("member_id"):
        events = EventAccumulator(str(run["workdir"] / "tensorboard" / member_id),
                                  size_guidance={"tensors": 0})
        events.Reload()
        auc, keras = _scalars(events, "val_auc"), _scalars(events, "val_auc_keras")
        assert sorted(auc) == sorted(keras) == list(range(1, EPOCHS + 1))
        assert {"auc_ood_denoising", "auc_keras_ood_xray_noise"} <= set(events.Tags()["tensors"])
        variables, meta = checkpoints.load_member(run["workdir"], member_id)
        val = data.member_data(float(rows["p_art"].iloc[0]), 1, 812).val
        images = data.pool.images[val.indices, val.confounded.astype(int)]
        model = st.build_model(meta["model"], 0.5)
        mean, scale = st.preprocessing_constants(meta["preprocessing"])
        logits = jax.jit(model.apply)(variables, st.normalize(jnp.asarray(images, jnp.float32), mean, scale))
        probs = np.asarray(jax.nn.softmax(logits))
        labels = data.pool.labels[val.indices]
        best = meta["best_epoch"]
        assert auc[best] == pytest.approx(metrics.roc_auc(labels, probs[:, 1]), abs=1e-6)
        assert keras[best] == pytest.approx(metrics.keras_auc(labels, probs), abs=1e-5)


def test_xray_noise_p0_training_batches_are_clean_images(run):
    kwargs = dict(dataset="synthetic_cxr", data_dir=run["config"].data_dir, image_size=32)
    noise = load_experiment("xray_noise", **kwargs)
    clean = load_experiment("tag", **kwargs).pool.images[:, 0]
    members = [noise.member_data(p, 1, 812) for p in (0.0, 0.5)]
    arrays = packing.pack_member_arrays(members, batch_size=32, eval_batch_size=96)
    pool = step.DevicePool(images=noise.pool.images, labels=noise.pool.labels)
    n = noise.membership.shape[0]
    for m, expect_clean in ((0, True), (1, False)):
        train = step.Examples(*(np.asarray(getattr(arrays.train, f)[m])
                                for f in ("indices", "confounded", "mask")))
        images, _ = step.gather(pool, train)
        idx = train.indices[train.mask] % n
        got = np.asarray(images)[train.mask]
        assert np.array_equal(got, clean[idx]) == expect_clean
        if not expect_clean:
            base = ~train.confounded[train.mask]
            np.testing.assert_array_equal(got[base], noise.pool.images[idx[base], 0])
