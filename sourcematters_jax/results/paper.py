"""The study's reported numbers (shipped as package data) and the user-vs-paper comparison.

`paper/paper_results.csv`: mean Keras-compatible AUC per confounder, test set, source and p_art,
with how precisely each was read (exact from the authors' notebooks, or read off the figure).
`paper/paper_imagenet_ood_folds.csv`: the authors' per-fold ImageNet o.o.d. values and the printed
ImageNet-vs-RadImageNet t and p. Paper numbers are Keras-compatible AUCs, so the comparison uses
`auc_keras` only.
"""

from __future__ import annotations

import io
from importlib import resources

import numpy as np
import pandas as pd

from sourcematters_jax.results import naming

PAPER_RESULTS = "paper_results.csv"
PAPER_TESTS = "paper_imagenet_ood_folds.csv"
KEYS = ["confounder", "test_set", "source", "p_art"]
COMPARISON_COLUMNS = KEYS + ["user_mean", "user_sd", "user_n", "paper_mean", "difference", "paper_precision"]


def _read(name: str) -> pd.DataFrame:
    text = resources.files("sourcematters_jax.results").joinpath("paper", name).read_text()
    df = pd.read_csv(io.StringIO(text))
    df["p_art"] = df["p_art"].astype(float).round(6)
    return df


def paper_results() -> pd.DataFrame:
    """The study's mean Keras-compatible AUCs: confounder, test_set, source, p_art, keras_auc_mean, precision."""
    return _read(PAPER_RESULTS)


def paper_tests() -> pd.DataFrame:
    """The authors' printed ImageNet-vs-RadImageNet o.o.d. tests: confounder, p_art, folds, t, p."""
    return _read(PAPER_TESTS)


def paper_comparison(summary: pd.DataFrame) -> pd.DataFrame:
    """Per cell: the user's mean Keras-compatible AUC over folds, the paper's mean, user - paper.

    Covers every cell of the user's table and every paper cell of the confounders the user ran, so
    a cell the user has not run shows an empty user_mean (and a source the paper lacks an empty
    paper_mean); neither is ever filled with zero.
    """
    user = summary[KEYS + ["auc_keras_mean", "auc_keras_sd", "auc_keras_n"]].rename(
        columns={"auc_keras_mean": "user_mean", "auc_keras_sd": "user_sd", "auc_keras_n": "user_n"}
    )
    paper = paper_results().rename(columns={"keras_auc_mean": "paper_mean", "precision": "paper_precision"})
    paper = paper[paper["confounder"].isin(set(user["confounder"]))]
    out = user.merge(paper, on=KEYS, how="outer")
    out["user_n"] = out["user_n"].fillna(0).astype(int)
    out.loc[out["user_n"] == 0, "user_mean"] = np.nan
    out["difference"] = out["user_mean"] - out["paper_mean"]
    c = {k: i for i, k in enumerate(naming.order_confounders(out["confounder"]))}
    t = {k: i for i, k in enumerate(naming.order_test_sets(out["test_set"]))}
    s = {k: i for i, k in enumerate(naming.order_sources(out["source"]))}
    order = pd.DataFrame({"c": out["confounder"].map(c), "t": out["test_set"].map(t),
                          "s": out["source"].map(s), "p": out["p_art"]})
    return out.loc[order.sort_values(["c", "t", "s", "p"]).index, COMPARISON_COLUMNS].reset_index(drop=True)


def with_paper_tests(tests: pd.DataFrame) -> pd.DataFrame:
    """Add the authors' printed t and p (`paper_t`, `paper_p`) to matching test rows.

    They exist for ImageNet vs RadImageNet, o.o.d., Keras-compatible AUC; for RadImageNet vs
    ImageNet the printed t changes sign. Other rows get empty values.
    """
    out = tests.copy()
    out["paper_t"] = np.nan
    out["paper_p"] = np.nan
    if out.empty:
        return out
    printed = paper_tests().set_index(["confounder", "p_art"])
    for i, r in out.iterrows():
        pair = (r["source_a"], r["source_b"])
        if r["metric"] != "auc_keras" or r["test_set"] != "ood" or set(pair) != {"imagenet", "radimagenet"}:
            continue
        key = (r["confounder"], r["p_art"])
        if key in printed.index:
            sign = 1.0 if pair == ("imagenet", "radimagenet") else -1.0
            out.at[i, "paper_t"] = sign * float(printed.loc[key, "t_vs_radimagenet"])
            out.at[i, "paper_p"] = float(printed.loc[key, "p_value"])
    return out
