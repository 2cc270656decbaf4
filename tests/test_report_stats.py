"""The report's statistics against scipy: permutation t-test, pooled t, percentile bootstrap."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

from sourcematters_jax.results import paper
from sourcematters_jax.results.stats import (
    _all_splits,
    bootstrap_ci,
    cell_rng,
    permutation_ttest,
    pooled_t,
)


def scipy_exact(a, b):
    return st.ttest_ind(a, b, method=st.PermutationMethod(n_resamples=np.inf))


@pytest.mark.parametrize("n_a,n_b", [(5, 5), (4, 4), (3, 6), (5, 4), (2, 2), (6, 7), (2, 8)])
def test_exact_test_equals_scipy_ttest_ind_permutation(n_a, n_b):
    rng = np.random.default_rng(100 * n_a + n_b)
    a = rng.normal(0.7, 0.05, n_a)
    b = rng.normal(0.75, 0.05, n_b)
    ours = permutation_ttest(a, b)
    ref = scipy_exact(a, b)
    assert ours.exact and ours.n_splits == math.comb(n_a + n_b, n_a) == ours.n_resamples
    assert ours.statistic == pytest.approx(float(ref.statistic), rel=1e-12)
    assert ours.pvalue == pytest.approx(float(ref.pvalue), rel=1e-12)


@pytest.mark.filterwarnings("ignore:Precision loss")
def test_exact_test_with_ties_equals_scipy():
    # Many tied values: the tolerance convention for ties must match scipy's.
    a = [0.8, 0.8, 0.7, 0.7, 0.9]
    b = [0.7, 0.7, 0.9, 0.9, 0.9]
    assert permutation_ttest(a, b).pvalue == pytest.approx(float(scipy_exact(a, b).pvalue), rel=1e-12)
    c = [0.5, 0.6, 0.5, 0.6]
    assert permutation_ttest(c, c[::-1]).pvalue == pytest.approx(float(scipy_exact(c, c[::-1]).pvalue))


def test_five_vs_five_has_252_distinct_splits_and_min_p_2_over_252():
    masks = _all_splits(5, 10)
    assert masks.shape == (252, 10)
    assert len({m.tobytes() for m in masks}) == 252 and (masks.sum(axis=1) == 5).all()
    res = permutation_ttest([0.1, 0.2, 0.3, 0.4, 0.5], [0.6, 0.7, 0.8, 0.9, 1.0])
    assert res.n_splits == 252 and res.exact
    assert res.pvalue == pytest.approx(2 / 252) and round(res.pvalue, 4) == 0.0079
    assert res.statistic < 0  # first group lower -> negative t, as ttest_ind(imagenet, radimagenet)


def test_paper_printed_p_values_are_attainable_exact_values():
    # The printed p-values are exact-test values: multiples of 1/252 (5 vs 5) or 1/70 (4 vs 4).
    printed = paper.paper_tests()
    n_folds = printed["fold_values_keras_auc"].str.count(";") + 1
    for p, n in zip(printed["p_value"], n_folds):
        splits = math.comb(2 * n, n)
        assert abs(p * splits - round(p * splits)) < 1e-6, (p, n)


def test_monte_carlo_when_splits_exceed_resamples_is_seeded_and_close_to_exact():
    rng = np.random.default_rng(7)
    a, b = rng.normal(0.0, 1.0, 8), rng.normal(0.6, 1.0, 8)  # C(16, 8) = 12870 splits
    exact = permutation_ttest(a, b, n_resamples=20000)
    assert exact.exact and exact.n_splits == 12870
    assert exact.pvalue == pytest.approx(float(scipy_exact(a, b).pvalue), rel=1e-12)
    mc = permutation_ttest(a, b, n_resamples=4000, rng=np.random.default_rng(1))
    again = permutation_ttest(a, b, n_resamples=4000, rng=np.random.default_rng(1))
    assert not mc.exact and mc.n_resamples == 4000 and mc.pvalue == again.pvalue
    assert mc.statistic == exact.statistic
    se = math.sqrt(exact.pvalue * (1 - exact.pvalue) / 4000) * 2  # two-sided doubles the error
    assert abs(mc.pvalue - exact.pvalue) < 4 * se + 1 / 4001
    ref = st.ttest_ind(a, b, method=st.PermutationMethod(n_resamples=4000, rng=np.random.default_rng(2)))
    assert abs(mc.pvalue - float(ref.pvalue)) < 8 * se
    assert mc.pvalue >= 2 / 4001


def test_monte_carlo_needs_an_rng_and_groups_need_two_values():
    with pytest.raises(ValueError, match="rng"):
        permutation_ttest(np.arange(8.0), np.arange(8.0) + 1, n_resamples=100)
    with pytest.raises(ValueError, match=">= 2 values"):
        permutation_ttest([0.5], [0.4, 0.6])
    res = permutation_ttest([0.5, 0.5], [0.5, 0.5])
    assert math.isnan(res.statistic) and math.isnan(res.pvalue)


def test_pooled_t_equals_scipy_student_t():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 7))
    np.testing.assert_allclose(pooled_t(a, b), st.ttest_ind(a, b, axis=-1).statistic, rtol=1e-12)


def test_bootstrap_ci_equals_scipy_percentile_bootstrap():
    x = np.array([0.61, 0.72, 0.55, 0.80, 0.67])
    for seed in (0, 5):
        ours = bootstrap_ci(x, rng=np.random.default_rng(seed), n_resamples=2000)
        ref = st.bootstrap((x,), np.mean, n_resamples=2000, method="percentile",
                           rng=np.random.default_rng(seed)).confidence_interval
        np.testing.assert_allclose(ours, (ref.low, ref.high), rtol=1e-12)
    assert all(math.isnan(v) for v in bootstrap_ci(x[:1], rng=np.random.default_rng(0)))


def test_cell_rng_depends_only_on_seed_and_key():
    a = cell_rng(0, "bootstrap", "auc", "tag", "ood", "imagenet", "0.5").random(3)
    b = cell_rng(0, "bootstrap", "auc", "tag", "ood", "imagenet", "0.5").random(3)
    c = cell_rng(1, "bootstrap", "auc", "tag", "ood", "imagenet", "0.5").random(3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_paper_data_ships_with_the_package():
    res = paper.paper_results()
    assert len(res) == 162 and set(res["source"]) == {"imagenet", "radimagenet", "random"}
    assert isinstance(res, pd.DataFrame) and res["keras_auc_mean"].between(0, 1).all()
    tests = paper.paper_tests()
    assert {"confounder", "p_art", "t_vs_radimagenet", "p_value"} <= set(tests.columns)
