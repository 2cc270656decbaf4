r"""Train and evaluate one program of members: `python -m sourcematters_jax.main`.

  python -m sourcematters_jax.main --config=configs/smoke.py --workdir=/tmp/smoke
  python -m sourcematters_jax.main --config=configs/tag.py:source=imagenet,weights=W \
      --config.batch_size=64 --workdir=runs/tag_imagenet

`--config` is an ml_collections config file (`get_config(arg)`, arg after ':'); `--config.KEY=V`
overrides one field, and a field that does not exist is an error. Rerunning the same command
resumes from the workdir's last checkpoint; a finished workdir (complete results.csv) returns at
once. On CPU the program uses one XLA host device per core unless XLA_FLAGS already says how many
(`--xla_force_host_platform_device_count`): members are sharded over devices, which trains
faster on multi-core CPUs than one device does.

`--distributed` (with --coordinator_address, --num_processes, --process_id where JAX cannot
detect them) runs one program over several processes: every process runs the same command,
the members are sharded over all their devices and process 0 writes the workdir
(docs/launch.md, "Several hosts").

JAX's persistent compilation cache is on (`~/.cache/sourcematters_jax/jax` unless
JAX_COMPILATION_CACHE_DIR names another directory).

Bad input (a misspelt config key, a value the trainer cannot use, a workdir of another config,
a workdir another process is training, missing data or weights, a permission problem) is one
line on stderr and exit status 2; Ctrl-C is exit 130, SIGTERM 143 (the run resumes next time).
"""

from sourcematters_jax.host_devices import use_one_host_device_per_core

use_one_host_device_per_core()  # before anything imports JAX

import sys  # noqa: E402
from typing import Sequence  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from sourcematters_jax import cli_errors, log_setup  # noqa: E402
from sourcematters_jax.launch import program as program_lib  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (get_config(arg)).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and results.csv.")
flags.mark_flags_as_required(["config", "workdir"])
program_lib.define_distributed_absl_flags()  # --distributed, as launch.program has


def check_config_flags(argv: Sequence[str]) -> None:
    """Load `--config` with its `--config.KEY=VALUE` overrides as the launcher does, so a
    misspelt key (with the nearest valid ones), a bad value or a missing file is one clear error
    before absl parses the flags (which would show a traceback).

    Raises:
      FileNotFoundError, KeyError, ValueError: as `launch.config_io.load_config`.
    """
    from sourcematters_jax.launch import config_io

    spec, overrides = None, []
    args = iter(argv)
    for arg in args:
        if arg.startswith("--config."):
            overrides.append(arg)
        elif arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
        elif arg == "--config":
            spec = next(args, None)
    if spec:
        config_io.load_config(spec, overrides)


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    log_setup.drop_library_info(logging.get_absl_handler())  # Orbax's and TFDS's INFO lines
    from sourcematters_jax import compile_cache
    from sourcematters_jax.train import summaries, train_and_evaluate  # after XLA_FLAGS is set

    def train() -> int:
        if FLAGS.distributed:  # before the first JAX computation
            program_lib.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                               FLAGS.process_id)
        summaries.hide_accelerators_from_tensorflow()
        compile_cache.enable()
        print(train_and_evaluate(FLAGS.config, FLAGS.workdir))
        return 0

    with cli_errors.terminate_on_sigterm():
        return cli_errors.guard(argv[0], train)


def run(argv: Sequence[str]) -> int:
    """The command line `argv` (program name first): config checks, then the absl app."""
    status = cli_errors.guard(argv[0], check_config_flags, argv[1:])
    if status:
        return status
    app.run(main, argv=list(argv))  # exits with main's status
    return 0


if __name__ == "__main__":
    sys.exit(run(["python -m sourcematters_jax.main", *sys.argv[1:]]))
