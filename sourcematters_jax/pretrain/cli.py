r"""`sourcematters pretrain`: train a source backbone; its output is a `config.sources.NAME` dir.

    sourcematters pretrain --config=configs/pretrain.py:dataset=NAME --workdir=DIR \
        [--config.KEY=VALUE ...] [--distributed ...]

NAME is a built-in dataset (synthetic_natural, synthetic_radiology), any TFDS dataset, or a path
(with a '/') to a folder of class subfolders (RadImageNet's layout). Rerunning the same command
resumes from the workdir's last checkpoint; a finished run returns at once. The backbone lands in
DIR/backbone (metadata.json + variables/, the format `sourcematters convert` writes): fine-tune
from it with `--config.sources.NAME=DIR/backbone` (docs/pretrain.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sourcematters pretrain", allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__.split("\n\n", 1)[1],
        epilog="Any --config.KEY=VALUE overrides a field of the config (an unknown KEY is an error), "
               "e.g. --config.batch_size=512 --config.num_epochs=30.")
    parser.add_argument("--config", required=True, metavar="FILE[:ARG]",
                        help="config file and argument, e.g. configs/pretrain.py:dataset=synthetic_radiology")
    parser.add_argument("--workdir", required=True, metavar="DIR",
                        help="directory for checkpoints, summaries and the backbone (DIR/backbone)")
    from sourcematters_jax.launch.program import add_distributed_flags

    add_distributed_flags(parser)  # one run spanning several hosts, as launch.program does
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = [a for a in argv if a.startswith("--config.")]
    args = build_parser().parse_args([a for a in argv if not a.startswith("--config.")])
    from sourcematters_jax.launch import config_io, program

    program.setup_job()  # one XLA host device per core on CPU, before JAX starts
    try:
        config = config_io.load_config(args.config, overrides)
    except config_io.LOAD_ERRORS as e:
        print(f"sourcematters pretrain: error: {config_io.error_message(e)}", file=sys.stderr)
        return 2
    if args.distributed:
        program.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    from sourcematters_jax.pretrain.train import pretrain

    try:
        path = pretrain(config, args.workdir)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"sourcematters pretrain: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
