"""AUCs of a masked split on device (jnp), for the per-epoch validation summaries.

The same two numbers as `metrics.py` computes on host for the tests, written for a padded split
(mask False = padding) so that they run inside the jitted, member-lifted epoch end:

  masked_roc_auc    exact binary ROC-AUC of the positive-class score (ties count 1/2): the
                    Mann-Whitney statistic over every (positive, negative) pair. O(n^2) in the
                    split's padded length, which is tens to a few hundred for validation sets.
  masked_keras_auc  keras.metrics.AUC() on one-hot labels vs the softmax (both columns
                    flattened, 200 thresholds, trapezoid), as the study's logs show.
masked_roc_auc is NaN when a class is absent from the masked-in examples, masked_keras_auc for
an empty split (its flattened problem always holds both). Equal to the host versions up
to float32 rounding (tests/test_device_metrics.py).
"""

from __future__ import annotations

import jax.numpy as jnp

from sourcematters_jax.train.metrics import KERAS_NUM_THRESHOLDS, keras_thresholds


def masked_roc_auc(scores: jnp.ndarray, labels: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Exact ROC-AUC of `scores` [n] for binary `labels` [n] over the examples where `mask`."""
    pos = mask & (labels == 1)
    neg = mask & (labels == 0)
    diff = scores[:, None] - scores[None, :]
    wins = jnp.where(diff > 0, 1.0, jnp.where(diff == 0, 0.5, 0.0))
    pairs = pos[:, None] & neg[None, :]
    n_pairs = jnp.sum(pos) * jnp.sum(neg)
    total = jnp.sum(jnp.where(pairs, wins, 0.0))
    return jnp.where(n_pairs > 0, total / jnp.maximum(n_pairs, 1), jnp.nan)


def masked_keras_auc(probs: jnp.ndarray, labels: jnp.ndarray, mask: jnp.ndarray,
                     num_thresholds: int = KERAS_NUM_THRESHOLDS) -> jnp.ndarray:
    """keras.metrics.AUC() of one-hot `labels` [n] vs `probs` [n, C], flattened, where `mask`."""
    onehot = (labels[:, None] == jnp.arange(probs.shape[1])[None, :]).ravel()
    valid = jnp.repeat(mask, probs.shape[1])
    preds = jnp.clip(probs.astype(jnp.float32).ravel(), 0.0, 1.0)
    thresholds = jnp.asarray(keras_thresholds(num_thresholds))
    above = (preds[None, :] > thresholds[:, None]) & valid[None, :]
    positive, negative = onehot & valid, ~onehot & valid
    tp = jnp.sum(above & positive[None, :], axis=1).astype(jnp.float32)
    fp = jnp.sum(above & negative[None, :], axis=1).astype(jnp.float32)
    n_pos, n_neg = jnp.sum(positive), jnp.sum(negative)
    tpr = tp / jnp.maximum(n_pos, 1)
    fpr = fp / jnp.maximum(n_neg, 1)
    auc = jnp.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2.0)
    # Keras returns 0 when a class is absent; NaN says so more plainly in a summary.
    return jnp.where((n_pos > 0) & (n_neg > 0), auc, jnp.nan)
