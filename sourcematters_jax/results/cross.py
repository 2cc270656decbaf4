"""Cross-evaluation tables (`sourcematters evaluate`): members on another config's test sets.

Rows come from `ResultsTable.cross` (tables with trained_on / evaluated_on columns). They never
enter the training statistics: a tag member's AUC on the denoising o.o.d. test is not a
denoising result. The summary is per (trained_on, source, p_art) x (evaluated_on, test_set):
mean and sample SD over the members with status 'ok', and n.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sourcematters_jax.results import markdown, naming
from sourcematters_jax.results.load import METRICS

ROW_KEYS = ["trained_on", "source", "p_art"]
COL_KEYS = ["evaluated_on", "test_set"]


def cross_summary(cross: pd.DataFrame) -> pd.DataFrame:
    """One row per (trained_on, source, p_art, evaluated_on, test_set): n and mean/sd per metric."""
    columns = ROW_KEYS + COL_KEYS + ["n"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "sd")]
    ok = cross[cross["status"] == "ok"] if not cross.empty else cross
    if ok.empty:
        return pd.DataFrame(columns=columns)
    grouped = ok.groupby(ROW_KEYS + COL_KEYS, sort=True)
    out = grouped.size().rename("n").to_frame()
    for metric in METRICS:
        values = grouped[metric]
        out[f"{metric}_mean"] = values.mean()
        out[f"{metric}_sd"] = values.std(ddof=1)
    return out.reset_index()[columns]


def cross_markdown(summary: pd.DataFrame, metric: str) -> str:
    """A Markdown table: rows trained_on / source / p_art, a column per evaluated_on x test set."""
    if summary.empty:
        return "No cross-evaluation row has status 'ok'.\n"
    cols = summary[COL_KEYS].drop_duplicates().sort_values(COL_KEYS)
    col_keys = [tuple(c) for c in cols.itertuples(index=False)]
    header = ["trained on", "source", "p_art"] + [
        f"{ev} {naming.TEST_SET_LABELS.get(ts, ts)}" for ev, ts in col_keys]
    cells = summary.set_index(ROW_KEYS + COL_KEYS)
    rows = []
    for key in summary[ROW_KEYS].drop_duplicates().itertuples(index=False):
        row = [key.trained_on, key.source, naming.fmt_p(key.p_art)]
        for col in col_keys:
            k = tuple(key) + col
            if k not in cells.index:
                row.append(None)
                continue
            c = cells.loc[k]
            sd = "" if np.isnan(c[f"{metric}_sd"]) else f" ± {c[f'{metric}_sd']:.3f}"
            row.append(f"{c[f'{metric}_mean']:.3f}{sd} (n={int(c['n'])})")
        rows.append(row)
    return markdown.table(header, rows)
