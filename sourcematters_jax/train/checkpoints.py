"""Orbax checkpoints of a program: train state, best state and the member table.

Layout: WORKDIR/checkpoints/<epoch>/{train,best,members}, written by an Orbax
`CheckpointManager` (atomic: a checkpoint is either complete or ignored, so a kill at any moment
leaves the last complete one to resume from).

Saves are asynchronous and never gather the program's state into one host array: the placed
jax.Arrays go to Orbax as they are (a member-axis array sharded over the mesh for the sharded
strategies; for 'loop' the per-member arrays on their devices, as a list of member trees). `save`
returns once Orbax
has copied every shard to host memory (so the next, donating training step may overwrite the
device buffers); the files are written in a background thread while training goes on, and the
host copy is freed as they are written. `close` (or the next `save`) waits for the write.

The states are stored in the layout they had on device, recorded in the members item as
`state_layout`: 'stacked' (leading member axis, possibly padded to a multiple of the device
count; older checkpoints hold host arrays with exactly the real members) or 'per_member' (a list
of member trees: what a 'loop'-placed tree, `train.placed.PerMember` leaves, is split into).
`restore` reads a checkpoint straight onto the current runner's devices when the layout matches
(a stacked state is truncated or zero-padded on its member axis to the runner's padded count:
rows past the real members are padding that never reaches the host); across layouts (a 'loop'
checkpoint resumed by 'vmap', or back) it goes through host memory once.

With several processes (jax.distributed) every process calls save and restore with the global
arrays: Orbax writes each process's own shards, and process 0 (`primary_host`) the metadata and
the members item, and creates and finalises the checkpoint directory behind its barriers. The
workdir must be on a filesystem every process sees (host-local disks would need Orbax's
primary_host=None, which this program does not use).

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
from jax.sharding import SingleDeviceSharding

from sourcematters_jax import variables_io
from sourcematters_jax.train import packing, placed

CHECKPOINT_DIR = "checkpoints"
EXPORT_FORMAT = "sourcematters_jax.member"
LAYOUT_KEY = "state_layout"
STACKED, PER_MEMBER = "stacked", "per_member"


def layout_of(tree: Any) -> str:
    """The on-disk layout of a placed (or numpy) state: 'per_member' for the loop strategy's
    view (`placed.PerMember` leaves), else 'stacked'."""
    return PER_MEMBER if placed.is_per_member(tree) else STACKED


def _to_disk(tree: Any) -> Any:
    """What Orbax writes for a placed state: 'per_member' as a list of member trees."""
    return placed.split(tree) if layout_of(tree) == PER_MEMBER else tree


def _from_disk(tree: Any, layout: str) -> Any:
    """Inverse of `_to_disk` for a state restored in `layout` onto its devices."""
    return placed.assemble(tree) if layout == PER_MEMBER else tree


# Every process of a program takes part (each writes its shards); process 0 writes the rest.
_PROCESSES = ocp.options.MultiprocessingOptions(primary_host=0)


class ProgramCheckpoints:
    """Save/restore a program's (train, best, members); asynchronous saves, see the module doc."""

    def __init__(self, workdir: str | os.PathLike, keep: int = 1, read_only: bool = False):
        self.directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
        if read_only and not self.directory.is_dir():
            raise FileNotFoundError(f"{self.directory}: no checkpoints (not a training workdir?)")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                               read_only=read_only,
                                               enable_async_checkpointing=not read_only,
                                               multiprocessing_options=_PROCESSES)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("train", "best", "members"))

    def latest_epoch(self) -> int | None:
        """The last completely written epoch, or None."""
        return self._manager.latest_step()

    def save(self, epoch: int, train: Any, best: Any, members: Mapping[str, Any]) -> None:
        """Start writing epoch `epoch` (completed epochs, from 1) of placed (or numpy) states.

        Returns after the device-to-host copy; the write finishes in the background.
        """
        if layout_of(train) != layout_of(best):
            raise ValueError("train and best states must have the same layout")
        table = {**dict(members), LAYOUT_KEY: layout_of(train)}
        self._manager.save(epoch, args=ocp.args.Composite(
            train=ocp.args.StandardSave(_to_disk(train)),
            best=ocp.args.StandardSave(_to_disk(best)),
            members=ocp.args.JsonSave(table)), force=True)

    def wait(self) -> None:
        """Block until the last save is on disk."""
        self._manager.wait_until_finished()

    def restore_members(self, epoch: int) -> dict[str, Any]:
        """The members item (member table and `state_layout`) of `epoch`."""
        restored = self._manager.restore(epoch, args=ocp.args.Composite(
            members=ocp.args.JsonRestore()))
        return dict(restored["members"])

    def restore(self, epoch: int, train_target: Any, best_target: Any, runner: Any
                ) -> tuple[Any, Any, dict[str, Any]]:
        """(train, best, members) of `epoch`, placed for `runner` (a `packing.Runner`).

        The targets are one member's state as pytrees of arrays or `jax.ShapeDtypeStruct`s.
        """
        members = self.restore_members(epoch)
        saved_layout = members.get(LAYOUT_KEY, STACKED)
        targets = [runner.abstract_members(t) for t in (train_target, best_target)]
        want = layout_of(targets[0])
        # A stacked state's member axis may be padded (to a multiple of the device count):
        # read it truncated or zero-padded to the target's length.
        strict = saved_layout == PER_MEMBER
        try:
            if saved_layout == want:
                train, best = self._restore_states(epoch, *map(_to_disk, targets), strict=strict)
                train, best = (_from_disk(s, want) for s in (train, best))
            else:
                host = [_host_target(t, saved_layout, runner.num_members)
                        for t in (train_target, best_target)]
                train, best = self._restore_states(epoch, *host, strict=strict)
                train, best = (runner.put_members(_stacked_numpy(s, saved_layout,
                                                                 runner.num_members))
                               for s in (train, best))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{self.directory / str(epoch)}: checkpoint does not match this "
                             f"program's state ({e}); use another workdir or set "
                             "config.overwrite=True") from e
        return train, best, members

    def _restore_states(self, epoch: int, train: Any, best: Any, *, strict: bool) -> tuple:
        restored = self._manager.restore(epoch, args=ocp.args.Composite(
            train=ocp.args.StandardRestore(train, strict=strict),
            best=ocp.args.StandardRestore(best, strict=strict)))
        return restored["train"], restored["best"]

    def restore_best(self, epoch: int | None = None) -> tuple[Any, dict[str, Any]]:
        """(best state as numpy with a leading member axis, members item), either layout.

        Row m is member m of the member table (a 'stacked' state may hold padding rows after
        the real members)."""
        epoch = self.latest_epoch() if epoch is None else epoch
        if epoch is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint")
        meta = self._manager.item_metadata(epoch)["best"]
        tree = getattr(meta, "tree", meta)
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype,
                                                             sharding=_host_sharding()), tree)
        restored = self._manager.restore(epoch, args=ocp.args.Composite(
            best=ocp.args.StandardRestore(target, fallback_sharding=_host_sharding()),
            members=ocp.args.JsonRestore()))
        members = dict(restored["members"])
        return (_stacked_numpy(restored["best"], members.get(LAYOUT_KEY, STACKED), None),
                members)

    def close(self) -> None:
        """Wait for an unfinished save, then release the manager."""
        self._manager.close()


