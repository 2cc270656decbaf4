"""Per-member confounder selection: seeded, exact, nested across p_art, independent of other members."""

import itertools

import numpy as np
import pytest

from sourcematters_jax.data import experiment, selection, splits as splits_lib
from sourcematters_jax.data.types import ImagePool, MemberData
from sourcematters_jax.members import P_ART_GRID


def _pool(n, rng, v=2):
    labels = (rng.random(n) < 0.3).astype(np.int32)
    return ImagePool(images=np.zeros((n, v, 4, 4), np.uint8), variants=("clean", "tag")[:v], labels=labels,
                     patient_ids=np.arange(n, dtype=np.int64), names=tuple(f"{i:05d}.png" for i in range(n)))


@pytest.fixture(scope="module")
def fold_experiment():
    rng = np.random.default_rng(0)
    n = 331
    pool = _pool(n, rng)
    is_test = np.zeros(n, bool)
    is_test[:83] = True
    membership = np.zeros((n, 5), np.int8)
    for k in range(5):
        membership[83:, k] = np.where(rng.random(n - 83) < 0.1, 2, 1)
    return experiment.FoldExperiment("tag", pool, membership, is_test)


def _masks(m: MemberData):
    return {s: set(getattr(m, s).indices[getattr(m, s).confounded]) for s in ("train", "val", "test_iid")}


def test_exact_fraction_of_positives_in_every_split(fold_experiment):
    labels = fold_experiment.pool.labels
    for p in P_ART_GRID:
        m = fold_experiment.member_data(p, 2, 812)
        for split in ("train", "val", "test_iid"):
            s = getattr(m, split)
            n_pos = labels[s.indices].sum()
            assert s.confounded.sum() == int(np.floor(p * n_pos + 0.5))
            assert (labels[s.indices][s.confounded] == 1).all()


def test_selection_is_nested_across_p_art(fold_experiment):
    for fold, seed in [(1, 812), (4, 3)]:
        masks = [_masks(fold_experiment.member_data(p, fold, seed)) for p in P_ART_GRID]
        for lo, hi in zip(masks, masks[1:]):
            for split in lo:
                assert lo[split] <= hi[split]


def test_ood_and_clean_test_sets(fold_experiment):
    m = fold_experiment.member_data(0.5, 3, 812)
    labels = fold_experiment.pool.labels
    np.testing.assert_array_equal(m.test_ood.confounded, labels[m.test_ood.indices] == 0)
    assert not m.test_clean.confounded.any()
    for s in (m.test_iid, m.test_ood, m.test_clean):
        np.testing.assert_array_equal(s.indices, np.flatnonzero(fold_experiment.is_test))


def test_independent_of_member_order_and_other_members(fold_experiment):
    members = list(itertools.product((0.1, 0.5, 1.0), (1, 2, 5), (812, 7)))
    first = {key: _masks(fold_experiment.member_data(*key)) for key in members}
    again = {key: _masks(fold_experiment.member_data(*key)) for key in reversed(members)}
    assert first == again


def test_seeds_and_folds_differ_but_iid_test_is_shared_by_folds(fold_experiment):
    a = _masks(fold_experiment.member_data(0.5, 1, 812))
    b = _masks(fold_experiment.member_data(0.5, 1, 813))
    c = _masks(fold_experiment.member_data(0.5, 2, 812))
    assert a["train"] != b["train"] and a["test_iid"] != b["test_iid"]
    assert a["test_iid"] == c["test_iid"]  # the study had one i.i.d. test directory per p_art


def test_stable_across_processes_and_versions():
    # Fixed by sha256 of the key, not Python's salted hash(): these values must never change,
    # or published member selections stop being reproducible.
    assert list(selection.rng_for("confound", 812, 1, "train").permutation(8)) == [3, 0, 2, 1, 6, 7, 4, 5]
    assert list(selection.rng_for("confound", np.int64(812), np.int32(1), "train").permutation(8)) == [
        3, 0, 2, 1, 6, 7, 4, 5]


def test_member_data_rejects_bad_fold_and_p_art(fold_experiment):
    with pytest.raises(ValueError, match="fold"):
        fold_experiment.member_data(0.5, 0, 812)
    with pytest.raises(ValueError, match="fold"):
        fold_experiment.member_data(0.5, 6, 812)
    with pytest.raises(ValueError, match="p_art"):
        fold_experiment.member_data(1.5, 1, 812)


@pytest.fixture(scope="module")
def sex_experiment():
    rng = np.random.default_rng(1)
    n = 200
    pool = _pool(n, rng, v=1)
    sex = np.where(rng.random(n) < 0.5, "M", "F")
    is_heldout = np.zeros(n, bool)
    is_heldout[:80] = True
    is_test = np.zeros(n, bool)
    is_test[80:110] = True
    membership = np.zeros((n, len(splits_lib.SEX_P_GRID), 5), np.int8)
    membership[110:] = rng.integers(1, 3, (90, len(splits_lib.SEX_P_GRID), 5))
    return experiment.SexExperiment("sex", pool, membership, is_test, is_heldout, sex)


def test_sex_iid_test_has_the_training_proportion_of_women(sex_experiment):
    e = sex_experiment
    counts = {}
    for p in splits_lib.SEX_P_GRID:
        m = e.member_data(p, 1, 812)
        idx = m.test_iid.indices
        assert e.is_heldout[idx].all() and not m.test_iid.confounded.any()
        pos = idx[e.pool.labels[idx] == 1]
        neg = idx[e.pool.labels[idx] == 0]
        assert set(e.sex[neg]) == {"M"}
        counts[p] = (e.sex[pos] == "F").sum()
        assert counts[p] == int(np.floor(p * len(pos) + 0.5))
        assert len(pos) == len(neg)
    assert counts[0.0] == 0 and counts[1.0] > 0


def test_sex_clean_test_is_balanced_and_nothing_is_confounded(sex_experiment):
    e = sex_experiment
    m = e.member_data(0.2, 3, 812)
    idx = m.test_clean.indices
    groups = {(lab, s): ((e.pool.labels[idx] == lab) & (e.sex[idx] == s)).sum() for lab in (0, 1) for s in "MF"}
    assert len(set(groups.values())) == 1 and min(groups.values()) > 0
    for split in ("train", "val", "test_iid", "test_ood", "test_clean"):
        assert not getattr(m, split).confounded.any()
    np.testing.assert_array_equal(m.train.indices, np.flatnonzero(e.membership[:, 2, 2] == 1))
    with pytest.raises(ValueError, match="sampled only"):
        e.member_data(0.3, 1, 812)
