"""Display names and orderings shared by the report's tables and figures.

The paper's sources come first in the paper's order; any other source (a user's own pretrained
weights) follows, sorted by name, and keeps its own name as its label.
"""

from __future__ import annotations

from typing import Iterable

from sourcematters_jax import experiments
from sourcematters_jax.members import P_ART_GRID, PAPER_SOURCES

SOURCE_LABELS = {"imagenet": "ImageNet", "radimagenet": "RadImageNet", "random": "Random init"}
# The study's palette (bokeh HighContrast[3] as the authors assigned it to the sorted sources).
SOURCE_COLORS = {"imagenet": "#004488", "radimagenet": "#BB5566", "random": "#DDAA33"}
EXTRA_COLORS = ("#228833", "#66CCEE", "#AA3377", "#555555", "#EE7733", "#009988", "#CC3311")
SOURCE_MARKERS = {"imagenet": "o", "radimagenet": "X", "random": "s"}
EXTRA_MARKERS = ("^", "D", "v", "P", "*", "<", ">")

TEST_SETS = ("ood", "iid", "clean")
TEST_SET_LABELS = {"ood": "o.o.d.", "iid": "i.i.d.", "clean": "clean"}


def order_sources(sources: Iterable[str]) -> list[str]:
    """Paper sources in paper order, then the others alphabetically (duplicates removed)."""
    present = set(sources)
    return [s for s in PAPER_SOURCES if s in present] + sorted(present - set(PAPER_SOURCES))


def order_confounders(confounders: Iterable[str]) -> list[str]:
    """Study confounders in the study's order, then unknown ones alphabetically."""
    present = set(confounders)
    return [e for e in experiments.NAMES if e in present] + sorted(present - set(experiments.NAMES))


def order_test_sets(test_sets: Iterable[str]) -> list[str]:
    present = set(test_sets)
    return [t for t in TEST_SETS if t in present] + sorted(present - set(TEST_SETS))


def p_art_grid(observed: Iterable[float]) -> list[float]:
    """The study's p_art grid plus any other observed value, sorted."""
    return sorted(set(P_ART_GRID) | {float(p) for p in observed})


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


def confounder_title(confounder: str) -> str:
    """The study's display name (Experiment.title); any other confounder keeps its own name."""
    exp = experiments.EXPERIMENTS.get(confounder)
    return exp.title if exp else confounder


def source_styles(sources: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Colour and marker per source; paper sources keep theirs, others cycle through the extras."""
    styles = {}
    extra = 0
    for s in order_sources(sources):
        if s in SOURCE_COLORS:
            styles[s] = (SOURCE_COLORS[s], SOURCE_MARKERS[s])
        else:
            styles[s] = (EXTRA_COLORS[extra % len(EXTRA_COLORS)], EXTRA_MARKERS[extra % len(EXTRA_MARKERS)])
            extra += 1
    return styles


def fmt_p(p: float) -> str:
    """p_art as a short label: 0, 0.1, 0.5, 1."""
    return f"{float(p):g}"
