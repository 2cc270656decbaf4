"""Cross-evaluation: finished members on the test sets of another experiment config.

Each member's best state is run (inference mode, as the trainer's test evaluation) on the
i.i.d., o.o.d. and clean test sets that the other config's data gives the member's own
(p_art, fold, seed): the fold keeps a member's training images out of its test sets when both
configs use the same image pool, and p_art sets the confounded share of the other config's i.i.d.
test. The table is the trainer's results.csv schema (train/results.py) plus `trained_on` and
`evaluated_on` ('experiment/dataset'); `dataset`, `image_size` and the model columns describe
the evaluation. `sourcematters report` shows such tables as a cross-evaluation section.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import jax
import ml_collections
import numpy as np
import pandas as pd

from sourcematters_jax.data.types import TEST_SPLITS, ExperimentData
from sourcematters_jax.reuse.members import LoadedMember, ReuseInputError, check_compatible
from sourcematters_jax.reuse.runner import MemberWeights, pack_splits, run_members
from sourcematters_jax.train import evaluate as evaluate_lib, results, state as state_lib
from sourcematters_jax.train.inputs import load_data
from sourcematters_jax.train.step import DevicePool, MemberArrays


def evaluated_on(config: ml_collections.ConfigDict) -> str:
    return f"{config.experiment}/{config.dataset}"


def load_checked_data(members: Sequence[LoadedMember], config: ml_collections.ConfigDict,
                      where: str, data: ExperimentData | None = None) -> ExperimentData:
    """The config's data, after checking the members fit the config's model and image size."""
    check_compatible(members, config, where)
    data = load_data(config) if data is None else data
    shape = tuple(data.pool.images.shape[2:])
    if shape != (config.image_size, config.image_size):
        raise ReuseInputError(f"{where}: the data's images are {shape}, config.image_size is "
                              f"{config.image_size}")
    return data


def cross_evaluate(members: Sequence[LoadedMember], config: ml_collections.ConfigDict, *,
                   where: str = "the config", data: ExperimentData | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, predictions) of every member on `config`'s test sets; nothing is written.

    `data` replaces `load_experiment(...)` of the config (tests, custom data).
    """
    if not members:
        raise ReuseInputError("no members chosen")
    data = load_checked_data(members, config, where, data)
    model = state_lib.build_model(config.model.to_dict(), config.dropout_rate)
    members_data = [data.member_data(lm.member.p_art, lm.member.fold, lm.member.seed)
                    for lm in members]

    def predict_tests(w: MemberWeights, arrays: MemberArrays, pool: DevicePool):
        return {split: evaluate_lib.predict(
            w.params, w.batch_stats, w.pixel_mean, w.pixel_scale, getattr(arrays, split), pool,
            model=model, eval_batch_size=config.eval_batch_size)[0] for split in TEST_SPLITS}

    arrays = pack_splits(members_data, config)
    probs = run_members(predict_tests, members, arrays, data, config)
    program = {"dataset": config.dataset, "image_size": config.image_size,
               "model_stage_sizes": "-".join(map(str, config.model.stage_sizes)),
               "model_width": config.model.width, "model_dtype": config.model.dtype}
    splits = {s: {"indices": getattr(arrays, s).indices, "mask": getattr(arrays, s).mask,
                  "confounded": getattr(arrays, s).confounded} for s in TEST_SPLITS}
    rows = [lm.row for lm in members]
    table, preds = results.build_tables(
        rows, program, np.asarray(data.pool.labels), data.pool.names, splits,
        jax.tree.map(np.asarray, probs), np.array([lm.best_epoch for lm in members]),
        np.array([lm.best_val_loss for lm in members]),
        np.array([lm.epochs_trained for lm in members]),
        np.array([lm.status == "nonfinite_loss" for lm in members]))
    trained = {lm.member_id: lm.trained_on for lm in members}
    for frame in (table, preds):
        frame.insert(2, "trained_on", frame["member_id"].map(trained))
        frame.insert(3, "evaluated_on", evaluated_on(config))
    return table, preds


def write_tables(table: pd.DataFrame, preds: pd.DataFrame, out: str | pathlib.Path
                 ) -> pathlib.Path:
    """OUT/predictions.csv then OUT/results.csv, each atomically; returns the results path."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results.write_atomic(preds, out / results.PREDICTIONS_FILE)
    return results.write_atomic(table, out / results.RESULTS_FILE)
