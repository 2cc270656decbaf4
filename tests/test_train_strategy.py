"""Execution strategies: 'auto' per platform, the 'groups' layout and its in-place program.

The 'groups' checks use a toy per-member function (a few elementwise ops on a large state) so
XLA's memory analysis is cheap to compile and easy to read: it must show the member state held
once (donated and updated in place group by group), where `jax.lax.map(..., batch_size=G)`
holds it twice.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sourcematters_jax.train import packing
from sourcematters_jax.train.packing import CPU_LOOP_MIN_WIDTH, group_layout, resolve_strategy


def auto(platform, width, members, devices):
    return resolve_strategy("auto", platform, model_width=width, num_members=members,
                            num_devices=devices)


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_accelerators_run_groups_in_one_program(platform):
    assert auto(platform, 64, 90, 1) == "groups"
    assert auto(platform, 8, 1, 4) == "groups"


def test_cpu_runs_resnet50_width_members_one_program_each():
    assert CPU_LOOP_MIN_WIDTH == 64  # ResNet50's width: loop measured faster at every M
    assert auto("cpu", 64, 8, 2) == "loop"
    assert auto("cpu", 128, 2, 1) == "loop"


def test_cpu_vectorises_narrow_members_unless_that_pads():
    assert auto("cpu", 8, 9, 2) == "vmap"  # the demo: dispatch-bound, vmap measured fastest
    assert auto("cpu", 8, 2, 2) == "vmap"
    assert auto("cpu", 8, 1, 2) == "loop"  # vmap would compute a padded copy


@pytest.mark.parametrize("strategy", ["vmap", "groups", "lax_map", "loop"])
def test_explicit_strategies_are_kept(strategy):
    assert resolve_strategy(strategy, "cpu", model_width=64, num_members=1,
                            num_devices=2) == strategy


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ValueError, match="unknown execution strategy 'pmap'.*'auto'"):
        resolve_strategy("pmap", "cpu", model_width=8, num_members=1, num_devices=1)


def test_group_layout_balances_groups_and_pads_little():
    assert group_layout(90, 1, 8) == (8, 96)  # 12 groups of 8: 6 padded copies
    assert group_layout(90, 1, 1) == (1, 90)
    assert group_layout(90, 1, 0) == (90, 90)  # 0 = one group (vmap)
    assert group_layout(90, 1, 200) == (90, 90)
    assert group_layout(10, 2, 4) == (3, 12)  # 5 per device -> 2 groups of 3
    with pytest.raises(ValueError, match="group_size"):
        group_layout(4, 1, -1)


def member_fn(state, x, shared):
    """A toy member step: new state (same structure) and a per-member metric."""
    new = {"w": state["w"] * 0.5 + x[:, None] + shared, "n": state["n"] + 1}
    return new, jnp.sum(new["w"]) + state["n"]


def toy(m, width=4):
    rng = np.random.default_rng(0)
    return ({"w": rng.normal(size=(m, 3, width)).astype(np.float32), "n": np.arange(m, dtype=np.int32)},
            rng.normal(size=(m, 3)).astype(np.float32), np.float32(2.0))


@pytest.mark.parametrize("members,group", [(6, 2), (6, 3), (5, 2), (3, 1), (4, 0)])
def test_groups_runner_equals_vmap(members, group):
    state, x, shared = toy(members)
    want = jax.vmap(member_fn, in_axes=(0, 0, None))(state, x, shared)
    runner = packing.make_runner("groups", members, jax.devices(), group_size=group)
    step = runner.lift(member_fn, member=("state", "x"), donate=("state",))
    got = step(runner.put_members(state), runner.put_members(x), runner.put_shared(shared))
    got = runner.to_host(got)
    np.testing.assert_allclose(got[0]["w"], want[0]["w"], rtol=1e-6)
    np.testing.assert_array_equal(got[0]["n"], want[0]["n"])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


def test_groups_update_state_in_place_where_lax_map_batches_copy_it():
    """XLA memory analysis: 'groups' needs no second copy of the state, lax.map(batch_size) does.

    The toy step's metric reads no float state: when a float reduction reads the state (as the
    real step's loss does), XLA:CPU's copy insertion copies the loop-carried state once for
    either program (measured: 3.93 MB temp for a 3.15 MB state, both ways); that is XLA:CPU's
    choice, and benchmarks/accelerator_check.py reports the temp size on the accelerator.
    """
    m, g, width = 8, 2, 1 << 15
    state, x, shared = toy(m, width)

    def fn(s, x, c):
        return {"w": s["w"] * 0.5 + x[:, None] + c, "n": s["n"] + 1}, jnp.sum(x) + s["n"]

    runner = packing.make_runner("groups", m, jax.devices()[:1], group_size=g)
    groups = runner.lift(fn, member=("s", "x"), donate=("s",))
    mapped = jax.jit(lambda s, x, c: jax.lax.map(lambda a: fn(a[0], a[1], c), (s, x),
                                                 batch_size=g), donate_argnums=(0,))

    def temp(f):
        return f.lower(state, x, shared).compile().memory_analysis().temp_size_in_bytes

    assert temp(groups) < 0.01 * state["w"].nbytes  # state updated in place, group by group
    assert temp(mapped) >= state["w"].nbytes  # lax.map(batch_size) stacks a second copy


def test_groups_program_trains_end_to_end(tmp_path):
    """train_and_evaluate with 'groups' (G = 1): init, steps, epoch ends and tests all lifted."""
    import json

    import pandas as pd

    from sourcematters_jax.configs import smoke
    from fake_experiment import make_experiment
    from sourcematters_jax.train.loop import train_and_evaluate

    config = smoke.get_config("strategy=groups,epochs=2")
    config.execution.group_size = 1
    path = train_and_evaluate(config, tmp_path, data=make_experiment(num_images=96, size=32))
    table = pd.read_csv(path)
    assert len(table) == 12 and table["auc"].between(0, 1).all()
    program = json.loads((tmp_path / "program.json").read_text())
    assert (program["strategy"], program["group_size"], program["remat"]) == ("groups", 1, False)
