"""Sweep expansion: order, count, ids and errors."""

import pytest

from sourcematters_jax.members import Member, expand_sweep, select_members


def test_paper_grid_size_and_order():
    members = expand_sweep(dict(experiment=["tag"], source=["imagenet", "radimagenet", "random"],
                                p_art=[0, .1, .2, .5, .8, 1], fold=[1, 2, 3, 4, 5], seed=[812]))
    assert len(members) == 90
    assert members[0] == Member("tag", "imagenet", 0, 1, 812)
    assert members[1].fold == 2  # the last field varies fastest
    assert len({m.member_id for m in members}) == 90
    assert members[0].member_id == "tag-imagenet-p0-f1-s812"


def test_bad_sweeps_are_errors():
    with pytest.raises(KeyError, match="unknown"):
        expand_sweep(dict(experiment=["tag"], source=["a"], p_art=[0], fold=[1], seed=[1], lr=[1]))
    with pytest.raises(ValueError, match="unknown experiment"):
        Member("tagg", "imagenet", 0.5, 1)
    with pytest.raises(ValueError, match="p_art"):
        Member("tag", "imagenet", 1.5, 1)
    with pytest.raises(IndexError, match="out of range"):
        select_members([Member("tag", "imagenet", 0.5, 1)], [3])
