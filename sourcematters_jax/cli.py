"""The `sourcematters` command: one entry point over the project's own command-line modules.

    sourcematters demo      the synthetic chest X-ray study end to end (sourcematters_jax.demo)
    sourcematters train     train one program from a config    (python -m sourcematters_jax.main)
    sourcematters sweep     plan and launch a config's sweep   (python -m sourcematters_jax.launch)
    sourcematters convert   Keras .h5 weights -> Flax checkpoint (python -m sourcematters_jax.convert_weights)
    sourcematters export    backbone / fine-tuned member -> Keras .h5 (convert_weights.export_cli)
    sourcematters pretrain  pretrain a source backbone on a dataset (python -m sourcematters_jax.pretrain.cli)
    sourcematters report    results tables -> summary, figures, tests (python -m sourcematters_jax.results.report)
    sourcematters evaluate | saliency | features   reuse finished members (sourcematters_jax.reuse.cli)
    sourcematters prepare-lidc  LIDC-IDRI download -> nodule crops (python -m sourcematters_jax.data.prepare_lidc)

Each command is the very module behind it, so `sourcematters X --help` and `python -m MODULE --help`
say the same thing. Modules are imported only when their command runs, so `--help` stays quick.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

PROG = "sourcematters"


def _module_main(module: str, command: str, function: str = "main") -> Callable[[list[str]], int]:
    """Run `module.function(argv)`; a user error it lets through is one line (cli_errors.guard)."""
    def run(argv: list[str]) -> int:
        from sourcematters_jax import cli_errors

        main = getattr(importlib.import_module(module), function)
        return cli_errors.guard(f"{PROG} {command}", main, argv)

    return run


def _train(argv: list[str]) -> int:
    """The training entry point is an absl app: hand it the arguments as its command line.

    absl's own --help lists the flags of the `__main__` module, which here is this console
    script, so help is answered from the training module's docstring and flags instead.
    """
    from absl import flags

    main_module = importlib.import_module("sourcematters_jax.main")
    if any(a in ("-h", "--help", "--helpshort", "-?") for a in argv):
        print(f"usage: {PROG} train --config=FILE[:ARG] --workdir=DIR [--config.KEY=VALUE ...]\n")
        print(main_module.__doc__.strip(), "\n")
        print("flags:\n" + flags.FLAGS.module_help(main_module.__name__))
        print("  --config.KEY=VALUE: override one config field (any field of the config; "
              "an unknown KEY is an error)")
        return 0
    return main_module.run([f"{PROG} train", *argv])


# name -> (what it does, how to run it)
COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "demo": ("run the synthetic chest X-ray study end to end on this machine (minutes on a CPU)",
             _module_main("sourcematters_jax.demo", "demo")),
    "train": ("train one program (members of a config) into a workdir: --config=FILE[:ARG] "
              "--workdir=DIR [--config.KEY=VALUE ...]", _train),
    "sweep": ("plan a config's sweep into programs and run them locally, on Slurm or on TPU VMs",
              _module_main("sourcematters_jax.launch.sweep", "sweep")),
    "convert": ("convert Keras ResNet50 .h5 weights (ImageNet, RadImageNet) into a Flax checkpoint",
                _module_main("sourcematters_jax.convert_weights.cli", "convert")),
    "export": ("a backbone checkpoint or a fine-tuned member -> Keras .h5 (keras-applications)",
               _module_main("sourcematters_jax.convert_weights.export_cli", "export")),
                    "pretrain": ("pretrain a source backbone (ResNet + linear classifier) on a dataset or image folder",
                 _module_main("sourcematters_jax.pretrain.cli", "pretrain")),
    "report": ("summarise results tables: summary, figures, permutation tests, paper comparison",
               _module_main("sourcematters_jax.results.report", "report")),
    "evaluate": ("evaluate finished members on another config's test sets (cross-evaluation)",
                 _module_main("sourcematters_jax.reuse.cli", "evaluate", "evaluate_main")),
    "saliency": ("saliency maps of finished members (Grad-CAM, integrated gradients) and tag scores",
                 _module_main("sourcematters_jax.reuse.cli", "saliency", "saliency_main")),
    "features": ("penultimate features of finished members on a dataset's splits (.npy + index)",
                 _module_main("sourcematters_jax.reuse.cli", "features", "features_main")),
    "prepare-lidc": ("LIDC-IDRI DICOM + annotation XML -> the nodule crops lidc_nodules reads",
                     _module_main("sourcematters_jax.data.prepare_lidc", "prepare-lidc")),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: {PROG} COMMAND [FLAGS]  ({PROG} COMMAND --help explains every flag)", "",
             "Fine-tuning source vs shortcut robustness (Juodelyte et al., 2024) in JAX.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (text, _) in COMMANDS.items()]
    lines += ["", "Start with `sourcematters demo`; docs/launch.md explains configs and launching."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch `sourcematters COMMAND ...` to the command's module; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"{PROG}: unknown command {command!r}; choose from {', '.join(COMMANDS)}\n\n{usage()}",
              file=sys.stderr)
        return 2
    try:  # each command prints its own user errors; this catches Ctrl-C anywhere, e.g. in imports
        return COMMANDS[command][1](rest)
    except KeyboardInterrupt:
        print(f"\n{PROG} {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
