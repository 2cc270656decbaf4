r"""`sourcematters sweep` (also `python -m sourcematters_jax.launch`): plan a config's sweep and run its programs.

    sourcematters sweep --config=configs/tag.py:weights=W [--config.KEY=VALUE ...] --root=DIR \
        [--executor=local|slurm|submitit_local|tpu] [budget flags] [executor flags] [--dry_run]

Steps: load the config (same syntax and lock as training), expand its sweep into members, pack
them into programs (members per program from `--members_per_program`, or from the memory
estimate of `launch.memory` against `--device_memory_gib` x `--devices_per_program`), write or
check `DIR/sweep.json`, run the pending programs with the chosen executor, and, once every
program has finished, write `DIR/results.csv` (all programs' rows). Running the same command again
skips finished programs and resumes interrupted ones.

Before anything is written the config's values are validated and its inputs (weights, raw data)
checked; `--dry_run` reports both and writes nothing. A launch holds the root's lock
(DIR/.lock) until it returns: a second launcher on the same root is refused, naming the holder.
Ctrl-C or SIGTERM stops the launcher and its subprocesses; the same command then resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import shlex
import shutil
import sys
from typing import Sequence

import ml_collections

from sourcematters_jax.launch import config_io, preflight
from sourcematters_jax.launch import memory as memory_lib
from sourcematters_jax.launch import plan as plan_lib
from sourcematters_jax.launch import program as program_lib
from sourcematters_jax import cli_errors, workdir_lock

EXECUTORS = ("local", "slurm", "submitit_local", "tpu")


def build_parser(prog: str = "sourcematters sweep") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1],
        epilog="Config overrides: any --config.KEY=VALUE (e.g. --config.batch_size=64, "
               "--config.sweep.seed='(1,2,3)') is applied after loading, as in training; "
               "an unknown KEY is an error.")
    parser.add_argument("--config", required=True, metavar="FILE[:ARG]",
                        help="config file, optionally with its argument: configs/tag.py:p_art=0+1")
    parser.add_argument("--root", required=True, metavar="DIR",
                        help="sweep root: holds sweep.json, program_NNN/ workdirs, results.csv")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: this machine; slurm: a submitit job array; submitit_local: the "
                             "same through submitit's local executor; tpu: gcloud ssh to TPU VMs")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the plan (and TPU commands) without writing or running anything")
    parser.add_argument("--show_members", action="store_true", help="print the member table too")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the root's runs first (sweep.json, program_NNN/, logs/, "
                             "submitit/, results.csv, report/; anything else, e.g. a dataset "
                             "built there, is kept) instead of resuming them")

    budget = parser.add_argument_group("programs: how many members each one trains")
    budget.add_argument("--members_per_program", type=int, default=0, metavar="N",
                        help="fixed program capacity; 0 = estimate it from the memory budget")
    budget.add_argument("--device_memory_gib", type=float, default=0.0, metavar="GIB",
                        help="memory of one target device in GiB (e.g. 80 for an H100, 16 for a TPU "
                             "v5e chip); 0 = this machine's accelerator, or half its RAM on CPU")
    budget.add_argument("--devices_per_program", type=int, default=0, metavar="N",
                        help="devices one program shards its members over; 0 = "
                             "config.execution.num_devices, or this machine's device count")
    budget.add_argument("--platform", choices=("auto",) + memory_lib.PLATFORMS, default="auto",
                        help="platform the programs will run on, for the memory plan (strategy, "
                             "GPU allocator fraction, remat); auto = this machine's. The step is "
                             "always measured on this machine's XLA backend")
    budget.add_argument("--reserve_fraction", type=float, default=0.1, metavar="F",
                        help="share of device memory kept for the data pool and the runtime")

    local = parser.add_argument_group("local executor")
    local.add_argument("--processes", type=int, default=1, metavar="N",
                       help="programs at once; 1 = one after another in this process, N > 1 = "
                            "N subprocesses (logs in ROOT/logs/)")

    slurm = parser.add_argument_group("slurm / submitit_local executors")
    slurm.add_argument("--slurm_partition", default="", metavar="NAME", help="Slurm partition")
    slurm.add_argument("--slurm_account", default="", metavar="NAME", help="Slurm account")
    slurm.add_argument("--timeout_min", type=int, default=24 * 60, metavar="MIN",
                       help="job time limit in minutes (preempted or timed-out jobs are requeued)")
    slurm.add_argument("--nodes", type=int, default=1, metavar="N",
                       help="nodes per program; > 1 runs one program across nodes (jax.distributed)")
    slurm.add_argument("--tasks_per_node", type=int, default=1, metavar="N", help="processes per node")
    slurm.add_argument("--gpus_per_node", type=int, default=0, metavar="N", help="GPUs per node")
    slurm.add_argument("--cpus_per_task", type=int, default=0, metavar="N", help="CPUs per task (0 = Slurm default)")
    slurm.add_argument("--mem_gb", type=int, default=0, metavar="GB", help="host memory per node (0 = Slurm default)")
    slurm.add_argument("--array_parallelism", type=int, default=0, metavar="N",
                       help="at most this many programs at once (0 = no limit)")
    slurm.add_argument("--no_wait", action="store_true",
                       help="return after submitting instead of waiting for the jobs")

    tpu = parser.add_argument_group("tpu executor")
    tpu.add_argument("--tpu_name", action="append", default=[], metavar="NAME",
                     help="a TPU VM to run programs on; repeat for several (programs go round-robin)")
    tpu.add_argument("--tpu_zone", default="", metavar="ZONE", help="zone of the TPU VMs")
    tpu.add_argument("--tpu_project", default="", metavar="PROJECT", help="Google Cloud project (default: gcloud's)")
    tpu.add_argument("--tpu_repo_dir", default="~/sourcematters-jax", metavar="DIR",
                     help="checkout of this repository on every TPU VM worker")
    tpu.add_argument("--tpu_python", default="python3", metavar="PYTHON", help="python on the TPU VM workers")

    parser.add_argument("--distributed", action="store_true",
                        help="jax.distributed.initialize() in every program, for programs spanning "
                             "hosts (slurm executors); implied by --nodes/--tasks_per_node > 1 and "
                             "always on for --executor=tpu")
    return parser


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(arguments for the parser, --config.KEY=VALUE overrides); an override without '=' is an error."""
    args, overrides = [], []
    for arg in argv:
        if arg.startswith("--config."):
            overrides.append(config_io.normalize_override(arg))
        else:
            args.append(arg)
    return args, overrides


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject flag values that cannot work, naming the flag."""
    for flag in ("members_per_program", "devices_per_program", "cpus_per_task", "mem_gb",
                 "gpus_per_node", "array_parallelism"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    for flag in ("processes", "nodes", "tasks_per_node", "timeout_min"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if not 0.0 <= args.reserve_fraction < 1.0:
        parser.error(f"--reserve_fraction must lie in [0, 1), got {args.reserve_fraction}")
    if args.device_memory_gib < 0:
        parser.error(f"--device_memory_gib must be >= 0, got {args.device_memory_gib}")
    if args.executor == "local" and args.distributed:
        parser.error("--distributed needs a multi-host executor (slurm, tpu); to run one program "
                     "across hosts by hand, run `python -m sourcematters_jax.launch.program --distributed` on each")
    if args.executor == "tpu" and not (args.tpu_name and args.tpu_zone):
        parser.error("--executor=tpu needs --tpu_name (one or more) and --tpu_zone")


def capacity_for(args: argparse.Namespace, config) -> tuple[int, dict]:
    """Members per program, and notes on how it was chosen (kept in the manifest)."""
    if args.members_per_program > 0:
        return args.members_per_program, {"members_per_program": "fixed by flag"}
    import jax

    devices = args.devices_per_program or config.execution.num_devices or jax.local_device_count()
    platform = jax.default_backend() if args.platform == "auto" else args.platform
    experiments = [m.experiment for m in plan_lib.sweep_members(config)]
    largest = max(experiments.count(e) for e in set(experiments))
    try:
        estimate = memory_lib.plan_capacity(
            config, platform=platform, devices=devices, num_members=largest,
            device_memory_gib=args.device_memory_gib, reserve_fraction=args.reserve_fraction)
    except ValueError as e:  # one member does not fit: the budget may be this machine's, not the target's
        budget = (f"--device_memory_gib={args.device_memory_gib:g}" if args.device_memory_gib
                  else "this machine's memory (--device_memory_gib=0)")
        raise ValueError(f"{e}; the budget was {budget}: to plan for a larger target device pass "
                         "its memory with --device_memory_gib=GIB (or fix the program size with "
                         "--members_per_program=N)") from None
    return estimate.capacity, {"estimate": list(estimate.lines), "devices_per_program": devices,
                               "device_memory_gib": args.device_memory_gib or "local",
                               "members_per_program": estimate.capacity,
                               "execution": estimate.execution()}


def print_plan(plan: plan_lib.Plan, show_members: bool,
               pending: Sequence[plan_lib.Program] | None = None) -> None:
    pending = {p.index for p in (plan.pending() if pending is None else pending)}
    print(f"sweep {plan.root}: {len(plan.members)} members in {len(plan.programs)} programs "
          f"(capacity {plan.capacity}; {len(pending)} to run)")
    for note, value in plan.notes.items():
        if isinstance(value, list):
            print(f"  {note}:")
            for line in value:
                print(f"    {line}")
        else:
            print(f"  {note}: {value}")
    for p in plan.programs:
        state = "pending" if p.index in pending else "finished"
        print(f"  {p.name}  members {p.member_indices:>9}  ({p.size:3d}, {p.experiment})  {state}")
    if show_members:
        for row in plan_lib.member_table(plan.members):
            print("   ", " ".join(f"{k}={v}" for k, v in row.items()))


def slurm_parameters(args: argparse.Namespace) -> dict:
    params = {"timeout_min": args.timeout_min, "nodes": args.nodes, "tasks_per_node": args.tasks_per_node}
    for key in ("gpus_per_node", "cpus_per_task", "mem_gb"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.executor == "slurm":
        for key in ("partition", "account"):
            if getattr(args, f"slurm_{key}"):
                params[f"slurm_{key}"] = getattr(args, f"slurm_{key}")
        if args.array_parallelism:
            params["slurm_array_parallelism"] = args.array_parallelism
    return params


def plan_sweep(args: argparse.Namespace, config: ml_collections.ConfigDict,
               overrides: Sequence[str], ignore_manifest: bool = False) -> plan_lib.Plan:
    """Choose the capacity and pack the sweep, or check and reuse the root's manifest.

    `ignore_manifest` plans as if the root were empty (`--dry_run --fresh`).
    Raises:
      ValueError: a bad budget, or a different sweep in the root; the message says which.
    """
    root = pathlib.Path(args.root).absolute()
    has_manifest = (root / plan_lib.MANIFEST).is_file() and not ignore_manifest
    capacity, notes = (0, {}) if has_manifest else capacity_for(args, config)
    if not ignore_manifest:
        return plan_lib.make_plan(root, config, max(capacity, 1), config_spec=args.config,
                                  overrides=overrides, notes=notes)
    members = plan_lib.sweep_members(config)
    return plan_lib.Plan(root, config, members, plan_lib.pack(members, max(capacity, 1)),
                         config_spec=args.config, overrides=tuple(overrides),
                         capacity=max(capacity, 1), notes=notes)


RUN_OUTPUTS = (plan_lib.MANIFEST, plan_lib.RESULTS, "logs", "submitit", "report")


def runs_in(root: pathlib.Path) -> list[pathlib.Path]:
    """What `--fresh` deletes: the launcher's outputs in `root` (never anything else)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.name in RUN_OUTPUTS or (p.is_dir() and p.name.startswith("program_")))


