"""'auto' execution strategy: the measured per-platform defaults (docs/performance.md)."""

import pytest

from sourcematters_jax.train.packing import CPU_LOOP_MIN_WIDTH, resolve_strategy


def auto(platform, width, members, devices):
    return resolve_strategy("auto", platform, model_width=width, num_members=members,
                            num_devices=devices)


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_accelerators_vectorise_members(platform):
    assert auto(platform, 64, 90, 1) == "vmap"
    assert auto(platform, 8, 1, 4) == "vmap"


def test_cpu_runs_resnet50_width_members_one_program_each():
    assert CPU_LOOP_MIN_WIDTH == 64  # ResNet50's width: loop measured faster at every M
    assert auto("cpu", 64, 8, 2) == "loop"
    assert auto("cpu", 128, 2, 1) == "loop"


def test_cpu_vectorises_narrow_members_unless_that_pads():
    assert auto("cpu", 8, 9, 2) == "vmap"  # the demo: dispatch-bound, vmap measured fastest
    assert auto("cpu", 8, 2, 2) == "vmap"
    assert auto("cpu", 8, 1, 2) == "loop"  # vmap would compute a padded copy


@pytest.mark.parametrize("strategy", ["vmap", "lax_map", "loop"])
def test_explicit_strategies_are_kept(strategy):
    assert resolve_strategy(strategy, "cpu", model_width=64, num_members=1,
                            num_devices=2) == strategy


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ValueError, match="unknown execution strategy 'pmap'.*'auto'"):
        resolve_strategy("pmap", "cpu", model_width=8, num_members=1, num_devices=1)
