"""AUCs against their references: sklearn's roc_auc_score and keras.metrics.AUC itself.

Tolerances: exact AUC to 1e-12 (the same rank statistic in float64); Keras AUC to 1e-6 (Keras
accumulates its confusion counts in float32).
"""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sourcematters_jax.train.metrics import keras_auc, keras_thresholds, roc_auc

keras = pytest.importorskip("keras")


def cases():
    rng = np.random.default_rng(0)
    for kind in ("continuous", "ties", "saturated"):
        y = (rng.random(83) < 31 / 83).astype(int)
        p = rng.random(83).astype(np.float32)
        if kind == "ties":
            p = np.round(p, 1).astype(np.float32)
        if kind == "saturated":
            p = np.where(rng.random(83) < 0.3, 1.0, p).astype(np.float32)
        yield kind, y, np.stack([1 - p, p], axis=1)


@pytest.mark.parametrize("kind,labels,probs", list(cases()))
def test_roc_auc_equals_sklearn(kind, labels, probs):
    assert roc_auc(labels, probs[:, 1]) == pytest.approx(roc_auc_score(labels, probs[:, 1]), abs=1e-12)


@pytest.mark.parametrize("kind,labels,probs", list(cases()))
def test_keras_auc_equals_keras_metric(kind, labels, probs):
    metric = keras.metrics.AUC()
    metric.update_state(np.eye(2)[labels], probs)
    assert keras_auc(labels, probs) == pytest.approx(float(metric.result()), abs=1e-6)


def test_constant_predictor_scores_the_papers_baseline():
    # PROTOCOL.md: a constant predictor scores 0.6265 on the 83-image test set (52 NO / 31 YES).
    labels = np.array([0] * 52 + [1] * 31)
    probs = np.tile([0.6, 0.4], (83, 1)).astype(np.float32)
    assert keras_auc(labels, probs) == pytest.approx(0.6265, abs=5e-5)
    assert roc_auc(labels, probs[:, 1]) == 0.5


def test_degenerate_inputs():
    assert np.isnan(roc_auc(np.ones(4), np.arange(4)))
    with pytest.raises(ValueError, match="shape"):
        roc_auc(np.ones(4), np.ones(5))
    with pytest.raises(ValueError, match=r"\[n, C\]"):
        keras_auc(np.ones(4, int), np.ones(4))
    t = keras_thresholds()
    assert t.shape == (200,) and t[0] < 0 and t[-1] > 1 and np.all(np.diff(t) > 0)