def delete_runs(root: pathlib.Path) -> None:
    for path in runs_in(root):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def replaceable_manifest(root: pathlib.Path, config: ml_collections.ConfigDict) -> str:
    """Why `root`'s sweep.json may be replaced ('' if it may not, or there is none).

    A start that failed before any program claimed its workdir (e.g. a bad weights file) leaves
    a manifest that nothing depends on: if it describes another sweep, the corrected command
    replaces it instead of being refused. A manifest with a started program is kept, and
    `make_plan` refuses a different config, naming the keys that differ.
    """
    from sourcematters_jax.train.loop import CONFIG_FILE

    path = root / plan_lib.MANIFEST
    if not path.is_file():
        return ""
    try:
        old = json.loads(path.read_text())
        differ = config_io.diff_configs(old["config"], config_io.config_to_dict(config))
        old_members, names = [r["member_id"] for r in old["members"]], [
            p["name"] for p in old["programs"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a readable sweep manifest ({e!r}); fix or delete it, or "
                         "pass --fresh to start the root over") from None
    if not differ and old_members == [m.member_id for m in plan_lib.sweep_members(config)]:
        return ""
    if any((root / name / CONFIG_FILE).exists() for name in names):
        return ""
    return (f"{path} describes another sweep ({', '.join(differ) or 'member list'} differ), "
            "but no program has started under it")


def run(plan: plan_lib.Plan, args: argparse.Namespace) -> None:
    """Run the plan's pending programs with `args.executor`, then collect the results."""
    print_plan(plan, args.show_members)
    pending = plan.pending()
    distributed = args.distributed or args.nodes > 1 or args.tasks_per_node > 1

    if args.executor == "tpu":
        from sourcematters_jax.launch import tpu

        commands = tpu.tpu_commands(plan, pending, tpus=args.tpu_name, zone=args.tpu_zone,
                                    project=args.tpu_project, repo_dir=args.tpu_repo_dir,
                                    python=args.tpu_python, distributed=True)
        for command in commands:
            print(shlex.join(command))
        if pending:
            plan_lib.write_manifest(plan)
            tpu.run_commands(commands)
    elif not pending:
        pass
    elif args.executor == "local":
        from sourcematters_jax.launch import local

        plan_lib.write_manifest(plan)
        if args.processes > 1:
            local.run_processes(plan, pending, args.processes)
        else:
            local.run_in_process(plan, pending)
    else:
        from sourcematters_jax.launch import slurm

        plan_lib.write_manifest(plan)
        cluster = "slurm" if args.executor == "slurm" else "local"
        jobs = slurm.submit(plan, pending, cluster=cluster, parameters=slurm_parameters(args),
                            distributed=distributed)
        print(f"submitted {len(jobs)} job(s): {', '.join(j.job_id for j in jobs)} "
              f"(logs in {plan.root / 'submitit'})")
        if not args.no_wait:
            slurm.wait(jobs, on_done=lambda job: print(f"job {job.job_id} done", flush=True))

    plan_lib.write_manifest(plan)
    if not plan.pending():
        print(f"all {len(plan.programs)} programs finished; results: {plan_lib.collect_results(plan)}")
    print(f"TensorBoard: tensorboard --logdir {shlex.quote(str(plan.root))}")


def dry_run(args: argparse.Namespace, config: ml_collections.ConfigDict, overrides: Sequence[str],
            missing: Sequence[str]) -> int:
    """Print the plan, what --fresh would delete and the missing inputs; write nothing."""
    root = pathlib.Path(args.root).absolute()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"--root {root} is a file, not a directory")
    replace = "" if args.fresh else replaceable_manifest(root, config)
    if args.fresh:
        doomed = runs_in(root)
        print(f"--fresh would delete {len(doomed)} entr{'y' if len(doomed) == 1 else 'ies'} of "
              f"{root}" + "".join(f"\n  {p.name}" for p in doomed))
    elif replace:
        print(f"{replace}: a real run replaces it")
    plan = plan_sweep(args, config, overrides, ignore_manifest=args.fresh or bool(replace))
    print_plan(plan, args.show_members, pending=plan.programs if args.fresh else None)
    if args.executor == "tpu":
        from sourcematters_jax.launch import tpu

        for command in tpu.tpu_commands(plan, plan.pending(), tpus=args.tpu_name, zone=args.tpu_zone,
                                        project=args.tpu_project, repo_dir=args.tpu_repo_dir,
                                        python=args.tpu_python, distributed=True):
            print(shlex.join(command))
    if missing:
        print(f"missing inputs ({len(missing)}); a real run refuses to start until they exist:")
        for problem in missing:
            print(f"  - {problem}")
    else:
        print("inputs: every weight checkpoint and the raw data are in place")
    return 0


