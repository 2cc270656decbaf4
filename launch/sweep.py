r"""`sourcematters sweep` (also `python -m launch`): plan a config's sweep and run its programs.

    sourcematters sweep --config=configs/tag.py:weights=W [--config.KEY=VALUE ...] --root=DIR \
        [--executor=local|slurm|submitit_local|tpu] [budget flags] [executor flags] [--dry_run]

Steps: load the config (same syntax and lock as training), expand its sweep into members, pack
them into programs (members per program from `--members_per_program`, or from the memory
estimate of `launch.memory` against `--device_memory_gib` x `--devices_per_program`), write or
check `DIR/sweep.json`, run the pending programs with the chosen executor, and, once every
program has finished, write `DIR/results.csv` (all programs' rows). Running the same command again
skips finished programs and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import shlex
import sys
from typing import Sequence

from launch import config_io
from launch import memory as memory_lib
from launch import plan as plan_lib
from launch import program as program_lib

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
                     "across hosts by hand, run `python -m launch.program --distributed` on each")
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
    estimate = memory_lib.plan_capacity(
        config, platform=platform, devices=devices, num_members=largest,
        device_memory_gib=args.device_memory_gib, reserve_fraction=args.reserve_fraction)
    return estimate.capacity, {"estimate": list(estimate.lines), "devices_per_program": devices,
                               "device_memory_gib": args.device_memory_gib or "local",
                               "members_per_program": estimate.capacity,
                               "execution": estimate.execution()}


def print_plan(plan: plan_lib.Plan, show_members: bool) -> None:
    pending = {p.index for p in plan.pending()}
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


def plan_sweep(args: argparse.Namespace, overrides: Sequence[str]) -> plan_lib.Plan:
    """Load the config, choose the capacity and pack the sweep (or check the root's manifest).

    Raises:
      FileNotFoundError, KeyError, ValueError: bad config, override, budget or a different sweep
        in the root; the message says which.
    """
    config = config_io.load_config(args.config, overrides)
    root_has_manifest = (pathlib.Path(args.root) / plan_lib.MANIFEST).is_file()
    capacity, notes = (0, {}) if root_has_manifest else capacity_for(args, config)
    return plan_lib.make_plan(args.root, config, max(capacity, 1), config_spec=args.config,
                              overrides=overrides, notes=notes)


def run(plan: plan_lib.Plan, args: argparse.Namespace) -> None:
    """Run the plan's pending programs with `args.executor`, then collect the results."""
    print_plan(plan, args.show_members)
    pending = plan.pending()
    distributed = args.distributed or args.nodes > 1 or args.tasks_per_node > 1

    if args.executor == "tpu":
        from launch import tpu

        commands = tpu.tpu_commands(plan, pending, tpus=args.tpu_name, zone=args.tpu_zone,
                                    project=args.tpu_project, repo_dir=args.tpu_repo_dir,
                                    python=args.tpu_python, distributed=True)
        for command in commands:
            print(shlex.join(command))
        if not args.dry_run and pending:
            plan_lib.write_manifest(plan)
            tpu.run_commands(commands)
    elif args.dry_run or not pending:
        pass
    elif args.executor == "local":
        from launch import local

        plan_lib.write_manifest(plan)
        if args.processes > 1:
            local.run_processes(plan, pending, args.processes)
        else:
            local.run_in_process(plan, pending)
    else:
        from launch import slurm

        plan_lib.write_manifest(plan)
        cluster = "slurm" if args.executor == "slurm" else "local"
        jobs = slurm.submit(plan, pending, cluster=cluster, parameters=slurm_parameters(args),
                            distributed=distributed)
        print(f"submitted {len(jobs)} job(s): {', '.join(j.job_id for j in jobs)} "
              f"(logs in {plan.root / 'submitit'})")
        if not args.no_wait:
            slurm.wait(jobs, on_done=lambda job: print(f"job {job.job_id} done", flush=True))

    if not args.dry_run:
        plan_lib.write_manifest(plan)
        if not plan.pending():
            print(f"all {len(plan.programs)} programs finished; results: {plan_lib.collect_results(plan)}")


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
    program_lib.setup_job()
    try:
        plan = plan_sweep(args, overrides)
    except config_io.LOAD_ERRORS as e:
        print(f"{parser.prog}: error: {config_io.error_message(e)}", file=sys.stderr)
        return 2
    run(plan, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
