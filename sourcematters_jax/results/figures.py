"""The study's figures: AUC vs p_art, mean over folds (or runs) with a bootstrap 95% CI band, a line per source.

Layouts (only the confounders present get a column):
  main:  Tag / Denoising / Sex, an o.o.d. row over an i.i.d. row (the paper's first figure);
  noise: Noise in X-ray / Noise in CT / X-ray noise in CT, o.o.d. only (the paper's second);
  other: any confounder outside the study's six, o.o.d. and i.i.d. rows.
Each panel draws exactly one line per source with data in that panel, one marker per p_art that has
at least one fold; a p_art without data has no marker (the line joins the points that exist, as in
the paper's seaborn plots), never a zero. `paper_comparison_figure` overlays the paper's means
(dashed) on the user's (solid) to show at a glance whether a run reproduces the study.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # the report writes files; it never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sourcematters_jax import experiments  # noqa: E402
from sourcematters_jax.results import naming  # noqa: E402
from sourcematters_jax.results.summary import METRIC_LABELS  # noqa: E402

# The paper's two figures: the experiments of each (Experiment.figure), in the study's order.
MAIN = experiments.where(figure="main")
NOISE = experiments.where(figure="noise")
LAYOUTS = {"main": (MAIN, ("ood", "iid")), "noise": (NOISE, ("ood",))}
PANEL_SIZE = (3.4, 2.8)


def layouts_for(confounders) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    """Figure name -> (confounder columns, test-set rows), for the confounders present."""
    present = set(confounders)
    out = {}
    for name, (cols, rows) in LAYOUTS.items():
        chosen = [c for c in cols if c in present]
        if chosen:
            out[name] = (chosen, rows)
    other = [c for c in naming.order_confounders(present) if c not in MAIN + NOISE]
    if other:
        out["other"] = (other, ("ood", "iid"))
    return out


def _grid(n_rows: int, n_cols: int) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(PANEL_SIZE[0] * n_cols, PANEL_SIZE[1] * n_rows + 0.8),
        sharex=True, sharey=True, squeeze=False,
    )
    return fig, axes


def _finish(fig: Figure) -> None:
    """Tight layout that leaves a fixed 0.45 inch strip at the bottom for the legend."""
    fig.tight_layout(rect=(0, 0.45 / fig.get_figheight(), 1, 1))


def _style_panel(ax, ticks, row, col, n_rows, test_set, title, ylabel_metric) -> None:
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(ticks)
    ax.set_xticklabels([naming.fmt_p(p).replace("0.", ".") for p in ticks])
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    if row == 0:
        ax.set_title(title)
    if col == 0:
        ax.set_ylabel(f"{naming.TEST_SET_LABELS.get(test_set, test_set)} {ylabel_metric}")
    if row == n_rows - 1:
        ax.set_xlabel(r"$p_{art}$")


def auc_figure(summary: pd.DataFrame, metric: str, confounders: list[str], test_sets: tuple[str, ...]) -> Figure:
    """Panels (test set rows x confounder columns) of mean `metric` vs p_art with CI bands."""
    styles = naming.source_styles(summary["source"])
    fig, axes = _grid(len(test_sets), len(confounders))
    ticks = naming.p_art_grid(summary.loc[summary["confounder"].isin(confounders), "p_art"])
    drawn = {}
    for r, test_set in enumerate(test_sets):
        for c, conf in enumerate(confounders):
            ax = axes[r, c]
            sub = summary[(summary["confounder"] == conf) & (summary["test_set"] == test_set)
                          & (summary[f"{metric}_n"] > 0)]
            for src in naming.order_sources(sub["source"]):
                d = sub[sub["source"] == src].sort_values("p_art")
                color, marker = styles[src]
                (line,) = ax.plot(d["p_art"], d[f"{metric}_mean"], color=color, marker=marker,
                                  markersize=5, linewidth=1.5, label=naming.source_label(src))
                ax.fill_between(d["p_art"], d[f"{metric}_ci_low"], d[f"{metric}_ci_high"],
                                color=color, alpha=0.2, linewidth=0)
                drawn.setdefault(src, line)
            if sub.empty:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5")
            _style_panel(ax, ticks, r, c, len(test_sets), test_set, naming.confounder_title(conf), "AUC")
    order = naming.order_sources(drawn)
    fig.legend([drawn[s] for s in order], [naming.source_label(s) for s in order],
               loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=max(1, len(order)), frameon=False)
    unit = summary["unit"].iloc[0] if "unit" in summary and len(summary) else "fold"
    sep = "\n" if len(confounders) == 1 else ": "  # a one-column figure is narrow
    fig.suptitle(f"{METRIC_LABELS[metric]}{sep}mean over {unit}s, bootstrap 95% CI")
    _finish(fig)
    return fig


def comparison_panels(comparison: pd.DataFrame) -> list[tuple[str, str]]:
    """(confounder, test set) pairs where the user has a cell and the paper has a number, in order."""
    user = comparison[comparison["user_n"] > 0]
    ref = comparison[comparison["paper_mean"].notna()]
    pairs = set(zip(user["confounder"], user["test_set"])) & set(zip(ref["confounder"], ref["test_set"]))
    return [(c, t) for c in naming.order_confounders(c for c, _ in pairs)
            for t in naming.order_test_sets(t for c2, t in pairs if c2 == c)]


def has_paper_overlap(comparison: pd.DataFrame) -> bool:
    return bool(comparison_panels(comparison))


def paper_comparison_figure(comparison: pd.DataFrame) -> Figure:
    """User means (solid, markers) against the paper's (dashed), Keras-compatible AUC, per panel.

    One panel per (confounder, test set) where both the user and the paper have data (cells the
    paper never reported are in the main figures, not here).
    """
    panels = comparison_panels(comparison)
    n_cols = min(3, max(1, len(panels)))
    n_rows = max(1, -(-len(panels) // n_cols))
    fig, axes = _grid(n_rows, n_cols)
    styles = naming.source_styles(comparison["source"])
    ticks = naming.p_art_grid(comparison["p_art"])
    handles, paper_only = {}, {}
    for i, ax in enumerate(axes.ravel()):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        conf, test_set = panels[i]
        sub = comparison[(comparison["confounder"] == conf) & (comparison["test_set"] == test_set)]
        for src in naming.order_sources(sub["source"]):
            d = sub[sub["source"] == src].sort_values("p_art")
            color, marker = styles[src]
            u = d[d["user_n"] > 0]
            if not u.empty:
                (h,) = ax.plot(u["p_art"], u["user_mean"], color=color, marker=marker, markersize=5,
                               linewidth=1.5, label=naming.source_label(src))
                handles.setdefault(src, h)
            p = d[d["paper_mean"].notna()]
            if not p.empty:
                (h,) = ax.plot(p["p_art"], p["paper_mean"], color=color, linestyle="--", linewidth=1.2,
                               alpha=0.8, label=f"{naming.source_label(src)} (paper)")
                paper_only.setdefault(src, h)
        title = f"{naming.confounder_title(conf)}, {naming.TEST_SET_LABELS.get(test_set, test_set)}"
        _style_panel(ax, ticks, 0, 0, 1, test_set, title, "AUC")
        ax.set_ylabel("Keras-compatible AUC" if i % n_cols == 0 else "")
        bottom = i + n_cols >= len(panels)  # no panel below this one
        ax.set_xlabel(r"$p_{art}$" if bottom else "")
        ax.xaxis.set_tick_params(labelbottom=bottom)
    # Sources the user did not run appear in the legend by their dashed paper line.
    order = naming.order_sources(set(handles) | set(paper_only))
    legend_handles = [handles.get(s, paper_only.get(s)) for s in order]
    labels = [naming.source_label(s) + ("" if s in handles else " (paper only)") for s in order]
    legend_handles.append(plt.Line2D([], [], color="0.3", linestyle="--"))
    fig.legend(legend_handles, labels + ["paper (dashed)"],
               loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=len(legend_handles), frameon=False)
    fig.suptitle("Your run (solid) vs the study's reported means (dashed)")
    _finish(fig)
    return fig


def save(fig: Figure, stem) -> list[str]:
    """Write `stem`.png and `stem`.pdf and close the figure; returns the file names."""
    names = []
    for ext in ("png", "pdf"):
        path = f"{stem}.{ext}"
        fig.savefig(path, dpi=150 if ext == "png" else None, bbox_inches="tight")
        names.append(path)
    plt.close(fig)
    return names
