"""report.md: one Markdown page that indexes the report's files and shows its tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sourcematters_jax import experiments
from sourcematters_jax.results import cross as cross_lib, markdown, naming
from sourcematters_jax.results.load import ResultsTable


UNIT_TEXT = {
    "fold": "Statistical unit: the fold (seeds of a fold are averaged first); n counts folds.",
    "run": "Statistical unit: the run (fold x seed), because the table holds a single fold or --unit run "
           "was given; n counts runs, and a CI then reflects seed-to-seed variation only.",
}


def _tests_section(tests: pd.DataFrame, metric: str) -> str:
    sub = tests[tests["metric"] == metric]
    if sub.empty:
        return "No cell has either compared source.\n"
    rows = []
    for r in sub.itertuples(index=False):
        rows.append([
            naming.confounder_title(r.confounder), naming.TEST_SET_LABELS.get(r.test_set, r.test_set),
            naming.fmt_p(r.p_art), f"{r.n_a} vs {r.n_b}", r.mean_a, r.mean_b, r.t, r.p_value,
            r.method or markdown.MISSING, r.paper_t, r.paper_p, r.note,
        ])
    a, b = sub["source_a"].iloc[0], sub["source_b"].iloc[0]
    header = ["confounder", "test set", "p_art", f"{sub['unit'].iloc[0]}s", f"mean {a}", f"mean {b}", "t", "p",
              "method", "paper t", "paper p", "note"]
    return markdown.table(header, rows, digits=4)


def _failed_section(table: ResultsTable) -> str:
    failed = table.failed
    if failed.empty:
        return "None: every row has status 'ok'.\n"
    cols = [c for c in ("member_id", "experiment", "source", "p_art", "fold", "seed", "status", "source_file")
            if c in failed.columns]
    members = failed[cols].drop_duplicates().copy()
    members["p_art"] = members["p_art"].map(naming.fmt_p)
    return (f"{len(members)} member(s) ({len(failed)} row(s)) are excluded from every statistic:\n\n"
            + markdown.frame(members))


def _nonfinite_section(table: ResultsTable) -> str:
    bad = table.nonfinite
    if bad.empty:
        return ""
    cols = [c for c in ("member_id", "experiment", "source", "p_art", "fold", "seed", "test_set", "auc",
                        "auc_keras", "source_file") if c in bad.columns]
    rows = bad[cols].copy()
    rows["p_art"] = rows["p_art"].map(naming.fmt_p)
    for metric in ("auc", "auc_keras"):  # 'NaN', not the missing mark '–' ("not run")
        rows[metric] = [f"{v:.3f}" if np.isfinite(v) else "NaN" for v in rows[metric].astype(float)]
    return (f"**Warning:** {len(bad)} row(s) with status 'ok' have a NaN AUC (e.g. a test set with a "
            "single class, or predictions that are not finite). They are left out of every statistic "
            "and show as 'k NaN' in the tables, not as cells that were not run:\n\n" + markdown.frame(rows))


SYNTHETIC_DATASETS = (experiments.SYNTHETIC_DATASET,)  # generated in code (the demo, the tests): no paper counterpart


def _comparison_section(comparison: pd.DataFrame, datasets: tuple[str, ...]) -> str:
    """The paper comparison as Markdown: only cells the user ran, and a note on synthetic data."""
    ran = comparison[comparison["user_n"] > 0].copy()
    ran["p_art"] = ran["p_art"].map(naming.fmt_p)
    notes = []
    synthetic = [d for d in datasets if d in SYNTHETIC_DATASETS]
    if synthetic:
        notes.append(f"**These results are on synthetic data ({', '.join(synthetic)})**, not the study's "
                     "chest X-rays or CT: the paper's numbers are shown for orientation only, and a "
                     "difference says nothing about whether the study reproduces.")
    skipped = len(comparison) - len(ran)
    if skipped:
        notes.append(f"{skipped} paper cell(s) of these confounders were not run here and are left out "
                     "(all of them are in `paper_comparison.csv`).")
    body = markdown.frame(ran) if len(ran) else "No cell of the paper was run here.\n"
    return "".join(f"{n}\n\n" for n in notes) + body


def render(
    *,
    table: ResultsTable,
    summary_md: str,
    tests: pd.DataFrame,
    comparison: pd.DataFrame,
    figure_files: list[str],
    compare: tuple[str, str],
    n_boot: int,
    n_permutations: int,
    seed: int,
    unit: str,
    cross: pd.DataFrame | None = None,
) -> str:
    """The whole report page as Markdown (with a cross-evaluation section when `cross` has rows)."""
    ok = table.ok
    a, b = compare
    figs = "\n".join(f"![{f}]({f})" for f in figure_files if f.endswith(".png"))
    nonfinite = _nonfinite_section(table)
    return f"""# Source Matters: report

Inputs ({len(table.files)} table(s)): {", ".join(f"`{f}`" for f in table.files)}

{len(table.rows)} rows; {len(ok)} with status 'ok' from {ok.groupby(["experiment", "source", "p_art", "fold", "seed"]).ngroups} members.
{UNIT_TEXT[unit]}
Bootstrap: percentile, {n_boot} resamples of the {unit}s, seed {seed} (per cell). Tests: Student's
t ({a} minus {b}), two-sided permutation p-value, exact when the distinct splits number at most
{n_permutations}, else Monte Carlo with {n_permutations} random splits. See docs/report.md.

Files: `summary.csv` / `summary.md` (both metrics), `tests.csv`, `paper_comparison.csv`, figures
(PNG and PDF).

## Excluded runs

{_failed_section(table)}
{nonfinite}
## Figures

{figs}

## {a} vs {b}: permutation t-tests, Keras-compatible AUC (the paper's metric)

Paper t and p are the authors' printed values (ImageNet vs RadImageNet, o.o.d.).

{_tests_section(tests, "auc_keras")}
## {a} vs {b}: permutation t-tests, binary ROC-AUC

{_tests_section(tests, "auc")}
## Comparison with the study (Keras-compatible AUC, mean over {unit}s; difference = yours - paper)

{_comparison_section(comparison, table.datasets)}
{cross_section(cross)}## Summary

{summary_md}"""


def cross_section(cross: pd.DataFrame | None) -> str:
    """'## Cross-evaluation' with one table per metric, or '' when there is no such row."""
    if cross is None or cross.empty:
        return ""
    return f"""## Cross-evaluation: members on other configs' test sets

From `sourcematters evaluate` tables (docs/reuse.md); `cross_evaluation.csv` has every cell.
Mean ± SD over members (runs) with status 'ok'. These rows enter no other table or test.

Keras-compatible AUC:

{cross_lib.cross_markdown(cross, "auc_keras")}
Binary ROC-AUC:

{cross_lib.cross_markdown(cross, "auc")}
"""


def render_cross_only(table: ResultsTable, cross: pd.DataFrame) -> str:
    """The page for inputs that hold only cross-evaluation tables."""
    return f"""# Source Matters: report

Inputs ({len(table.files)} table(s)): {", ".join(f"`{f}`" for f in table.files)}

Only cross-evaluation tables ({len(table.cross)} rows): no training results to summarise; pass the
sweep's own results too (another --workdir) for the full report.

{cross_section(cross)}"""
