"""`train_and_evaluate(config, workdir)`: one program, M members, from data to results.csv.

  1. claim the workdir (config.json; a different config is refused unless config.overwrite)
  2. load the experiment's pool and every member's splits; pack them on a member axis
  3. initialise members (seeded head, backbone from its source) or restore the last checkpoint
  4. per epoch: the M-member train step `steps_per_epoch` times (train loss summed on device),
     then validation loss, best-state keeping and early stopping per member; one small
     device-to-host copy for the summaries; a checkpoint when one is due (asynchronous)
  5. evaluate every member's best state on the i.i.d., o.o.d. and clean tests (and any extra
     o.o.d. tests the data carries, data option extra_ood); write
     results.csv and predictions.csv
Every device computation is a per-member function lifted by `packing.Runner` (vmap, lax.map or a
Python loop; member axis sharded over devices); placed states look the same for every strategy
(`train.placed`). Compiled programs (`programs.Programs`) are cached per process by their
`programs.ProgramSpec`, so a second program of the same shape starts without compiling. The
epoch and results helpers share one `ProgramContext`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil
import time
import types
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from sourcematters_jax import atomic_files, host_devices, workdir_lock
from sourcematters_jax.data.types import ExperimentData
from sourcematters_jax.members import Member, select_members
from sourcematters_jax.train import checkpoints, inputs as inputs_lib, results, summaries
from sourcematters_jax.train import config as config_lib
from sourcematters_jax.train import evaluate, packing, processes, state as state_lib
from sourcematters_jax.train import step as step_lib
from sourcematters_jax.train import memory as memory_lib
from sourcematters_jax.train.programs import Programs, ProgramSpec, build_programs

CONFIG_FILE = "config.json"
PROGRAM_FILE = "program.json"


# ---------------------------------------------------------------------------------------------
# Workdir
# ---------------------------------------------------------------------------------------------

def check_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> bool:
    """True if WORKDIR holds another config's outputs that config.overwrite allows deleting.

    Raises ValueError if it holds another config's outputs and config.overwrite is False.
    """
    path = workdir / CONFIG_FILE
    if not path.exists():
        return False
    try:
        old, new = json.loads(path.read_text()), json.loads(config_lib.identity_json(config))
        if old == new:
            return False
        differ = ": config keys differ: " + ", ".join(config_lib.differing_keys(old, new))
    except ValueError:
        differ = " (unreadable)"  # treated as another config
    if not config.overwrite:
        raise ValueError(
            f"{workdir} holds the outputs of a different config ({path}{differ}); use another "
            "workdir, or set config.overwrite=True to delete them")
    return True


def claim_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
    """Record the config in WORKDIR/config.json; refuse a workdir of another config.

    With config.overwrite, the other config's outputs (checkpoints, summaries, results) are
    deleted first; nothing else in the workdir is touched.
    """
    if check_workdir(config, workdir):
        logging.warning("overwriting %s: deleting the outputs of its previous config", workdir)
        for name in (checkpoints.CHECKPOINT_DIR, summaries.SUMMARY_DIR):
            shutil.rmtree(workdir / name, ignore_errors=True)
        for name in (results.RESULTS_FILE, results.PREDICTIONS_FILE, PROGRAM_FILE, CONFIG_FILE):
            (workdir / name).unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_files.write_json(workdir / CONFIG_FILE, json.loads(config_lib.identity_json(config)))


def program_members(config: ml_collections.ConfigDict) -> list[tuple[int, Member]]:
    """(sweep index, Member) of the members this program trains."""
    sweep = inputs_lib.sweep_members(config)
    indices = config_lib.parse_member_indices(config.member_indices, len(sweep))
    indices = list(range(len(sweep))) if indices is None else indices
    chosen = list(zip(indices, select_members(sweep, indices)))
    wrong = sorted({m.experiment for _, m in chosen} - {config.experiment})
    if wrong:
        raise ValueError(f"config.sweep.experiment has {wrong}, but a program runs one experiment "
                         f"(config.experiment={config.experiment!r})")
    return chosen


# ---------------------------------------------------------------------------------------------
# Runners (cached per process, so the compiled programs of `programs.build_programs` are too)
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _runner(strategy: str, num_members: int, device_ids: tuple[int, ...], group_size: int = 0
            ) -> packing.Runner:
    by_id = {d.id: d for d in jax.devices()}  # global with several processes
    return packing.make_runner(strategy, num_members, [by_id[i] for i in device_ids], group_size)


# ---------------------------------------------------------------------------------------------
# The program
# ---------------------------------------------------------------------------------------------

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                       data: ExperimentData | None = None) -> pathlib.Path:
    """Train and evaluate this config's members; returns the path of WORKDIR/results.csv.

    Resumes from WORKDIR's last checkpoint when there is one; returns at once when results.csv
    already holds every member. `data` replaces `load_experiment(...)` (tests, custom data).
    The whole run holds WORKDIR's lock (`workdir_lock`): a second process on the same workdir
    is refused with `LockHeld`, naming the holder, before it reads or writes anything there.
    With several processes (jax.distributed) process 0 holds the lock and writes the files;
    the workdir decisions are its, agreed by all (`processes`).
    """
    with processes.held_by_writer(lambda: workdir_lock.hold(workdir, what="workdir")):
        return _train_and_evaluate(config, workdir, data=data)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                        data: ExperimentData | None = None) -> pathlib.Path:
    config_lib.validate(config)
    workdir = pathlib.Path(workdir).absolute()
    chosen = program_members(config)
    members = [m for _, m in chosen]
    results_path = workdir / results.RESULTS_FILE
    if processes.agree(lambda: not check_workdir(config, workdir) and results.is_complete(
            results_path, [m.member_id for m in members])):
        logging.info("%s is complete; nothing to do", results_path)
        return results_path

    # Every input is loaded and checked before the workdir is claimed: a bad source, dataset or
    # split leaves the workdir as it was.
    model = state_lib.build_model(config.model.to_dict(), config.dropout_rate)
    sources, pretrained = inputs_lib.resolve_sources(config, members, model)
    if data is None:  # the writer first: it may build the dataset that the others then read
        data = processes.writer_first(inputs_lib.load_data, config)
    members_data = [data.member_data(m.p_art, m.fold, m.seed) for m in members]
    inputs_lib.check_data(data, members, members_data, config.image_size)
    pad_to = inputs_lib.sweep_lengths(config, data) if config.pad_to_sweep else None
    devices = packing.select_devices(config.execution.num_devices)
    host_devices.check_platform(devices[0].platform,
                                require_accelerator=config.execution.require_accelerator)
    processes.on_writer(claim_workdir, config, workdir)  # also a barrier: config.json is written
    arrays = packing.pack_member_arrays(members_data, batch_size=config.batch_size,
                                        eval_batch_size=config.eval_batch_size, pad_to=pad_to)
    batch, steps = packing.train_layout(members_data, config.batch_size, pad_to)

    execution = memory_lib.resolve_execution(config, platform=devices[0].platform,
                                             num_members=len(members), num_devices=len(devices),
                                             batch_size=batch)
    strategy = execution.strategy
    runner = _runner(strategy, len(members), tuple(d.id for d in devices), execution.group_size)
    spec = ProgramSpec.from_config(config, batch_size=batch, steps_per_epoch=steps,
                                   remat=execution.remat)
    programs = build_programs(spec, runner)
    logging.info("%d members, strategy %s on %d %s device(s); batch %d, %d steps/epoch, "
                 "%d epochs", len(members), strategy, len(devices), devices[0].platform, batch,
                 steps, config.num_epochs)

    rows = []
    for (index, member) in chosen:
        rows.append({"member_index": index, **member.as_row(),
                     "preprocessing": sources[member.source][1]})
    table = {"members": rows, "model": config.model.to_dict(), "image_size": config.image_size,
             "config_sha256": hashlib.sha256(config_lib.identity_json(config).encode()).hexdigest()}
    table = json.loads(json.dumps(table))  # tuples -> lists, as it reads back from JSON
    processes.on_writer(atomic_files.write_json, workdir / PROGRAM_FILE, {
        "strategy": strategy, "group_size": runner.group_size,
        "remat": execution.remat, "platform": devices[0].platform,
        "devices": [d.id for d in devices], "batch_size": batch, "steps_per_epoch": steps,
        "member_devices": {row["member_id"]: runner.device_of(i).id for i, row in enumerate(rows)},
        "processes": processes.count(), "member_processes": {
            row["member_id"]: runner.device_of(i).process_index for i, row in enumerate(rows)}})

    ckpt = checkpoints.ProgramCheckpoints(workdir, keep=config.keep_checkpoints)
    writer = None
    try:
        train, best, start = _restore_or_init(ckpt, runner, programs, table=table,
                                              inits=_member_inits(members, sources),
                                              pretrained=pretrained)
        device_data = runner.put_members(arrays)
        pool = runner.put_shared(step_lib.DevicePool(images=np.asarray(data.pool.images),
                                                     labels=np.asarray(data.pool.labels, np.int32)))
        writer = summaries.Summaries(workdir, rows, config.num_epochs * steps,
                                     config.progress_every_secs, write=processes.is_writer())
        ctx = ProgramContext(config=config, workdir=workdir, runner=runner, programs=programs,
                             ckpt=ckpt, writer=writer, table=table, rows=rows, steps=steps,
                             device_data=device_data, pool=pool)
        train, best, epoch = _run_epochs(ctx, train, best, start)
        probs = runner.to_host(programs.predict(train, best, device_data, pool))
        # Only the fields the results need cross to the host, never the whole state.
        final = types.SimpleNamespace(**runner.to_host(dict(
            epoch=best.epoch, val_loss=best.val_loss, epochs_trained=train.epochs_trained,
            nonfinite=train.nonfinite)))
        processes.on_writer(_write_results, ctx, data, arrays, probs, final, epoch)
    finally:
        ckpt.close()
        if writer is not None:
            writer.close()
    return results_path


@dataclasses.dataclass(frozen=True)
class ProgramContext:
    """What a running program's epoch and results helpers share (fixed for the whole run).

    table: the member table stored with every checkpoint; rows: its member rows as built (for
    the summaries and results); device_data, pool: the placed member splits and image pool.
    """

    config: ml_collections.ConfigDict
    workdir: pathlib.Path
    runner: packing.Runner
    programs: Programs
    ckpt: checkpoints.ProgramCheckpoints
    writer: summaries.Summaries
    table: dict[str, Any]
    rows: list[dict[str, Any]]
    steps: int
    device_data: Any
    pool: Any


def _restore_or_init(ckpt: checkpoints.ProgramCheckpoints, runner: packing.Runner,
                     programs: Programs, *, table: dict[str, Any], inits: state_lib.MemberInit,
                     pretrained: Any) -> tuple[Any, Any, int]:
    """(train, best, completed epochs): from the last checkpoint, or freshly initialised from
    `inits` (numpy, stacked members) and `pretrained` (stacked backbones or None)."""
    start = ckpt.latest_epoch() or 0
    if not start:
        pretrained = None if pretrained is None else runner.put_shared(pretrained)
        train, best = programs.init(runner.put_members(inits), pretrained)
        return train, best, 0
    if ckpt.restore_members(start)["members"] != table["members"]:
        raise ValueError(f"{ckpt.directory}: checkpoint members differ from this config's")
    train, best, _ = ckpt.restore(start, *programs.abstract_state, runner)
    logging.info("resumed from epoch %d of %s", start, ckpt.directory)
    return train, best, start


def _run_epochs(ctx: ProgramContext, train: Any, best: Any, start: int) -> tuple[Any, Any, int]:
    """Epochs `start`..num_epochs (or until every member stopped); checkpoints as configured."""
    config, runner, steps = ctx.config, ctx.runner, ctx.steps
    epoch, last_save = start, time.monotonic()
    stopped = np.asarray(runner.to_host(train.stopped), bool)
    while epoch < config.num_epochs and not stopped.all():
        summed = runner.put_members({"loss_sum": np.zeros(len(stopped), np.float32),
                                     "count": np.zeros(len(stopped), np.int32)})
        train, summed = train_epoch(ctx, train, summed, stopped,
                                    lambda s: ctx.writer.step(epoch * steps + s))
        train, best, info = ctx.programs.end_epoch(train, best, ctx.device_data, ctx.pool)
        epoch += 1
        stopped = _log_epoch(ctx, epoch, summed, info, best, train)
        every, secs = config.checkpoint_every_epochs, config.checkpoint_every_secs
        if (epoch == config.num_epochs or stopped.all() or (every and epoch % every == 0)
                or (secs and time.monotonic() - last_save >= secs)):
            ctx.ckpt.save(epoch, train, best, ctx.table)
            last_save = time.monotonic()
    return train, best, epoch


def train_epoch(ctx: ProgramContext, train: Any, summed: Any, stopped: np.ndarray,
                after_step: Callable[[int], None]) -> tuple[Any, Any]:
    """The epoch's `ctx.steps` program steps; nothing crosses to the host (no sync per step).

    Members stopped at the last epoch end are passed as `skip`: the 'loop' strategy does not
    compute them at all (vmap/lax_map cannot skip a member inside the batched program: it runs
    masked no-op steps). `after_step(s)` is called after dispatching step s (1-based), e.g. the
    progress reporter.
    """
    for s in range(1, ctx.steps + 1):
        train, summed = ctx.programs.train_step(train, summed, ctx.device_data, ctx.pool,
                                                skip=stopped)
        after_step(s)
    return train, summed


def _write_results(ctx: ProgramContext, data: ExperimentData, arrays: step_lib.MemberArrays,
                   probs: dict[str, np.ndarray], final: types.SimpleNamespace, epoch: int
                   ) -> None:
    """results.csv and predictions.csv (atomically), and the test AUCs to the summaries.

    `final` holds the host copies of best epoch, best val loss, epochs trained and nonfinite.
    """
    config = ctx.config
    program = {"dataset": config.dataset, "image_size": config.image_size,
               "model_stage_sizes": "-".join(map(str, config.model.stage_sizes)),
               "model_width": config.model.width, "model_dtype": config.model.dtype}
    split_arrays = {s: {"indices": a.indices, "mask": a.mask, "confounded": a.confounded}
                    for s, a in evaluate.all_test_splits(arrays).items()}
    table_df, preds_df = results.build_tables(
        ctx.rows, program, np.asarray(data.pool.labels), data.pool.names, split_arrays, probs,
        final.epoch, final.val_loss, final.epochs_trained, final.nonfinite)
    for test_set in table_df["test_set"].unique():
        sel = table_df["test_set"] == test_set
        aucs = table_df.loc[sel]
        ctx.writer.final(epoch, {f"auc_{test_set}": aucs["auc"].to_numpy(),
                                 f"auc_keras_{test_set}": aucs["auc_keras"].to_numpy()})
    results.write_atomic(preds_df, ctx.workdir / results.PREDICTIONS_FILE)
    path = results.write_atomic(table_df, ctx.workdir / results.RESULTS_FILE)
    logging.info("wrote %s (%d rows)", path, len(table_df))


def _member_inits(members: list[Member], sources: dict[str, tuple[int, str]]
                  ) -> state_lib.MemberInit:
    """Every member's `MemberInit` (seed, source slot, preprocessing), stacked (numpy)."""
    inits = []
    for member in members:
        slot, mode = sources[member.source]
        mean, scale = state_lib.preprocessing_constants(mode)
        inits.append(state_lib.MemberInit(seed=np.int32(member.seed), source_slot=np.int32(slot),
                                          pixel_mean=mean, pixel_scale=np.float32(scale)))
    return packing.stack_trees(inits)


def _log_epoch(ctx: ProgramContext, epoch: int, summed: Any, info: Any, best: Any, train: Any
               ) -> np.ndarray:
    """Summaries and the console line after an epoch; returns the members' stopped flags.

    The epoch's only device-to-host copy: [M] scalars per member (train loss sum and count,
    EpochEnd, best val loss, stopped), in one transfer.
    """
    host = ctx.runner.to_host(dict(summed=summed, info=info, best_val=best.val_loss,
                                   stopped=train.stopped))
    loss_sum, count = host["summed"]["loss_sum"], host["summed"]["count"]
    train_loss = np.where(count > 0, loss_sum / np.maximum(count, 1), np.nan)
    info, stopped = host["info"], host["stopped"]
    ctx.writer.epoch(epoch, {"train_loss": train_loss, "val_loss": info.val_loss,
                             "best_val_loss": host["best_val"], "val_auc": info.val_auc,
                             "val_auc_keras": info.val_auc_keras}, info.active)
    summaries.log_epoch(epoch, ctx.config.num_epochs, train_loss, info.val_loss, info.active,
                        stopped)
    return np.asarray(stopped, bool)
