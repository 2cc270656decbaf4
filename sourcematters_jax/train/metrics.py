"""AUC metrics on host (numpy): the exact binary ROC-AUC and the study's Keras-compatible AUC.

The study reported `keras.metrics.AUC()` (200 thresholds, ROC, trapezoid) on one-hot labels
against the softmax output, i.e. both columns flattened into one binary problem: a micro-average,
not the binary AUC of the positive class (a constant predictor scores 0.6265 on the 83-image
chest14 test set). Both are reported so results compare with the paper and stay interpretable.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

KERAS_NUM_THRESHOLDS = 200
_KERAS_EPSILON = 1e-7  # keras.backend.epsilon(), pads the outermost thresholds


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC-AUC of `scores` for binary `labels` (ties count 1/2); NaN if one class is absent.

    Equals sklearn.metrics.roc_auc_score: the Mann-Whitney U statistic over n_pos * n_neg.
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks for ties
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def keras_thresholds(num_thresholds: int = KERAS_NUM_THRESHOLDS) -> np.ndarray:
    """keras.metrics.AUC's evenly spaced thresholds, padded with -eps and 1 + eps (float32)."""
    inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    return np.asarray([0.0 - _KERAS_EPSILON] + inner + [1.0 + _KERAS_EPSILON], np.float32)


def keras_auc(labels: np.ndarray, probs: np.ndarray,
              num_thresholds: int = KERAS_NUM_THRESHOLDS) -> float:
    """keras.metrics.AUC() of one-hot labels against class probabilities, flattened.

    Args:
      labels: int [n] class labels (0..C-1).
      probs: float [n, C] predicted probabilities (softmax output).
    Returns the ROC AUC by trapezoid over `num_thresholds` thresholds, as Keras computes it
    (a prediction counts as positive when it is strictly above the threshold).
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be [n, C] for {labels.shape[0]} labels, got {probs.shape}")
    onehot = np.eye(probs.shape[1], dtype=bool)[labels].ravel()
    preds = np.clip(probs.ravel(), 0.0, 1.0)  # Keras clips predictions to [0, 1]
    thresholds = keras_thresholds(num_thresholds)
    above = preds[None, :] > thresholds[:, None]  # [T, 2n]
    tp = (above & onehot).sum(axis=1).astype(np.float64)
    fp = (above & ~onehot).sum(axis=1).astype(np.float64)
    fn = onehot.sum() - tp
    tn = (~onehot).sum() - fp
    tpr = _divide_no_nan(tp, tp + fn)
    fpr = _divide_no_nan(fp, fp + tn)
    heights = (tpr[:-1] + tpr[1:]) / 2.0
    return float(np.sum((fpr[:-1] - fpr[1:]) * heights))


def _divide_no_nan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros_like(a)
    np.divide(a, b, out=out, where=b != 0)
    return out
