"""Read results tables (one or many workdirs) into one validated frame, and reduce runs to folds.

Input contract (docs/architecture.md): one row per member and test set with at least the member
fields `experiment, source, p_art, fold, seed`, plus `test_set, auc, auc_keras`; `status` is
optional ('ok' assumed). Rows whose status is not 'ok' are kept apart: they never enter a
statistic, but the report counts and lists them.

Statistical unit (`unit_values`): the fold by default. Seeds of one fold are averaged first, so
every n in the report is a number of folds, as in the study (one seed per fold). A table that holds
a single fold (e.g. the demo: one fold, three seeds) has no between-fold spread at all; there
`unit='auto'` takes each run (fold x seed) as the unit instead, and the report says so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

RESULTS_FILENAME = "results.csv"
KEY_COLUMNS = ("experiment", "source", "p_art", "fold", "seed", "test_set")
METRICS = ("auc", "auc_keras")
REQUIRED_COLUMNS = KEY_COLUMNS + METRICS
CROSS_COLUMNS = ("trained_on", "evaluated_on")  # written by `sourcematters evaluate`
CELL = ["experiment", "test_set", "source", "p_art"]  # one point of a figure
P_ART_DECIMALS = 6  # p_art values equal to 6 decimals are the same cell


class ReportInputError(ValueError):
    """A results table is missing, unreadable, empty or inconsistent; the message names the file."""


@dataclasses.dataclass(frozen=True)
class ResultsTable:
    """All rows read (`rows`, with a `source_file` column), split into usable and failed runs."""

    rows: pd.DataFrame
    files: tuple[Path, ...]
    # Rows of cross-evaluation tables (`sourcematters evaluate`: trained_on / evaluated_on
    # columns): members on another config's test sets; kept out of every training statistic.
    cross: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> pd.DataFrame:
        return self.rows[self.rows["status"] == "ok"]

    @property
    def failed(self) -> pd.DataFrame:
        """One row per failed (non-ok) member and test set."""
        return self.rows[self.rows["status"] != "ok"]

    @property
    def nonfinite(self) -> pd.DataFrame:
        """'ok' rows with a NaN or infinite AUC (auc or auc_keras): kept out of every statistic,
        like failed rows, and reported (e.g. a test set with one class has no AUC)."""
        ok = self.ok
        bad = ~np.isfinite(ok[list(METRICS)].to_numpy(dtype=float)).all(axis=1)
        return ok[bad]

    @property
    def datasets(self) -> tuple[str, ...]:
        """The distinct values of the optional `dataset` column (empty if it is absent)."""
        if "dataset" not in self.rows.columns:
            return ()
        return tuple(sorted(str(d) for d in self.rows["dataset"].dropna().unique()))


def find_tables(path: str | Path) -> list[Path]:
    """The results.csv files a --workdir names.

    A file is taken as is; a directory holding results.csv gives that file; any other directory is
    a sweep root and gives every results.csv below it (sorted, so concatenation is reproducible).
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise ReportInputError(f"{p}: no such file or directory")
    if (p / RESULTS_FILENAME).is_file():
        return [p / RESULTS_FILENAME]
    found = sorted(q for q in p.rglob(RESULTS_FILENAME) if q.is_file())
    if not found:
        raise ReportInputError(f"{p}: no {RESULTS_FILENAME} in this directory or below it")
    return found