def launch(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    """Validate, check inputs, then (holding the root's lock) plan and run; see the module doc."""
    config = config_io.load_config(args.config, overrides)  # validates the values too
    missing = preflight.missing_inputs(config)
    if args.dry_run:
        return dry_run(args, config, overrides, missing)
    if missing:
        text = "".join(f"\n  - {p}" for p in missing)
        if args.executor in ("local", "submitit_local"):
            raise FileNotFoundError(f"missing inputs, nothing was written:{text}")
        print(f"warning: inputs missing on this machine (the {args.executor} workers must have "
              f"them):{text}", file=sys.stderr)
    with workdir_lock.hold(args.root, what="sweep root") as root:
        if args.fresh:
            delete_runs(root)
        replace = replaceable_manifest(root, config)
        if replace:
            print(f"{replace}: replacing it", flush=True)
            (root / plan_lib.MANIFEST).unlink()
        run(plan_sweep(args, config, overrides), args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        parser_args, overrides = split_overrides(argv)
    except ValueError as e:
        parser.error(str(e))
    args = parser.parse_args(parser_args)
    check_args(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from sourcematters_jax.launch import local

    local.launcher_allocates_lazily()  # planning must not take the GPU its children train on
    program_lib.setup_job()
    with cli_errors.terminate_on_sigterm():
        return cli_errors.guard(parser.prog, launch, args, overrides)


if __name__ == "__main__":
    sys.exit(main())