def _host_sharding() -> SingleDeviceSharding:
    return SingleDeviceSharding(jax.local_devices(backend="cpu")[0])


def _host_target(member_target: Any, layout: str, num_members: int) -> Any:
    """Abstract host (CPU) arrays for reading a checkpoint of another layout."""
    def one(s, lead=()):
        return jax.ShapeDtypeStruct(lead + tuple(np.shape(s)), s.dtype, sharding=_host_sharding())
    if layout == PER_MEMBER:
        return [jax.tree.map(one, member_target) for _ in range(num_members)]
    return jax.tree.map(lambda s: one(s, (num_members,)), member_target)


def _stacked_numpy(state: Any, layout: str, num_members: int | None) -> Any:
    """A state restored to host in `layout` -> numpy with a leading member axis, cut to
    `num_members` rows (None: every row, padding included)."""
    if layout == PER_MEMBER:  # on disk: a list of member trees
        return packing.stack_trees(state)
    return jax.tree.map(lambda x: np.asarray(x)[:num_members], state)


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
        state = jax.tree.map(lambda x, pos=pos: x[pos], best)
        variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
        row = table["members"][pos]
        metadata = {"format": EXPORT_FORMAT, "member": row, "model": table["model"],
                    "image_size": table["image_size"], "preprocessing": row["preprocessing"],
                    "best_epoch": int(state["epoch"]),
                    "best_val_loss": float(state["val_loss"])}
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
