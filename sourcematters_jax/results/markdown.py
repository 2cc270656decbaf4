"""Plain GitHub-flavoured Markdown tables (no tabulate dependency). Missing values print as '–'."""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

MISSING = "–"


def fmt(value: Any, digits: int = 3) -> str:
    """A cell: floats to `digits` decimals, NaN/None as the missing mark, the rest as str."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING
        return f"{value:.{digits}f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    try:
        if pd.isna(value):
            return MISSING
    except (TypeError, ValueError):
        pass
    return str(value).replace("|", "\\|")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """A Markdown table; rows are already ordered."""
    head = "| " + " | ".join(str(h) for h in header) + " |"
    rule = "|" + "|".join("---" for _ in header) + "|"
    body = ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in rows]
    return "\n".join([head, rule, *body]) + "\n"


def frame(df: pd.DataFrame, digits: int = 3) -> str:
    """A whole DataFrame as a Markdown table (floats numpy-typed are handled as floats)."""
    rows = [[v.item() if hasattr(v, "item") else v for v in r] for r in df.itertuples(index=False)]
    return table(list(df.columns), rows, digits)
