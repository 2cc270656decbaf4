"""TensorBoard summaries (one stream per member) and console progress, through clu.

WORKDIR/tensorboard/<member_id>/   train_loss, val_loss, best_val_loss, val_auc (exact) and
                                   val_auc_keras per epoch (as the study's Keras logs); the AUCs of
                                   every test set at the end; the member's fields as hparams
WORKDIR/tensorboard/program/       steps_per_sec and uptime (`Progress`), also logged
                                   to the console e.g. "progress: 3.1 steps/s, 40.0% (56/140), ETA 27 s"
clu's writers import TensorFlow; it is told to see no GPU so it never takes accelerator memory.
"""

from __future__ import annotations

import math
import os
import pathlib
import time
from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging

SUMMARY_DIR = "tensorboard"
PROGRAM_STREAM = "program"


def hide_accelerators_from_tensorflow() -> None:
    """Keep TensorFlow (imported by clu's writers) off GPUs/TPUs: JAX owns them."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
        tf.config.set_visible_devices([], "TPU")
    except (RuntimeError, ValueError):  # already initialised or no such device type
        pass


class Summaries:
    """Per-member TensorBoard writers plus a progress reporter for one program."""

    def __init__(self, workdir: str | os.PathLike, member_rows: Sequence[Mapping[str, Any]],
                 total_steps: int, every_secs: float, write: bool = True):
        """`write` False (a program's processes other than 0): nothing is written to the
        workdir; progress is still logged to the console."""
        hide_accelerators_from_tensorflow()
        from clu import metric_writers

        root = pathlib.Path(workdir) / SUMMARY_DIR
        self._members = [metric_writers.SummaryWriter(os.fspath(root / row["member_id"]))
                         if write else metric_writers.MultiWriter([]) for row in member_rows]
        for writer, row in zip(self._members, member_rows):
            writer.write_hparams({k: v for k, v in row.items() if isinstance(v, (int, float, str))})
        self._program = metric_writers.create_default_writer(
            os.fspath(root / PROGRAM_STREAM), asynchronous=False, just_logging=not write)
        self._progress = make_progress(total_steps, self._program, every_secs)

    def step(self, step: int) -> None:
        """Call after every program step (cheap; reports every `every_secs`)."""
        self._progress(step)

    def epoch(self, epoch: int, scalars: Mapping[str, np.ndarray], active: np.ndarray) -> None:
        """Write per-member scalars ({name: [M] values}) for members active this epoch."""
        for m, writer in enumerate(self._members):
            if active[m]:
                writer.write_scalars(epoch, {k: float(v[m]) for k, v in scalars.items()})
        for writer in self._members:
            writer.flush()

    def final(self, epoch: int, scalars: Mapping[str, np.ndarray]) -> None:
        """Write every member's final scalars (e.g. test AUCs) at `epoch`."""
        for m, writer in enumerate(self._members):
            writer.write_scalars(epoch, {k: float(v[m]) for k, v in scalars.items()})
            writer.flush()

    def close(self) -> None:
        for writer in self._members:
            writer.close()
        self._program.close()


def format_eta(seconds: float) -> str:
    """'42 s' under a minute, '3 min 05 s' under an hour, '2 h 07 min' above; '?' if unknown."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def make_progress(total_steps: int, writer: Any, every_secs: float):
    """A clu periodic action (call it after every step) for the console line and the scalars.

    clu's own ReportProgress puts its line in a "Setting work unit notes:" log record (meant for
    XManager) and rounds the ETA to whole minutes ("ETA: 0m"); this one logs
    "progress: R steps/s, P% (step/total), ETA ..." and writes steps_per_sec and uptime to
    `writer`.
    """
    from clu import periodic_actions

    class Progress(periodic_actions.PeriodicAction):
        def __init__(self) -> None:
            super().__init__(every_secs=every_secs, on_steps=[total_steps])
            self._t0 = time.monotonic()

        def _should_trigger(self, step: int, t: float) -> bool:
            return step != self._previous_step and super()._should_trigger(step, t)

        def _apply(self, step: int, t: float) -> None:
            rate = (step - self._previous_step) / max(t - self._previous_time, 1e-9)
            eta = (total_steps - step) / rate if rate > 0 else math.inf
            logging.info("progress: %.1f steps/s, %.1f%% (%d/%d), ETA %s", rate,
                         100 * step / max(total_steps, 1), step, total_steps, format_eta(eta))
            writer.write_scalars(step, {"steps_per_sec": rate, "uptime": time.monotonic() - self._t0})

    return Progress()


def log_epoch(epoch: int, num_epochs: int, train_loss: np.ndarray, val_loss: np.ndarray,
              active: np.ndarray, stopped: np.ndarray) -> None:
    """One console line per epoch, summarised over members."""
    finite = lambda a: a[np.isfinite(a)]  # noqa: E731
    tl, vl = finite(train_loss[active]), finite(val_loss[active])
    logging.info("epoch %d/%d: %d members trained, train loss %s, val loss %s, %d stopped",
                 epoch, num_epochs, int(active.sum()),
                 f"{tl.mean():.4f}" if tl.size else "-", f"{vl.mean():.4f} (min {vl.min():.4f})"
                 if vl.size else "-", int(stopped.sum()))
