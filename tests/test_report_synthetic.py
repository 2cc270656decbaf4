"""A synthetic results-table generator with known values, for the report's tests (and its own checks).

`make_results` writes rows in the results.csv schema of docs/architecture.md. Every AUC is
`cell mean + FOLD_OFFSETS[fold] + SEED_OFFSETS[seed]`; both offset sets sum to zero, so the mean
over folds of a cell (seeds averaged first) is exactly the cell mean. Cell means come from the
paper's reported numbers where the paper has the cell (so a comparison with the paper gives zero
differences), else from a simple formula. `auc` is the Keras value minus AUC_SHIFT, so the two
metrics are distinguishable in every output.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from sourcematters_jax.results import paper

FOLD_OFFSETS = {1: -0.02, 2: -0.01, 3: 0.0, 4: 0.01, 5: 0.02}
SEED_OFFSETS = {812: 0.0, 813: 0.004, 814: -0.004}
AUC_SHIFT = 0.005
P_ARTS = (0.0, 0.1, 0.2, 0.5, 0.8, 1.0)


@functools.lru_cache(maxsize=1)
def _paper_means() -> dict:
    ref = paper.paper_results()
    return {(r.confounder, r.test_set, r.source, round(r.p_art, 6)): r.keras_auc_mean
            for r in ref.itertuples(index=False)}


def cell_mean(confounder: str, test_set: str, source: str, p_art: float) -> float:
    """The known Keras-compatible mean of a cell."""
    hit = _paper_means().get((confounder, test_set, source, round(float(p_art), 6)))
    if hit is not None:
        return float(hit)
    drop = {"imagenet": 0.6, "radimagenet": 0.3, "random": 0.0}.get(source, 0.15)
    base = 0.8 if test_set != "clean" else 0.75
    value = base - drop * p_art if test_set == "ood" else base + 0.1 * p_art
    return float(np.clip(value, 0.05, 0.95))


def make_results(
    *,
    confounders=("tag",),
    sources=("imagenet", "radimagenet", "random"),
    p_arts=P_ARTS,
    folds=(1, 2, 3, 4, 5),
    seeds=(812,),
    test_sets=("iid", "ood", "clean"),
    failed=(),
) -> pd.DataFrame:
    """Rows of a results table; `failed` lists (confounder, source, p_art, fold, seed) members
    whose rows get status 'nonfinite_loss' and NaN metrics."""
    rows = []
    members = itertools.product(confounders, sources, p_arts, folds, seeds)
    for index, (conf, src, p, fold, seed) in enumerate(members):
        member_id = f"{conf}-{src}-p{p:g}-f{fold}-s{seed}"
        bad = (conf, src, p, fold, seed) in set(failed)
        for test_set in test_sets:
            keras = cell_mean(conf, test_set, src, p) + FOLD_OFFSETS[fold] + SEED_OFFSETS[seed]
            rows.append({
                "member_index": index, "member_id": member_id, "experiment": conf, "source": src,
                "p_art": p, "fold": fold, "seed": seed, "test_set": test_set,
                "auc": np.nan if bad else keras - AUC_SHIFT, "auc_keras": np.nan if bad else keras,
                "n_examples": 83, "n_positive": 31, "best_epoch": 3, "epochs_trained": 30,
                "status": "nonfinite_loss" if bad else "ok", "dataset": "synthetic_cxr", "image_size": 64,
            })
    return pd.DataFrame(rows)


def write_results(directory: Path, **kwargs) -> Path:
    """make_results(**kwargs) written as directory/results.csv; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "results.csv"
    make_results(**kwargs).to_csv(path, index=False)
    return path


def test_generator_has_the_schema_and_known_fold_means():
    df = make_results(seeds=(812, 813, 814))
    assert list(df.columns[:8]) == ["member_index", "member_id", "experiment", "source", "p_art",
                                    "fold", "seed", "test_set"]
    assert len(df) == 3 * 6 * 5 * 3 * 3
    cell = df[(df.source == "imagenet") & (df.p_art == 0.5) & (df.test_set == "ood")]
    assert abs(cell["auc_keras"].mean() - 0.378) < 1e-12
    assert np.allclose(cell["auc"], cell["auc_keras"] - AUC_SHIFT)


def test_generator_marks_failed_members():
    df = make_results(failed=[("tag", "imagenet", 0.5, 2, 812)])
    bad = df[df.status != "ok"]
    assert len(bad) == 3 and bad["auc"].isna().all() and set(bad.member_id) == {"tag-imagenet-p0.5-f2-s812"}
