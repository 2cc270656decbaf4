"""The program's outputs on host: WORKDIR/results.csv (one row per member and test set) and
WORKDIR/predictions.csv (one row per member, test set and example).

results.csv columns (docs/architecture.md): member_index, member_id, the Member fields
(experiment, source, p_art, fold, seed), test_set (iid | ood | clean, plus ood_<confounder> for
each extra o.o.d. test the data asked for, e.g. ood_denoising), auc (exact binary ROC-AUC
of the positive-class probability), auc_keras (the study's flattened Keras AUC), n_examples,
n_positive, best_epoch, best_val_loss, epochs_trained, status (ok | nonfinite_loss |
no_best_state), then dataset, image_size, preprocessing and the model fields. Files are written to
a temporary name and renamed, so a reader never sees half a table and a finished program is
recognisable by the presence of results.csv.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sourcematters_jax import atomic_files
from sourcematters_jax.data.types import EXTRA_OOD_PREFIX
from sourcematters_jax.members import MEMBER_FIELDS
from sourcematters_jax.train.metrics import keras_auc, roc_auc

RESULTS_FILE = "results.csv"
PREDICTIONS_FILE = "predictions.csv"
TEST_SET_NAMES = {"test_iid": "iid", "test_ood": "ood", "test_clean": "clean"}  # every member has these
COLUMNS = ("member_index", "member_id", *MEMBER_FIELDS, "test_set", "auc", "auc_keras",
           "n_examples", "n_positive", "best_epoch", "best_val_loss", "epochs_trained", "status",
           "dataset", "image_size", "preprocessing", "model_stage_sizes", "model_width",
           "model_dtype")


def member_status(nonfinite: bool, best_epoch: int) -> str:
    """'nonfinite_loss' if a NaN/inf stopped it, 'no_best_state' if no epoch ever improved."""
    if nonfinite:
        return "nonfinite_loss"
    return "ok" if best_epoch > 0 else "no_best_state"


def test_set_name(split: str) -> str:
    """results.csv's test_set of a test split: 'iid', 'ood', 'clean', or 'ood_<confounder>'."""
    if split in TEST_SET_NAMES:
        return TEST_SET_NAMES[split]
    if split.startswith(EXTRA_OOD_PREFIX):
        return "ood_" + split[len(EXTRA_OOD_PREFIX):]
    raise ValueError(f"unknown test split {split!r}")


def build_tables(member_rows: Sequence[Mapping[str, Any]], program: Mapping[str, Any],
                 labels: np.ndarray, names: Sequence[str], splits: Mapping[str, Mapping[str, np.ndarray]],
                 probs: Mapping[str, np.ndarray], best_epoch: np.ndarray, best_val_loss: np.ndarray,
                 epochs_trained: np.ndarray, nonfinite: np.ndarray
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, predictions) DataFrames.

    Args:
      member_rows: per member, its Member fields plus member_index, member_id, preprocessing.
      program: dataset, image_size, model_stage_sizes, model_width, model_dtype.
      labels, names: the pool's labels and file names.
      splits: test split -> {'indices', 'confounded', 'mask'} numpy [M, n_pad]; the three fixed
        test splits plus any extra ones (test_ood_<confounder>), in the order of the rows.
      probs: test split -> [M, n_pad, 2] probabilities of the best state.
      best_epoch, best_val_loss, epochs_trained, nonfinite: [M] per member.
    Members without a best state get NaN AUCs (their weights were never validated).
    """
    rows, preds = [], []
    for m, member in enumerate(member_rows):
        status = member_status(bool(nonfinite[m]), int(best_epoch[m]))
        for split in splits:
            valid = np.asarray(splits[split]["mask"][m], bool)
            idx = np.asarray(splits[split]["indices"][m])[valid]
            y = np.asarray(labels)[idx]
            p = np.asarray(probs[split][m])[valid]
            has_state = int(best_epoch[m]) > 0
            rows.append({
                "member_index": member["member_index"], "member_id": member["member_id"],
                **{f: member[f] for f in MEMBER_FIELDS},
                "test_set": test_set_name(split),
                "auc": roc_auc(y, p[:, 1]) if has_state else float("nan"),
                "auc_keras": keras_auc(y, p) if has_state else float("nan"),
                "n_examples": int(valid.sum()), "n_positive": int(y.sum()),
                "best_epoch": int(best_epoch[m]), "best_val_loss": float(best_val_loss[m]),
                "epochs_trained": int(epochs_trained[m]), "status": status,
                "preprocessing": member["preprocessing"], **program,
            })
            preds.append(pd.DataFrame({
                "member_index": member["member_index"], "member_id": member["member_id"],
                "test_set": test_set_name(split), "pool_index": idx,
                "name": [names[i] for i in idx], "label": y,
                "confounded": np.asarray(splits[split]["confounded"][m])[valid],
                "prob_positive": p[:, 1],
            }))
    return pd.DataFrame(rows, columns=list(COLUMNS)), pd.concat(preds, ignore_index=True)


def write_atomic(frame: pd.DataFrame, path: str | os.PathLike) -> pathlib.Path:
    """Write a results or predictions table to `path` atomically (`atomic_files.write_csv`)."""
    return atomic_files.write_csv(path, frame)


def is_complete(path: str | os.PathLike, member_ids: Sequence[str]) -> bool:
    """True if `path` is a results table with a row per member and test set."""
    path = pathlib.Path(path)
    if not path.is_file():
        return False
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return False
    if not {"member_id", "test_set"} <= set(table.columns):
        return False
    have = set(zip(table["member_id"], table["test_set"]))
    return all((mid, name) in have for mid in member_ids for name in TEST_SET_NAMES.values())
