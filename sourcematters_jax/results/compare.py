"""Source A vs source B permutation t-tests per confounder, test set and p_art (the study's tests).

Unit: the fold (seeds averaged within a fold first; or each run with unit='run', see
load.resolve_unit), so with one seed per fold this is exactly the study's
`ttest_ind(imagenet_folds, radimagenet_folds, permutations=10000)`. Folds are treated as
independent samples, as the study did (ttest_ind, not a paired test), although both sources are
fine-tuned on the same folds.
"""

from __future__ import annotations

import math

import pandas as pd

from sourcematters_jax.results import naming
from sourcematters_jax.results.load import METRICS, ResultsTable, resolve_unit, unit_values
from sourcematters_jax.results.stats import DEFAULT_N_PERMUTATIONS, cell_rng, permutation_ttest

DEFAULT_COMPARE = ("imagenet", "radimagenet")
TEST_COLUMNS = [
    "confounder", "test_set", "p_art", "metric", "source_a", "source_b", "n_a", "n_b",
    "mean_a", "mean_b", "t", "p_value", "method", "n_splits", "n_resamples", "unit", "note",
]


def source_tests(
    table: ResultsTable,
    source_a: str = DEFAULT_COMPARE[0],
    source_b: str = DEFAULT_COMPARE[1],
    *,
    n_permutations: int = DEFAULT_N_PERMUTATIONS,
    seed: int = 0,
    unit: str = "fold",
) -> pd.DataFrame:
    """One row per metric and (confounder, test set, p_art) where either source has a run.

    t > 0 means source_a scored higher. A cell where a source is missing or has fewer than two
    folds keeps its row with t and p empty and a note saying why.
    """
    if source_a == source_b:
        raise ValueError(f"--compare needs two different sources, got {source_a!r} twice")
    unit = resolve_unit(table.ok, unit)
    rows = []
    for metric in METRICS:
        folds = unit_values(table.ok, metric, unit)
        folds = folds[folds["source"].isin([source_a, source_b])]
        wanted = table.rows[table.rows["source"].isin([source_a, source_b])]
        keys = wanted[["experiment", "test_set", "p_art"]].drop_duplicates()
        for key in keys.itertuples(index=False):
            conf, test_set, p_art = key
            cell = folds[(folds["experiment"] == conf) & (folds["test_set"] == test_set)
                         & (folds["p_art"] == p_art)]
            a = cell.loc[cell["source"] == source_a, "value"].to_numpy(dtype=float)
            b = cell.loc[cell["source"] == source_b, "value"].to_numpy(dtype=float)
            row = {
                "confounder": conf, "test_set": test_set, "p_art": p_art, "metric": metric,
                "source_a": source_a, "source_b": source_b, "n_a": a.size, "n_b": b.size,
                "mean_a": a.mean() if a.size else math.nan, "mean_b": b.mean() if b.size else math.nan,
                "t": math.nan, "p_value": math.nan, "method": "", "n_splits": 0, "n_resamples": 0, "unit": unit,
                "note": "",
            }
            short = [s for s, v in ((source_a, a), (source_b, b)) if v.size < 2]
            if short:
                row["note"] = f"needs >= 2 {unit}s per source; too few for " + ", ".join(short)
            else:
                rng = cell_rng(seed, "permutation", metric, conf, test_set, naming.fmt_p(p_art))
                res = permutation_ttest(a, b, n_resamples=n_permutations, rng=rng)
                row.update(t=res.statistic, p_value=res.pvalue, n_splits=res.n_splits,
                           n_resamples=res.n_resamples, method="exact" if res.exact else "monte_carlo")
                if math.isnan(res.statistic):
                    row["note"] = "all values equal: t undefined"
            rows.append(row)
    out = pd.DataFrame(rows, columns=TEST_COLUMNS)
    if out.empty:
        return out
    c = {k: i for i, k in enumerate(naming.order_confounders(out["confounder"]))}
    t = {k: i for i, k in enumerate(naming.order_test_sets(out["test_set"]))}
    m = {k: i for i, k in enumerate(("auc_keras", "auc"))}
    order = pd.DataFrame({"m": out["metric"].map(m), "c": out["confounder"].map(c),
                          "t": out["test_set"].map(t), "p": out["p_art"]})
    return out.loc[order.sort_values(["m", "c", "t", "p"]).index].reset_index(drop=True)
