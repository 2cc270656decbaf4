"""Summary table: mean, SD, n and bootstrap 95% CI per confounder x test set x source x p_art.

The unit is the fold (seeds averaged within a fold first, see load.unit_values), or the run when
`unit='run'`: `<metric>_n` is a number of units, `<metric>_sd` the sample SD (ddof=1) across
them, `<metric>_ci_low/high` the percentile bootstrap 95% CI of the mean (nan with fewer than two
units); the `unit` column says which. A cell that only has failed runs is listed with n = 0 and empty statistics, never with zeros.
`<metric>_n_nonfinite` counts the cell's 'ok' rows whose metric is NaN/inf (left out of n): the
Markdown shows them as "k NaN", so they never read as cells that were not run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sourcematters_jax.results import markdown, naming
from sourcematters_jax.results.load import CELL, METRICS, ResultsTable, resolve_unit, unit_values
from sourcematters_jax.results.stats import DEFAULT_N_BOOT, bootstrap_ci, cell_rng

METRIC_LABELS = {"auc": "binary ROC-AUC", "auc_keras": "Keras-compatible AUC"}
OUT_KEYS = ["confounder", "test_set", "source", "p_art"]


def _sort(df: pd.DataFrame) -> pd.DataFrame:
    """Study order: confounder, test set, source (paper sources first), p_art."""
    c = {k: i for i, k in enumerate(naming.order_confounders(df["confounder"]))}
    t = {k: i for i, k in enumerate(naming.order_test_sets(df["test_set"]))}
    s = {k: i for i, k in enumerate(naming.order_sources(df["source"]))}
    keys = pd.DataFrame({"c": df["confounder"].map(c), "t": df["test_set"].map(t),
                         "s": df["source"].map(s), "p": df["p_art"]})
    return df.loc[keys.sort_values(["c", "t", "s", "p"]).index].reset_index(drop=True)


def summarize(
    table: ResultsTable, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0, unit: str = "fold"
) -> pd.DataFrame:
    """One row per cell present in the table (ok or failed runs). See the module docstring."""
    unit = resolve_unit(table.ok, unit)
    rows = table.rows
    all_cells = rows[CELL].drop_duplicates()
    ok = table.ok
    n_runs = ok.groupby(CELL).size().rename("n_runs")
    n_failed = table.failed.groupby(CELL).size().rename("n_failed")
    out = all_cells.set_index(CELL).join(n_runs).join(n_failed).fillna(0).astype(int)
    for metric in METRICS:
        nonfinite = ok[~np.isfinite(ok[metric].to_numpy(dtype=float))].groupby(CELL).size()
        out = out.join(nonfinite.rename(f"{metric}_n_nonfinite"))
        out[f"{metric}_n_nonfinite"] = out[f"{metric}_n_nonfinite"].fillna(0).astype(int)
        folds = unit_values(ok, metric, unit)
        stats = {}
        for key, g in folds.groupby(CELL, sort=True):
            v = g["value"].to_numpy(dtype=float)
            rng = cell_rng(seed, "bootstrap", metric, *key[:3], naming.fmt_p(key[3]))
            lo, hi = bootstrap_ci(v, rng=rng, n_resamples=n_boot)
            stats[key] = {
                f"{metric}_mean": float(v.mean()),
                f"{metric}_sd": float(v.std(ddof=1)) if v.size > 1 else math.nan,
                f"{metric}_n": int(v.size),
                f"{metric}_ci_low": lo,
                f"{metric}_ci_high": hi,
            }
        columns = [f"{metric}_{s}" for s in ("mean", "sd", "n", "ci_low", "ci_high")]
        index = pd.MultiIndex.from_tuples(list(stats), names=CELL) if stats else out.index[:0]
        sdf = pd.DataFrame([stats[k] for k in stats], index=index, columns=columns, dtype=float)
        out = out.join(sdf)
        out[f"{metric}_n"] = out[f"{metric}_n"].fillna(0).astype(int)
    out = out.reset_index().rename(columns={"experiment": "confounder"})
    out["unit"] = unit
    return _sort(out)


def _cell_text(row: pd.Series, metric: str) -> str:
    n = int(row[f"{metric}_n"])
    notes = [f"{int(row['n_failed'])} failed"] if row["n_failed"] else []
    nan = int(row.get(f"{metric}_n_nonfinite", 0))
    if nan:
        notes.append(f"{nan} NaN")  # ran 'ok' but has no AUC: not the same as not run
    if n == 0:
        return markdown.MISSING + (f" ({', '.join(notes)})" if notes else "")
    sd = row[f"{metric}_sd"]
    text = f"{row[f'{metric}_mean']:.3f}" + (f" ± {sd:.3f}" if np.isfinite(sd) else "") + f" (n={n})"
    return text + "".join(f", {note}" for note in notes)


def summary_markdown(summary: pd.DataFrame) -> str:
    """Wide view: per metric, confounder and test set, a source x p_art grid of 'mean ± SD (n)'.

    The p_art columns are the study's grid plus any other value present, so a missing cell of a
    partial sweep shows as '–'.
    """
    parts = []
    unit = summary["unit"].iloc[0] if len(summary) else "fold"
    for metric in METRICS:
        parts.append(f"### {METRIC_LABELS[metric]} (`{metric}`): mean ± SD over {unit}s (n {unit}s)\n")
        for conf in naming.order_confounders(summary["confounder"]):
            sub = summary[summary["confounder"] == conf]
            grid = naming.p_art_grid(sub["p_art"])
            sources = naming.order_sources(sub["source"])
            for test_set in naming.order_test_sets(sub["test_set"]):
                st = sub[sub["test_set"] == test_set]
                parts.append(f"**{naming.confounder_title(conf)}, {naming.TEST_SET_LABELS.get(test_set, test_set)}**\n")
                header = ["source"] + [f"p_art={naming.fmt_p(p)}" for p in grid]
                body = []
                for src in sources:
                    ss = st[st["source"] == src].set_index("p_art")
                    body.append([naming.source_label(src)] + [
                        _cell_text(ss.loc[p], metric) if p in ss.index else markdown.MISSING for p in grid
                    ])
                parts.append(markdown.table(header, body))
    return "\n".join(parts)
