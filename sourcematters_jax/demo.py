"""`sourcematters demo`: the study's source comparison on built-in synthetic data, in minutes on a CPU.

    sourcematters demo [--root=workdirs/demo] [--fresh] [--config=configs/demo.py[:ARG]] [--config.KEY=VALUE ...]

What it runs (configs/demo.py): first the two pretrained sources, each pretrained by `sourcematters
pretrain` on a built-in synthetic source dataset (natural: colour objects and textures;
radiology: grey images of several modalities) into ROOT/sources/ on the first run and reused
after. Then the tag confounder at p_art 0 / 0.5 / 1 x sources natural, radiology and random init x
three seeds, a tiny ResNet on 64 px images for 20 epochs, through the same launcher as a real sweep
(`launch`: plan, manifest, programs, resume). Then the report (`sourcematters report --compare
natural radiology`: summary table, figures, permutation tests between the two pretrained
sources) and a console table of i.i.d. vs o.o.d. AUC per source and p_art. The shortcut shows as
o.o.d. AUC at p_art=1 far below p_art=0 while i.i.d. AUC stays high. The synthetic datasets are
built once into ROOT/tfds. Running it again skips finished programs (--fresh retrains the
fine-tuning; it keeps ROOT/tfds and the pretrained ROOT/sources).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import logging
import os
import pathlib
import shlex
import shutil
import statistics
import sys
import time
from collections import defaultdict
from typing import Sequence

from sourcematters_jax import log_setup

DEFAULT_ROOT = "workdirs/demo"
DATA_DIR = "tfds"  # the synthetic dataset is built into ROOT/tfds unless --config.data_dir says otherwise


def default_config_path() -> str:
    from sourcematters_jax import configs

    return str(pathlib.Path(configs.__file__).resolve().parent / "demo.py")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sourcematters demo", allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__.split("\n\n", 1)[1],
        epilog="Any --config.KEY=VALUE overrides a field of the demo config (e.g. "
               "--config.num_epochs=3 for a quicker, weaker run).")
    parser.add_argument("--root", default=DEFAULT_ROOT, metavar="DIR",
                        help=f"output directory (default {DEFAULT_ROOT}, relative to the current one)")
    parser.add_argument("--config", default=None, metavar="FILE[:ARG]",
                        help="config file and argument (default: configs/demo.py of this checkout), "
                             "e.g. configs/demo.py:seed=1+2+3+4+5")
    parser.add_argument("--fresh", action="store_true",
                        help="delete --root's runs and report first (keeping its built datasets, "
                             "ROOT/tfds, and pretrained sources, ROOT/sources) instead of resuming")
    parser.add_argument("--pretrain_override", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the sources' pretraining config (configs/pretrain.py "
                             "tiny recipe), e.g. num_epochs=1; repeatable")
    parser.add_argument("--members_per_program", type=int, default=0, metavar="N",
                        help="members trained together in one program (default: all of them)")
    parser.add_argument("--quiet", action="store_true", help="no training progress, only the summary")
    return parser


Table = dict[str, dict[float, dict[str, list[float]]]]


def auc_table(results_csv: pathlib.Path) -> Table:
    """source -> p_art -> test set ('iid', 'ood') -> member AUCs (exact ROC-AUC), from results.csv."""
    table: Table = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with open(results_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("status", "ok") == "ok" and row["test_set"] in ("iid", "ood"):
                source = row.get("source", "")
                table[source][float(row["p_art"])][row["test_set"]].append(float(row["auc"]))
    return table


def format_auc_table(table: Table) -> str:
    """A short console table: mean +- sd of i.i.d. and o.o.d. AUC per source and p_art, and per
    source the verdict on the shortcut."""

    def cell(values: list[float]) -> str:
        if not values:
            return "      -      "
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.3f} ± {sd:.3f}"

    n = max((len(v) for by_p in table.values() for row in by_p.values() for v in row.values()),
            default=0)
    width = max([len("source")] + [len(s) for s in table])
    lines = [f"  {'source':<{width}}  p_art   i.i.d. AUC      o.o.d. AUC      "
             f"(mean ± sd over {n} members, exact ROC-AUC)"]
    for source in sorted(table):
        for p_art in sorted(table[source]):
            row = table[source][p_art]
            lines.append(f"  {source:<{width}}  {p_art:<5g}   {cell(row['iid'])}   {cell(row['ood'])}")
    for source in sorted(table):
        by_p = table[source]
        lo, hi = min(by_p, default=None), max(by_p, default=None)
        if lo is None or hi == lo or not by_p[lo]["ood"] or not by_p[hi]["ood"]:
            continue
        drop = statistics.fmean(by_p[lo]["ood"]) - statistics.fmean(by_p[hi]["ood"])
        name = f"  {source}: " if source else "  "
        if drop > 0.2:
            lines.append(f"{name}o.o.d. AUC falls by {drop:.2f} from p_art={lo:g} to p_art={hi:g}: "
                         "the models learned the tag (the shortcut), not the disease.")
        else:
            lines.append(f"{name}o.o.d. AUC changes by {-drop:+.2f} from p_art={lo:g} to "
                         f"p_art={hi:g}: no clear shortcut in this run (train longer: "
                         "--config.num_epochs).")
    return "\n".join(lines)


_NOISY = ("matplotlib", "PIL")  # loggers whose INFO lines the demo never shows


class _DropScalarEcho(logging.Filter):
    """The epoch lines already say how training goes: drop clu's echo of every logged scalar and
    TFDS's note on the dataset's (intentionally) custom configuration. The demo's own filter, on
    top of `log_setup`'s (set by `program.setup_job`): a training job's console shows the scalars,
    and the TFDS note is a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return ("logging_writer" not in record.pathname
                and not record.getMessage().startswith("Using custom data configuration"))


