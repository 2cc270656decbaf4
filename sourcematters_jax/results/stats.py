"""The report's two statistics: a seeded percentile bootstrap CI of a mean, and a permutation t-test.

Both are written in numpy so their conventions are explicit (and checked against scipy in
tests/test_report_stats.py):

* `bootstrap_ci` draws indices exactly as `scipy.stats.bootstrap(..., method='percentile')` does
  (`rng.integers(0, n, (n_resamples, n))`) and takes linear-interpolated quantiles, so with the same
  Generator it returns scipy's interval bit for bit.
* `permutation_ttest` is the study's test (`scipy.stats.ttest_ind(imnet, radnet, permutations=10000)`
  in the authors' notebook): Student's pooled-variance t, two-sided, p-value from the permutation
  distribution of t over the distinct splits of the pooled values into groups of the observed
  sizes. It enumerates every split when there are at most `n_resamples` of them (exact test; 5 vs 5
  folds gives C(10, 5) = 252 splits and a smallest possible p of 2/252 = 0.0079), else it draws
  `n_resamples` random splits (Monte Carlo, p = (k + 1) / (B + 1)). The two-sided p-value follows
  current scipy (`PermutationMethod`): 2 * min(one-sided p-values), capped at 1, with scipy's relative
  tolerance for ties. For equal group sizes this equals the |t| >= |t_obs| rule of the scipy the
  authors used; for unequal sizes the two can differ slightly.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import zlib

import numpy as np

DEFAULT_N_BOOT = 10_000
DEFAULT_N_PERMUTATIONS = 10_000
CONFIDENCE = 0.95


def bootstrap_ci(
    values: np.ndarray,
    *,
    rng: np.random.Generator,
    n_resamples: int = DEFAULT_N_BOOT,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values` (1-D, finite).

    With fewer than two values there is no spread to resample: the interval is (nan, nan), so a
    single run never shows a misleading zero-width band.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"bootstrap_ci expects a 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci got non-finite values")
    if x.size < 2:
        return (math.nan, math.nan)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    idx = rng.integers(0, x.size, (n_resamples, x.size))
    means = x[idx].mean(axis=-1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def pooled_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Student's two-sample t (pooled variance) along the last axis: (mean a - mean b) / se."""
    n1, n2 = a.shape[-1], b.shape[-1]
    df = n1 + n2 - 2
    va = a.var(axis=-1, ddof=1)
    vb = b.var(axis=-1, ddof=1)
    svar = ((n1 - 1) * va + (n2 - 1) * vb) / df
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a.mean(axis=-1) - b.mean(axis=-1)) / np.sqrt(svar * (1.0 / n1 + 1.0 / n2))


@dataclasses.dataclass(frozen=True)
class PermutationTTest:
    """Result of `permutation_ttest`. `n_splits` is the number of distinct splits, C(n_a+n_b, n_a)."""

    statistic: float
    pvalue: float
    n_a: int
    n_b: int
    n_splits: int
    exact: bool
    n_resamples: int  # splits evaluated: all of them (exact) or the Monte Carlo draws

    @property
    def method(self) -> str:
        if self.exact:
            return f"exact ({self.n_splits} splits)"
        return f"Monte Carlo ({self.n_resamples} random splits of {self.n_splits})"


def _all_splits(n_a: int, n_total: int) -> np.ndarray:
    """Boolean [C(n_total, n_a), n_total] masks: True marks the members of group a."""
    combos = list(itertools.combinations(range(n_total), n_a))
    mask = np.zeros((len(combos), n_total), dtype=bool)
    rows = np.repeat(np.arange(len(combos)), n_a)
    mask[rows, np.asarray(combos, dtype=np.intp).ravel()] = True
    return mask


def _random_splits(n_a: int, n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean [n, n_total] masks from uniformly random permutations (group a = first n_a)."""
    order = np.argsort(rng.random((n, n_total)), axis=-1)
    mask = np.zeros((n, n_total), dtype=bool)
    np.put_along_axis(mask, order[:, :n_a], True, axis=-1)
    return mask


def _t_of_masks(pooled: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """t of every split: row-major boolean indexing keeps each group's values in pooled order."""
    n = mask.shape[0]
    a = np.broadcast_to(pooled, mask.shape)[mask].reshape(n, -1)
    b = np.broadcast_to(pooled, mask.shape)[~mask].reshape(n, -1)
    return pooled_t(a, b)


def permutation_ttest(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_resamples: int = DEFAULT_N_PERMUTATIONS,
    rng: np.random.Generator | None = None,
) -> PermutationTTest:
    """Two-sided permutation test of Student's t between independent samples `a` and `b`.

    Exact (every distinct split) when C(len(a)+len(b), len(a)) <= n_resamples, else Monte Carlo with
    `n_resamples` splits drawn from `rng` (required then). Needs at least two values per group; the
    statistic is nan when every pooled value is equal (no test possible), and then so is p.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.size < 2 or b.size < 2:
        raise ValueError(f"permutation_ttest needs >= 2 values per group, got {a.size} and {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("permutation_ttest got non-finite values")
    observed = float(pooled_t(a, b))
    n_total = a.size + b.size
    n_splits = math.comb(n_total, a.size)
    exact = n_splits <= n_resamples
    if math.isnan(observed):
        return PermutationTTest(math.nan, math.nan, a.size, b.size, n_splits, exact, 0)
    pooled = np.concatenate([a, b])
    if exact:
        masks = _all_splits(a.size, n_total)
    else:
        if rng is None:
            raise ValueError("a Monte Carlo permutation test needs an rng (numpy Generator)")
        masks = _random_splits(a.size, n_total, n_resamples, rng)
    null = _t_of_masks(pooled, masks)
    # scipy's conventions: relative tolerance for ties; +1 correction for random draws only.
    gamma = abs(np.finfo(float).eps * 100 * observed)
    adjust = 0 if exact else 1
    n = len(null)
    p_less = (np.count_nonzero(null <= observed + gamma) + adjust) / (n + adjust)
    p_greater = (np.count_nonzero(null >= observed - gamma) + adjust) / (n + adjust)
    p = float(np.clip(2.0 * min(p_less, p_greater), 0.0, 1.0))
    return PermutationTTest(observed, p, a.size, b.size, n_splits, exact, n)


def cell_rng(seed: int, *key: object) -> np.random.Generator:
    """A Generator for one table cell, from the report seed and the cell's key.

    Seeding per cell (not one stream for the whole table) keeps every cell's CI and Monte Carlo
    p-value the same whichever other cells a (partial) sweep happens to contain.
    """
    digest = zlib.crc32("|".join(str(k) for k in key).encode())
    return np.random.default_rng([int(seed), digest])
