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
JAX's persistent compilation cache is on (`~/.cache/sourcematters_jax/jax` unless
JAX_COMPILATION_CACHE_DIR names another directory).
"""

from sourcematters_jax.host_devices import use_one_host_device_per_core

use_one_host_device_per_core()  # before anything imports JAX

import logging as py_logging  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (get_config(arg)).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, summaries and results.csv.")
flags.mark_flags_as_required(["config", "workdir"])


class _DropLibraryInfo(py_logging.Filter):
    """Keep Orbax's per-save INFO chatter off the console (warnings and errors still show)."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_DropLibraryInfo())
    from sourcematters_jax import compile_cache
    from sourcematters_jax.train import summaries, train_and_evaluate  # after XLA_FLAGS is set

    summaries.hide_accelerators_from_tensorflow()
    compile_cache.enable()
    path = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    print(path)


if __name__ == "__main__":
    app.run(main)
