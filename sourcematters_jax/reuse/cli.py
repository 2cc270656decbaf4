"""`sourcematters evaluate | saliency | features`: reuse a sweep's finished members.

    sourcematters evaluate --workdir SWEEP_OR_PROGRAM [--member ID ...] --config=FILE[:ARG] --out DIR
    sourcematters saliency --workdir SWEEP_OR_PROGRAM [--member ID ...] --images N \\
        --method gradcam|integrated_gradients --out DIR
    sourcematters features --workdir SWEEP_OR_PROGRAM [--member ID ...] --out DIR

Every command loads the best state of each chosen member (all members when --member is not
given) from a finished sweep root or program workdir, checks it against the config (image size,
model), computes everything, and only then writes to --out. `--config.KEY=VALUE` overrides a
field of the config, as for `sourcematters train`. docs/reuse.md explains the outputs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

PROG = "sourcematters"
METHODS = ("gradcam", "integrated_gradients")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _parser(command: str, description: str, *, config_required: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} {command}", description=description,
                                allow_abbrev=False,
                                epilog="Any --config.KEY=VALUE overrides a field of --config "
                                       "(e.g. --config.data_dir=DIR, "
                                       "--config.execution.strategy=loop).")
    p.add_argument("--workdir", required=True, metavar="DIR",
                   help="a sweep root (sweep.json) or a program workdir (config.json) whose "
                        "members are finished")
    p.add_argument("--member", action="append", default=None, metavar="ID",
                   help="member_id to use, e.g. tag-random-p1-f1-s1; repeat for several "
                        "(default: every member)")
    if config_required:
        p.add_argument("--config", required=True, metavar="FILE[:ARG]",
                       help="experiment config whose data and test sets the members run on, "
                            "e.g. configs/denoising.py or configs/demo.py")
    else:
        p.add_argument("--config", default=None, metavar="FILE[:ARG]",
                       help="experiment config whose data the members run on (default: the "
                            "config the members were trained with, from the workdir)")
        p.add_argument("--data_dir", default=None, metavar="DIR",
                       help="TFDS data directory for the members' own config (a program "
                            "workdir's config.json does not record it; a sweep root does)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    return p


def evaluate_parser() -> argparse.ArgumentParser:
    return _parser("evaluate", "Evaluate finished members on the test sets of another experiment "
                   "config (no retraining); writes OUT/results.csv (+ trained_on, evaluated_on) "
                   "and OUT/predictions.csv for `sourcematters report`.", config_required=True)


def saliency_parser() -> argparse.ArgumentParser:
    p = _parser("saliency", "Saliency maps of finished members on test images (clean and "
                "confounded variant side by side), a PNG grid and per-member CSV scores of the "
                "attribution inside the confounder's region.", config_required=False)
    p.add_argument("--images", type=_positive_int, default=4, metavar="N",
                   help="test images per member, shared by all members (default 4)")
    p.add_argument("--method", choices=METHODS, default="gradcam",
                   help="gradcam (last conv stage) or integrated_gradients (input pixels, "
                        "black baseline) (default gradcam)")
    p.add_argument("--steps", type=_positive_int, default=32,
                   help="integrated gradients: path steps (default 32)")
    return p


def features_parser() -> argparse.ArgumentParser:
    return _parser("features", "Penultimate (pooled backbone) features of finished members on "
                   "every split of a dataset: OUT/<member_id>/features.npy and index.csv, for "
                   "linear probes.", config_required=False)


def _split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    overrides = [a for a in argv if a.startswith("--config.")]
    return [a for a in argv if not a.startswith("--config.")], overrides


def _setup() -> None:
    from sourcematters_jax.host_devices import use_one_host_device_per_core

    use_one_host_device_per_core()  # before JAX starts its backend


def _error(command: str, error: Exception) -> int:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    print(f"{PROG} {command}: error: {text}", file=sys.stderr)
    return 2


def _load(args, overrides):
    """(loaded members, config, config description) for the parsed arguments."""
    from sourcematters_jax.launch import config_io
    from sourcematters_jax.reuse import members as members_lib

    loaded = members_lib.load(args.workdir, args.member)
    if args.config:
        config = config_io.load_config(args.config, overrides)
        return loaded, config, f"--config={args.config}"
    if overrides:
        raise ValueError(f"{' '.join(overrides)}: overrides need --config")
    config = loaded[0].program_config(args.data_dir)
    trained = sorted({lm.trained_on for lm in loaded})
    if len(trained) > 1:
        raise members_lib.ReuseInputError(f"the chosen members were trained on {trained}; "
                                          "choose members of one experiment or pass --config")
    return loaded, config, f"the training config of {loaded[0].program.workdir}"


def _run(command: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None, work) -> int:
    """Parse, load the members and config, then work(args, loaded, config, where) -> status.

    Bad input anywhere before the first write (every command computes first) is status 2.
    """
    argv, overrides = _split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    _setup()
    from sourcematters_jax.launch import config_io

    try:
        return work(args, *_load(args, overrides))
    except (*config_io.LOAD_ERRORS, OSError) as e:
        return _error(command, e)


def _model_and_data(loaded, config, where):
    from sourcematters_jax.reuse.evaluate import load_checked_data
    from sourcematters_jax.train.state import build_model

    data = load_checked_data(loaded, config, where)
    return build_model(config.model.to_dict(), config.dropout_rate), data


def _evaluate(args, loaded, config, where) -> int:
    from sourcematters_jax.reuse import evaluate

    table, preds = evaluate.cross_evaluate(loaded, config, where=where)
    path = evaluate.write_tables(table, preds, args.out)
    print(f"wrote {path} ({len(loaded)} members x {table['test_set'].nunique()} test sets of "
          f"{evaluate.evaluated_on(config)})")
    return 0


def _saliency(args, loaded, config, where) -> int:
    from sourcematters_jax import atomic_files
    from sourcematters_jax.reuse import saliency

    model, data = _model_and_data(loaded, config, where)
    result = saliency.compute(loaded, config, data, model, n_images=args.images,
                              method=args.method, steps=args.steps)
    summary = saliency.member_summary(result["table"])
    atomic_files.write_into(args.out, lambda tmp: saliency.write(result, summary, loaded,
                                                                 args.method, tmp))
    cols = ["member_id", "inside_clean", "inside_confounded", "area_fraction", "change_vs_clean"]
    print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {args.out}/saliency_grid.png, summary.csv, scores.csv, scores/, maps.npz "
          f"({args.method}, {len(result['indices'])} images x {len(result['variants'])} variants)")
    return 0


def _features(args, loaded, config, where) -> int:
    from sourcematters_jax import atomic_files
    from sourcematters_jax.reuse import features

    model, data = _model_and_data(loaded, config, where)
    extracted = features.extract(loaded, config, data, model)
    atomic_files.write_into(args.out, lambda tmp: features.write(loaded, extracted, config, tmp))
    dims = sorted({f.shape for f, _ in extracted})
    print(f"wrote features of {len(loaded)} members to {args.out} (members.csv; shapes {dims})")
    return 0


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    return _run("evaluate", evaluate_parser(), argv, _evaluate)


def saliency_main(argv: Sequence[str] | None = None) -> int:
    return _run("saliency", saliency_parser(), argv, _saliency)


def features_main(argv: Sequence[str] | None = None) -> int:
    return _run("features", features_parser(), argv, _features)
