"""The per-epoch validation AUCs on device equal the host metrics (sklearn-checked) on masked splits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sourcematters_jax.train import device_metrics, metrics


@pytest.mark.parametrize("seed", range(4))
def test_masked_aucs_equal_the_host_aucs(seed):
    rng = np.random.default_rng(seed)
    n = 48
    labels = rng.integers(0, 2, n).astype(np.int32)
    p1 = np.round(rng.random(n), 1 + seed % 2).astype(np.float32)  # rounded: many ties
    probs = np.stack([1 - p1, p1], axis=1)
    mask = rng.random(n) < 0.7
    exact = jax.jit(device_metrics.masked_roc_auc)(jnp.asarray(p1), jnp.asarray(labels), jnp.asarray(mask))
    keras = jax.jit(device_metrics.masked_keras_auc)(jnp.asarray(probs), jnp.asarray(labels),
                                                     jnp.asarray(mask))
    assert float(exact) == pytest.approx(roc_auc_score(labels[mask], p1[mask]), abs=1e-6)
    assert float(exact) == pytest.approx(metrics.roc_auc(labels[mask], p1[mask]), abs=1e-6)
    assert float(keras) == pytest.approx(metrics.keras_auc(labels[mask], probs[mask]), abs=1e-5)


def test_one_class_or_empty_is_nan():
    scores, labels = jnp.linspace(0, 1, 6), jnp.asarray([1, 1, 1, 0, 0, 0])
    only_pos = jnp.asarray([True, True, True, False, False, False])
    assert np.isnan(device_metrics.masked_roc_auc(scores, labels, only_pos))
    probs = jnp.stack([1 - scores, scores], axis=1)
    assert np.isnan(device_metrics.masked_keras_auc(probs, labels, jnp.zeros(6, bool)))
    assert float(device_metrics.masked_roc_auc(scores, labels, jnp.ones(6, bool))) == 0.0