def _setup(quiet: bool) -> None:
    """Console logging (training progress) and, as for every training job, one XLA device per core."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        force=True)
    # TensorFlow only writes TensorBoard files here; this keeps its oneDNN banner off the console.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from sourcematters_jax.launch import program

    program.setup_job()  # before JAX starts its backend
    logging.getLogger("absl").addFilter(_DropScalarEcho())
    if quiet:
        import tensorflow_datasets as tfds
        from absl import logging as absl_logging

        tfds.disable_progress_bar()

        absl_logging.set_verbosity(absl_logging.WARNING)
        logging.getLogger().setLevel(logging.WARNING)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the demo; returns the exit status. The process's logger levels (which `_setup` and
    --quiet change) are given back on return, so an in-process caller keeps its own logging."""
    with log_setup.restoring_levels("jax", *_NOISY):
        return _run(list(sys.argv[1:] if argv is None else argv))


def _run(argv: list[str]) -> int:
    overrides = [a for a in argv if a.startswith("--config.")]
    args = build_parser().parse_args([a for a in argv if not a.startswith("--config.")])
    _setup(args.quiet)
    start = time.time()

    from sourcematters_jax.launch import config_io, local
    from sourcematters_jax.launch import plan as plan_lib
    from sourcematters_jax import demo_sources
    from sourcematters_jax.results import report

    root = pathlib.Path(args.root).absolute()
    if not any(o.startswith("--config.data_dir=") for o in overrides):
        overrides.append(f"--config.data_dir={root / DATA_DIR}")
    spec = args.config or default_config_path()
    try:
        config = config_io.load_config(spec, overrides)
    except config_io.LOAD_ERRORS as e:
        print(f"sourcematters demo: error: {config_io.error_message(e)}", file=sys.stderr)
        return 2
    if args.fresh and root.exists():
        for path in root.iterdir():  # keep data and sources: --fresh retrains, it does not rebuild
            if path.name not in (DATA_DIR, demo_sources.SOURCES_DIR):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    try:
        overrides += demo_sources.ensure_sources(config, root, config.data_dir,
                                                 [config_io.normalize_override(o)
                                                  for o in args.pretrain_override],
                                                 quiet=args.quiet)
        config = config_io.load_config(spec, overrides)
    except (*config_io.LOAD_ERRORS, FileExistsError) as e:
        print(f"sourcematters demo: error: {config_io.error_message(e)}", file=sys.stderr)
        return 2
    members = plan_lib.sweep_members(config)
    capacity = args.members_per_program or len(members)
    try:
        plan = plan_lib.make_plan(root, config, capacity, config_spec=spec, overrides=overrides,
                                  notes={"members_per_program": f"{capacity} (demo)"})
    except ValueError as e:  # the root holds another demo's runs
        print(f"sourcematters demo: error: {e} (or pass --fresh)", file=sys.stderr)
        return 2
    print(f"sourcematters demo: {len(members)} members ({config.experiment} confounder on "
          f"{config.dataset}, p_art {sorted({m.p_art for m in members})}, sources "
          f"{sorted({m.source for m in members})}, seeds {sorted({m.seed for m in members})}), "
          f"{config.image_size} px, ResNet {tuple(config.model.stage_sizes)} x width "
          f"{config.model.width}, {config.num_epochs} epochs, in {len(plan.programs)} program(s) "
          f"-> {root}", flush=True)
    plan_lib.write_manifest(plan)
    pending = plan.pending()
    if not pending:
        print(f"  all {len(plan.programs)} program(s) already finished (--fresh starts over)", flush=True)
    elif len(pending) < len(plan.programs):
        print(f"  {len(plan.programs) - len(pending)} program(s) already finished; running the "
              f"other {len(pending)}", flush=True)
    # --quiet: the launcher's per-program lines and TFDS's dataset-build notes (printed to stdout)
    # are swallowed too; errors still reach stderr.
    hush = contextlib.redirect_stdout(io.StringIO()) if args.quiet else contextlib.nullcontext()
    with hush:
        local.run_in_process(plan, pending)
    results = plan_lib.collect_results(plan)
    if results is None:
        print("sourcematters demo: no program finished", file=sys.stderr)
        return 1

    report_dir = root / "report"
    compare = [s for s in demo_sources.DEMO_SOURCES if s in config.sweep.source]
    with hush:
        print("sourcematters demo: writing the report", flush=True)
        status = report.main(["--workdir", str(results), "--out", str(report_dir)]
                             + (["--compare", *compare] if len(compare) == 2 else []))
    figures = sorted(report_dir.rglob("*.png")) if status == 0 else []

    print()
    print(format_auc_table(auc_table(results)))
    print()
    print(f"  results table  {results}")
    print(f"  report         {report_dir / 'report.md'}" + ("" if status == 0 else "  (FAILED)"))
    for figure in figures:
        print(f"  figure         {figure}")
    print(f"  TensorBoard    tensorboard --logdir {shlex.quote(str(root))}")
    print(f"  done in {time.time() - start:.0f} s")
    return 0 if status == 0 else status


if __name__ == "__main__":
    sys.exit(main())
