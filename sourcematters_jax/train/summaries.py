"""TensorBoard summaries (one stream per member) and console progress, through clu.

WORKDIR/tensorboard/<member_id>/   train_loss, val_loss, best_val_loss, val_auc (exact) and
                                   val_auc_keras per epoch (as the study's Keras logs); the AUCs of
                                   every test set at the end; the member's fields as hparams
WORKDIR/tensorboard/program/       steps_per_sec and uptime (clu ReportProgress), also logged
                                   to the console with the percentage done and the ETA
clu's writers import TensorFlow; it is told to see no GPU so it never takes accelerator memory.
"""

from __future__ import annotations

import os
import pathlib
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
                 total_steps: int, every_secs: float):
        hide_accelerators_from_tensorflow()
        from clu import metric_writers, periodic_actions

        root = pathlib.Path(workdir) / SUMMARY_DIR
        self._members = [metric_writers.SummaryWriter(os.fspath(root / row["member_id"]))
                         for row in member_rows]
        for writer, row in zip(self._members, member_rows):
            writer.write_hparams({k: v for k, v in row.items() if isinstance(v, (int, float, str))})
        self._program = metric_writers.create_default_writer(
            os.fspath(root / PROGRAM_STREAM), asynchronous=False)
        self._progress = periodic_actions.ReportProgress(
            num_train_steps=total_steps, writer=self._program, every_secs=every_secs)

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


def log_epoch(epoch: int, num_epochs: int, train_loss: np.ndarray, val_loss: np.ndarray,
              active: np.ndarray, stopped: np.ndarray) -> None:
    """One console line per epoch, summarised over members."""
    finite = lambda a: a[np.isfinite(a)]  # noqa: E731
    tl, vl = finite(train_loss[active]), finite(val_loss[active])
    logging.info("epoch %d/%d: %d members trained, train loss %s, val loss %s, %d stopped",
                 epoch, num_epochs, int(active.sum()),
                 f"{tl.mean():.4f}" if tl.size else "-", f"{vl.mean():.4f} (min {vl.min():.4f})"
                 if vl.size else "-", int(stopped.sum()))
