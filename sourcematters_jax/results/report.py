"""`sourcematters report`: a sweep's results tables -> summary, figures, tests, paper comparison.

    sourcematters report --workdir DIR [--workdir DIR2 ...] [--out OUT] [--compare A B]
    python -m sourcematters_jax.results.report --workdir DIR

Each --workdir is a results.csv, a directory holding one, or a sweep root whose subdirectories hold
them; all are concatenated. Output goes to OUT (default: `report/` next to the first table's
workdir). Everything is computed before anything is written, and files are written to a temporary
directory first and then moved in, so bad input leaves no half-written report. docs/report.md
explains the outputs and the statistics.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from sourcematters_jax import atomic_files
from sourcematters_jax.results import cross as cross_lib, document, figures, paper
from sourcematters_jax.results.compare import DEFAULT_COMPARE, source_tests
from sourcematters_jax.results.load import METRICS, UNITS, ReportInputError, load_results, resolve_unit
from sourcematters_jax.results.stats import DEFAULT_N_BOOT, DEFAULT_N_PERMUTATIONS
from sourcematters_jax.results.summary import summarize, summary_markdown


@dataclasses.dataclass
class Report:
    """Everything the report writes, computed in memory."""

    summary: pd.DataFrame
    summary_md: str
    tests: pd.DataFrame
    comparison: pd.DataFrame
    page: str
    figures: dict  # file stem -> matplotlib Figure
    cross: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # cross_summary
    nonfinite_rows: int = 0  # 'ok' rows with a NaN AUC (listed in the page, warned about)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The report's command-line interface (also used by `sourcematters report`)."""
    p = argparse.ArgumentParser(
        prog="sourcematters report",
        description="Summarise results tables: summary table, figures, permutation tests, paper comparison.",
    )
    p.add_argument("--workdir", action="append", required=True, metavar="DIR",
                   help="results.csv, a workdir holding one, or a sweep root; repeat to concatenate")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: FIRST_WORKDIR/report)")
    p.add_argument("--compare", nargs=2, default=list(DEFAULT_COMPARE), metavar=("A", "B"),
                   help="the two sources to test against each other (default: imagenet radimagenet)")
    p.add_argument("--n-boot", type=_positive_int, default=DEFAULT_N_BOOT,
                   help=f"bootstrap resamples for the 95%% CI (default {DEFAULT_N_BOOT})")
    p.add_argument("--n-permutations", type=_positive_int, default=DEFAULT_N_PERMUTATIONS,
                   help="exact permutation test when the distinct splits number at most this, else this "
                        f"many Monte Carlo splits (default {DEFAULT_N_PERMUTATIONS})")
    p.add_argument("--unit", choices=UNITS, default="auto",
                   help="statistical unit: 'fold' (seeds averaged within a fold), 'run' (every fold x "
                        "seed), or 'auto' (default): fold, unless the table holds a single fold")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and Monte Carlo draws")
    return p


def default_out(first_workdir: str | Path) -> Path:
    """FIRST/report for a directory; the table's directory/report for a results.csv path."""
    p = Path(first_workdir)
    return (p.parent if p.is_file() else p) / "report"


def build_report(
    workdirs: Sequence[str | Path],
    *,
    compare: tuple[str, str] = DEFAULT_COMPARE,
    n_boot: int = DEFAULT_N_BOOT,
    n_permutations: int = DEFAULT_N_PERMUTATIONS,
    seed: int = 0,
    unit: str = "auto",
) -> Report:
    """Read the tables and compute every output (nothing is written)."""
    if n_boot < 1 or n_permutations < 1:
        raise ValueError(f"n_boot and n_permutations must be positive, got {n_boot}, {n_permutations}")
    table = load_results(workdirs)
    cross = cross_lib.cross_summary(table.cross)
    if table.rows.empty:  # only `sourcematters evaluate` tables
        empty = pd.DataFrame()
        return Report(empty, "", empty, empty, document.render_cross_only(table, cross), {}, cross)
    unit = resolve_unit(table.ok, unit)
    summary = summarize(table, n_boot=n_boot, seed=seed, unit=unit)
    tests = paper.with_paper_tests(
        source_tests(table, compare[0], compare[1], n_permutations=n_permutations, seed=seed, unit=unit)
    )
    comparison = paper.paper_comparison(summary)
    figs = {}
    for name, (confounders, test_sets) in figures.layouts_for(summary["confounder"]).items():
        for metric in METRICS:
            figs[f"figure_{name}_{metric}"] = figures.auc_figure(summary, metric, confounders, test_sets)
    if figures.has_paper_overlap(comparison):
        figs["figure_paper_comparison"] = figures.paper_comparison_figure(comparison)
    summary_md = summary_markdown(summary)
    page = document.render(
        table=table, summary_md=summary_md, tests=tests, comparison=comparison,
        figure_files=[f"{stem}.{ext}" for stem in figs for ext in ("png", "pdf")],
        compare=tuple(compare), n_boot=n_boot, n_permutations=n_permutations, seed=seed, unit=unit,
        cross=cross,
    )
    return Report(summary, summary_md, tests, comparison, page, figs, cross=cross,
                  nonfinite_rows=len(table.nonfinite))


def write_report(report: Report, out: str | Path) -> list[Path]:
    """Write every file into a temporary directory next to `out`, then move them into `out`."""

    def write(tmp: Path) -> None:
        if report.summary_md:  # empty when the inputs hold only cross-evaluation tables
            report.summary.to_csv(tmp / "summary.csv", index=False)
            (tmp / "summary.md").write_text("# Summary\n\n" + report.summary_md)
            report.tests.to_csv(tmp / "tests.csv", index=False)
            report.comparison.to_csv(tmp / "paper_comparison.csv", index=False)
        if not report.cross.empty:
            report.cross.to_csv(tmp / "cross_evaluation.csv", index=False)
        for stem, fig in report.figures.items():
            figures.save(fig, tmp / stem)
        (tmp / "report.md").write_text(report.page)

    try:
        return atomic_files.write_into(out, write)
    finally:
        for fig in report.figures.values():
            figures.plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the report; returns 0 on success, 2 on bad input (message on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compare[0] == args.compare[1]:
        parser.error(f"--compare needs two different sources, got {args.compare[0]!r} twice")
    out = Path(args.out) if args.out else default_out(args.workdir[0])
    try:
        report = build_report(args.workdir, compare=tuple(args.compare), n_boot=args.n_boot,
                              n_permutations=args.n_permutations, seed=args.seed, unit=args.unit)
    except ReportInputError as e:
        print(f"sourcematters report: error: {e}", file=sys.stderr)
        return 2
    if report.nonfinite_rows:
        print(f"sourcematters report: warning: {report.nonfinite_rows} row(s) with status 'ok' have a "
              f"NaN AUC; they are left out of the statistics (listed in {out / 'report.md'})",
              file=sys.stderr)
    written = write_report(report, out)
    print(f"wrote {len(written)} files to {out} (start with {out / 'report.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
