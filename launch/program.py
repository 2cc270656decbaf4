"""Run programs of a launched sweep: the one job every executor (local, Slurm, TPU VM) runs.

    python -m sourcematters_jax.launch.program --root=ROOT --program=3 [--program=7 ...] [--distributed]

reads `ROOT/sweep.json`, rebuilds the sweep's config from its recorded spec (run it from the
directory the sweep was launched from, i.e. the repository root), and trains each listed program
into `ROOT/program_NNN/` with `sourcematters_jax.train.train_and_evaluate`. A finished program
(complete results.csv) is skipped; an interrupted one resumes from its workdir's checkpoints,
which is what `train_and_evaluate` does when they exist. So running a job twice is always safe,
and a preempted Slurm job is simply requeued.

JAX's persistent compilation cache lives in `ROOT/jax_cache/` (JAX_COMPILATION_CACHE_DIR wins): the
sweep's programs share one shape (`config.pad_to_sweep`), so only the first one compiles.

`--distributed` calls `jax.distributed.initialize()` first, for one program spanning several hosts
(a TPU pod slice, a multi-node Slurm allocation): every host runs the same command, and JAX finds
the coordinator from the TPU metadata or the Slurm environment (or from `--coordinator_address`,
`--num_processes` and `--process_id` when given). The members are then sharded over every process's devices and process
0 alone writes the workdir (docs/launch.md, "Several hosts").
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from typing import Sequence

import ml_collections

from sourcematters_jax import log_setup
from sourcematters_jax.launch import plan as plan_lib
from sourcematters_jax.host_devices import use_one_host_device_per_core

log = logging.getLogger(__name__)


def setup_job() -> None:
    """Process set-up of a training job: INFO logging, quiet TF, and on CPU one host device per core.

    The device count mirrors `python -m sourcematters_jax.main` (a CPU program shards its members
    over the cores); XLA reads XLA_FLAGS when the backend starts, so this must run before the
    first JAX computation. An explicit count in XLA_FLAGS is kept.
    """
    use_one_host_device_per_core()
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    if not logging.getLogger().handlers:  # e.g. a submitit job: log to its stderr file
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("jax").setLevel(logging.WARNING)
    log_setup.drop_library_info(logging.getLogger("absl"))  # Orbax's and TFDS's INFO lines


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """`jax.distributed.initialize` (auto-detected on TPU VMs and Slurm when arguments are None).

    Call it before the first JAX computation. CPU cross-process collectives (the member axis
    sharded over several processes' host devices, `process_allgather`) need gloo, which is set
    here (the setting only concerns the CPU backend; harmless on GPU/TPU).
    """
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
    log.info("jax.distributed: process %d of %d, %d global devices", jax.process_index(),
             jax.process_count(), jax.device_count())


def run_program(root: str | pathlib.Path, index: int, *,
                config: ml_collections.ConfigDict | None = None) -> pathlib.Path:
    """Train program `index` of the sweep in `root` unless finished; returns its results.csv path.

    Args:
      root: the sweep root (holds sweep.json).
      index: the program's index in the manifest.
      config: the sweep's config (as launched); None rebuilds it from the manifest's spec.
    """
    plan = plan_lib.load_plan(root, config)
    if not 0 <= index < len(plan.programs):
        raise ValueError(f"program {index} out of range: the sweep in {root} has {len(plan.programs)}")
    program = plan.programs[index]
    workdir = plan.workdir(program)
    if plan.is_finished(program):
        log.info("%s: finished, skipping (%s)", program.name, workdir / plan_lib.RESULTS)
        return workdir / plan_lib.RESULTS
    from sourcematters_jax import compile_cache
    from sourcematters_jax.train import train_and_evaluate

    # Every program of the sweep has the same shapes (config.pad_to_sweep): compile once.
    compile_cache.enable(pathlib.Path(root) / compile_cache.SWEEP_SUBDIR)
    log.info("%s: training members %s (%d, experiment %s) in %s", program.name,
             program.member_indices, program.size, program.experiment, workdir)
    return pathlib.Path(train_and_evaluate(plan.program_config(program), str(workdir)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sourcematters_jax.launch.program",
        description="Train programs of a launched sweep (skips finished ones, resumes interrupted ones).")
    parser.add_argument("--root", required=True, help="sweep root directory holding sweep.json")
    parser.add_argument("--program", type=int, action="append", required=True,
                        help="index of a program to run; repeat to run several one after another")
    add_distributed_flags(parser)
    return parser


# --distributed and the optional jax.distributed.initialize arguments: (name, type, help), type
# None for the switch. One definition for argparse (`add_distributed_flags`) and absl
# (`define_distributed_absl_flags`, python -m sourcematters_jax.main).
DISTRIBUTED_FLAGS = (
    ("distributed", None, "call jax.distributed.initialize() first (a program spanning hosts: "
                          "every process runs the same command; docs/launch.md, 'Several hosts')"),
    ("coordinator_address", str, "host:port of process 0 (default: auto-detected on TPU VMs / "
                                 "Slurm)"),
    ("num_processes", int, "number of processes of the program (default: auto-detected)"),
    ("process_id", int, "this process's index (default: auto-detected)"),
)


def add_distributed_flags(parser: argparse.ArgumentParser) -> None:
    """--distributed and the optional jax.distributed.initialize arguments (for `initialize_distributed`)."""
    for name, kind, text in DISTRIBUTED_FLAGS:
        if kind is None:
            parser.add_argument(f"--{name}", action="store_true", help=text)
        else:
            parser.add_argument(f"--{name}", type=kind, default=None, help=text)


def define_distributed_absl_flags() -> None:
    """The same flags as absl flags (default None / False), owned by the calling module (so its
    --help lists them: this module disclaims them, absl's idiom for flag-defining helpers)."""
    from absl import flags

    flags.disclaim_key_flags()
    define = {None: flags.DEFINE_bool, str: flags.DEFINE_string, int: flags.DEFINE_integer}
    for name, kind, text in DISTRIBUTED_FLAGS:
        define[kind](name, False if kind is None else None, text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    setup_job()
    from sourcematters_jax import cli_errors

    def run_all() -> int:
        if args.distributed:
            initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
        for index in args.program:
            run_program(args.root, index)
        return 0

    with cli_errors.terminate_on_sigterm():  # SIGTERM unwinds: checkpoints close, the lock frees
        return cli_errors.guard(parser.prog, run_all)


if __name__ == "__main__":
    sys.exit(main())
