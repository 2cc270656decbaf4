"""Orbax checkpoints of a program: train state, best state and the member table, per epoch.

Layout: WORKDIR/checkpoints/<epoch>/{train,best,members}, written by an Orbax
`CheckpointManager` (atomic: a checkpoint is either complete or ignored, so a kill at any moment
leaves the last complete epoch to resume from). States are saved as host numpy pytrees with the
real members on the leading axis, so a program can resume with another device count or strategy.

`load_member` / `export_member` give one member's best weights back for later evaluation: the
full classifier variables {'params': {'backbone', 'head'}, 'batch_stats': {'backbone'}} plus the
member's row and its preprocessing.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Mapping, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from sourcematters_jax import variables_io

CHECKPOINT_DIR = "checkpoints"
EXPORT_FORMAT = "sourcematters_jax.member"


class ProgramCheckpoints:
    """Save/restore a program's (train, best, members) once per epoch."""

    def __init__(self, workdir: str | os.PathLike, keep: int = 2, read_only: bool = False):
        self.directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
        if read_only and not self.directory.is_dir():
            raise FileNotFoundError(f"{self.directory}: no checkpoints (not a training workdir?)")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                               read_only=read_only,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("train", "best", "members"))

    def latest_epoch(self) -> int | None:
        """The last completely written epoch, or None."""
        return self._manager.latest_step()

    def save(self, epoch: int, train: Any, best: Any, members: Mapping[str, Any]) -> None:
        """Write epoch `epoch` (numbers of completed epochs, from 1); host numpy pytrees."""
        self._manager.save(epoch, args=ocp.args.Composite(
            train=ocp.args.StandardSave(train), best=ocp.args.StandardSave(best),
            members=ocp.args.JsonSave(dict(members))), force=True)
        self._manager.wait_until_finished()

    def restore(self, epoch: int, train_target: Any, best_target: Any
                ) -> tuple[Any, Any, dict[str, Any]]:
        """(train, best, members) of `epoch`, as numpy pytrees shaped like the targets.

        The targets are pytrees of arrays or `jax.ShapeDtypeStruct`s (shape and dtype are used).
        """
        as_np = lambda t: jax.tree.map(  # noqa: E731
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), t)
        try:
            restored = self._manager.restore(epoch, args=ocp.args.Composite(
                train=ocp.args.StandardRestore(as_np(train_target)),
                best=ocp.args.StandardRestore(as_np(best_target)),
                members=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{self.directory / str(epoch)}: checkpoint does not match this "
                             f"program's state ({e}); use another workdir or set "
                             "config.overwrite=True") from e
        to_np = lambda t: jax.tree.map(np.asarray, t)  # noqa: E731
        return to_np(restored["train"]), to_np(restored["best"]), dict(restored["members"])

    def restore_best(self, epoch: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(best-state tree as nested dicts of numpy, members table) without a target."""
        epoch = self.latest_epoch() if epoch is None else epoch
        if epoch is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint")
        restored = self._manager.restore(epoch, args=ocp.args.Composite(
            best=ocp.args.StandardRestore(), members=ocp.args.JsonRestore()))
        return restored["best"], dict(restored["members"])

    def close(self) -> None:
        self._manager.close()


def _member_position(members: Mapping[str, Any], member: str | int) -> int:
    rows = members["members"]
    for pos, row in enumerate(rows):
        if member == row["member_id"] or member == row["member_index"]:
            return pos
    raise KeyError(f"member {member!r} is not in this program "
                   f"({[r['member_id'] for r in rows]})")


def load_member(workdir: str | os.PathLike, member: str | int
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(variables, metadata) of one member's best weights from a program's latest checkpoint.

    `member` is a member_id or a sweep member_index. `variables` is {'params', 'batch_stats'}
    for `state.build_model(...)`; `metadata` has the member row, preprocessing, model, best epoch
    and val loss.
    """
    return load_members(workdir, [member])[0]


def load_members(workdir: str | os.PathLike, members: Sequence[str | int]
                 ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """`load_member` for several members of one program, restoring the checkpoint once."""
    ckpt = ProgramCheckpoints(workdir, read_only=True)
    try:
        best, table = ckpt.restore_best()
    finally:
        ckpt.close()
    out = []
    for member in members:
        pos = _member_position(table, member)
        pick = lambda t: jax.tree.map(lambda x: np.asarray(x)[pos], t)  # noqa: E731
        variables = {"params": pick(best["params"]), "batch_stats": pick(best["batch_stats"])}
        row = table["members"][pos]
        metadata = {"format": EXPORT_FORMAT, "member": row, "model": table["model"],
                    "image_size": table["image_size"], "preprocessing": row["preprocessing"],
                    "best_epoch": int(np.asarray(best["epoch"])[pos]),
                    "best_val_loss": float(np.asarray(best["val_loss"])[pos])}
        out.append((variables, metadata))
    return out


def export_member(workdir: str | os.PathLike, member: str | int,
                  directory: str | os.PathLike) -> pathlib.Path:
    """Write one member's best weights as a standalone checkpoint (metadata.json + variables/).

    Written to a temporary sibling and renamed, so a failure leaves nothing at `directory`;
    an existing `directory` is refused.
    """
    directory = pathlib.Path(directory).absolute()
    if directory.exists():
        raise FileExistsError(f"{directory} exists; choose a new directory for the export")
    variables, metadata = load_member(workdir, member)
    return variables_io.write(directory, variables, metadata)


def read_exported(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(variables, metadata) of a directory written by `export_member`."""
    directory = pathlib.Path(directory).absolute()
    metadata = variables_io.read_metadata(directory, "an exported member")
    if metadata.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{directory / variables_io.METADATA_FILE}: 'format' is not "
                         f"{EXPORT_FORMAT!r}")
    return variables_io.read_variables(directory), metadata