def read_table(path: Path) -> pd.DataFrame:
    """One results table, typed and checked; every error names the file (and column)."""
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError as e:
        raise ReportInputError(f"{path}: empty file, no header ({e})") from e
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise ReportInputError(f"{path}: cannot read as CSV: {e}") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ReportInputError(
            f"{path}: missing column(s) {missing}; a results table needs {list(REQUIRED_COLUMNS)}"
        )
    if df.empty:
        raise ReportInputError(f"{path}: the table has a header but no rows")
    if "status" not in df.columns:
        df["status"] = "ok"
    df["status"] = df["status"].fillna("missing").astype(str).str.strip()
    if "evaluated_on" in df.columns:
        missing = [c for c in CROSS_COLUMNS if c not in df.columns or df[c].isna().any()]
        if missing:
            raise ReportInputError(f"{path}: a cross-evaluation table needs {list(CROSS_COLUMNS)} "
                                   f"on every row; {missing} missing or empty")
    for col in ("experiment", "source", "test_set"):
        if df[col].isna().any():
            raise ReportInputError(f"{path}: column {col!r} has empty values")
        df[col] = df[col].astype(str).str.strip()
    df["test_set"] = df["test_set"].str.lower()
    for col in ("p_art", "fold", "seed") + METRICS:
        values = pd.to_numeric(df[col], errors="coerce")
        # Member fields must be present; a metric may be empty (e.g. a failed run), not text.
        bad = values.isna() if col not in METRICS else values.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ReportInputError(
                f"{path}: column {col!r} has a non-numeric or empty value "
                f"({df[col].iloc[row]!r} on line {row + 2} of the file)"
            )
        if col in ("fold", "seed"):
            if not np.all(values == np.round(values)):
                raise ReportInputError(f"{path}: column {col!r} must hold integers")
            values = values.astype(int)
        df[col] = values.astype(float) if col not in ("fold", "seed") else values
    df["p_art"] = df["p_art"].round(P_ART_DECIMALS)
    df["source_file"] = str(path)
    return df


def load_results(paths: Sequence[str | Path]) -> ResultsTable:
    """Read and concatenate every table the paths name (see `find_tables`).

    Exact duplicate rows (the same table reached twice) are dropped; two rows for the same member
    and test set with different values are an error naming both files.
    """
    if not paths:
        raise ReportInputError("no results table given")
    files: list[Path] = []
    for p in paths:
        for f in find_tables(p):
            if f.resolve() not in {g.resolve() for g in files}:
                files.append(f)
    df = pd.concat([read_table(f) for f in files], ignore_index=True)
    is_cross = (df["evaluated_on"].notna() if "evaluated_on" in df.columns
                else pd.Series(False, index=df.index))
    cross = _unique_rows(df[is_cross], list(KEY_COLUMNS) + list(CROSS_COLUMNS))
    rows = _unique_rows(df[~is_cross].drop(columns=list(CROSS_COLUMNS), errors="ignore"),
                        list(KEY_COLUMNS))
    if rows.empty and cross.empty:
        raise ReportInputError(f"no rows in {[str(f) for f in files]}")
    return ResultsTable(rows=rows, files=tuple(files), cross=cross)


def _unique_rows(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Drop exact duplicates; raise naming the files if one key has two different results."""
    values = key + list(METRICS) + ["status"]
    df = df.drop_duplicates(subset=values, keep="first")
    clash = df[df.duplicated(subset=key, keep=False)]
    if not clash.empty:
        first = clash.iloc[0]
        same = clash[(clash[key] == first[key]).all(axis=1)]
        raise ReportInputError(
            "conflicting rows for the same member and test set "
            f"({', '.join(f'{k}={first[k]}' for k in key)}) in {sorted(set(same['source_file']))}; "
            f"{clash[key].drop_duplicates().shape[0]} such key(s) in all"
        )
    return df.reset_index(drop=True)


UNITS = ("auto", "fold", "run")


def resolve_unit(ok_rows: pd.DataFrame, unit: str = "auto") -> str:
    """'fold' or 'run'. 'auto' is 'fold' unless the usable rows hold a single fold, then 'run'."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")
    if unit != "auto":
        return unit
    return "fold" if ok_rows["fold"].nunique() > 1 else "run"


def unit_values(ok_rows: pd.DataFrame, metric: str, unit: str = "fold") -> pd.DataFrame:
    """Per cell and unit: the metric of one fold (mean over its seeds) or of one run.

    Non-finite metric values are dropped first. Columns: experiment, test_set, source, p_art,
    fold, seed (only for unit 'run'), value, n_seeds (runs averaged into the value).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if unit not in ("fold", "run"):
        raise ValueError(f"unit must be 'fold' or 'run' here, got {unit!r}")
    finite = ok_rows[np.isfinite(ok_rows[metric].to_numpy(dtype=float))]
    by = CELL + (["fold"] if unit == "fold" else ["fold", "seed"])
    return finite.groupby(by, sort=True)[metric].agg(value="mean", n_seeds="size").reset_index()


def cells(frame: pd.DataFrame) -> Iterable[tuple[tuple, pd.DataFrame]]:
    """(experiment, test_set, source, p_art) groups of a frame, in sorted order."""
    return frame.groupby(CELL, sort=True)
