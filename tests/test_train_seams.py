"""The trainer's named seams: the program spec (compile-cache key), the placed view every
strategy shares, member arguments by name, and checkpoints read back the same from either layout.

No model training: toy member trees and the tiny test ResNet's abstract state only.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sourcematters_jax.configs import smoke
from sourcematters_jax.train import checkpoints, packing, placed, programs, state as state_lib

M = 3


def config(**overrides):
    c = smoke.get_config("strategy=vmap,epochs=1")
    c.image_size = 16
    for k, v in overrides.items():
        setattr(c, k, v)
    return c


def spec(c=None, batch=8, steps=2, remat=False):
    return programs.ProgramSpec.from_config(c or config(), batch_size=batch, steps_per_epoch=steps,
                                            remat=remat)


def test_program_spec_is_a_value_key_and_the_programs_cache_hits():
    a, b = spec(), spec()
    assert a == b and hash(a) == hash(b) and a is not b
    assert spec(batch=4) != a and spec(steps=3) != a and spec(remat=True) != a
    wider = config()
    wider.model.width = 8
    assert spec(wider) != a and dict(spec(wider).model)["width"] == 8
    assert spec(config(learning_rate=0.5)) != a
    runner = packing.make_runner("vmap", 2, jax.devices())
    first = programs.build_programs(a, runner)
    assert programs.build_programs(b, runner) is first  # equal spec: the same compiled programs
    assert programs.build_programs(spec(batch=4), runner) is not first
    assert set(first._fields) == {"init", "train_step", "end_epoch", "predict", "abstract_state"}
    train, best = first.abstract_state
    assert isinstance(train, state_lib.TrainState) and isinstance(best, state_lib.BestState)


@pytest.fixture(scope="module")
def toy_state():
    rng = np.random.default_rng(0)
    return state_lib.BestState(params={"w": rng.normal(size=(M, 2, 3)).astype(np.float32)},
                               batch_stats={"mean": np.zeros((M, 3), np.float32)},
                               val_loss=np.array([0.5, 1.5, 2.5], np.float32),
                               epoch=np.arange(M, dtype=np.int32))


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_placed_view_is_the_state_tree_for_every_strategy(toy_state, strategy):
    runner = packing.make_runner(strategy, M, jax.devices())
    state = runner.put_members(toy_state)
    assert isinstance(state, state_lib.BestState)  # fields read as on the host tree
    host = runner.to_host({"epoch": state.epoch, "loss": state.val_loss, "w": state.params})
    np.testing.assert_array_equal(host["epoch"], toy_state.epoch)
    np.testing.assert_array_equal(host["loss"], toy_state.val_loss)
    np.testing.assert_array_equal(host["w"]["w"], toy_state.params["w"])
    assert checkpoints.layout_of(state) == (checkpoints.PER_MEMBER if strategy == "loop"
                                            else checkpoints.STACKED)

    def bump(best, scale):
        return best.replace(epoch=best.epoch + 1, val_loss=best.val_loss * scale)

    step = runner.lift(bump, member=("best",), donate=("best",), passthrough=("best",))
    out = runner.to_host(step(state, runner.put_shared(np.float32(2)),
                              skip=np.array([False, True, False])))
    np.testing.assert_array_equal(out.val_loss, toy_state.val_loss * [2, 1 if strategy == "loop"
                                                                      else 2, 2])
    np.testing.assert_array_equal(out.epoch, toy_state.epoch + [1, 0 if strategy == "loop"
                                                                else 1, 1])


def test_loop_members_live_on_their_devices(toy_state):
    runner = packing.make_runner("loop", M, jax.devices())
    leaf = runner.put_members(toy_state).params["w"]
    assert isinstance(leaf, placed.PerMember)
    assert [p.devices() for p in leaf.parts] == [{runner.device_of(m)} for m in range(M)]
    shared = runner.put_shared({"x": np.ones(2)})["x"]
    assert isinstance(shared, placed.PerDevice) and len(shared.parts) == len(runner.devices)


def test_member_signature_is_checked_by_name():
    def fn(state, data, pool):
        return state

    sig = placed.MemberSignature.of(fn, ("state", "data"), donate=("state",))
    assert (sig.num_member, sig.donate_argnums) == (2, (0,))
    with pytest.raises(ValueError, match="leading parameters"):
        placed.MemberSignature.of(fn, ("data",))
    with pytest.raises(ValueError, match=r"donate=\['stat'\]: not parameters of fn"):
        placed.MemberSignature.of(fn, ("state",), donate=("stat",))
    with pytest.raises(ValueError, match="only member parameters"):
        placed.MemberSignature.of(fn, ("state",), passthrough=("pool",))
    runner = packing.make_runner("vmap", 2, jax.devices())
    lifted = runner.lift(lambda state, c: state + c, member=("state",))
    with pytest.raises(ValueError, match="passthrough"):
        lifted(runner.put_members(jnp.zeros(2)), 1.0, skip=[False, True])


def test_restore_best_is_stacked_for_either_layout(tmp_path, toy_state):
    rows = [{"member_id": f"m{m}", "member_index": m, "preprocessing": "none"} for m in range(M)]
    table = {"members": rows, "model": {"width": 4}, "image_size": 16}
    got = {}
    for strategy in ("loop", "vmap"):
        runner = packing.make_runner(strategy, M, jax.devices())
        ckpt = checkpoints.ProgramCheckpoints(tmp_path / strategy)
        ckpt.save(1, runner.put_members(toy_state), runner.put_members(toy_state), table)
        ckpt.close()
        ckpt = checkpoints.ProgramCheckpoints(tmp_path / strategy, read_only=True)
        best, members = ckpt.restore_best()
        ckpt.close()
        got[strategy] = jax.tree.map(lambda x: x[:M], best)
        assert members[checkpoints.LAYOUT_KEY] == checkpoints.layout_of(
            runner.put_members(toy_state))
        variables, meta = checkpoints.load_member(tmp_path / strategy, "m2")
        np.testing.assert_array_equal(variables["params"]["w"], toy_state.params["w"][2])
        assert (meta["best_epoch"], meta["best_val_loss"]) == (2, 2.5)
    jax.tree.map(np.testing.assert_array_equal, got["loop"], got["vmap"])


def test_a_per_member_checkpoint_written_as_a_list_restores_on_either_strategy(tmp_path, toy_state):
    # The 'per_member' layout as earlier versions wrote it: Orbax given a plain list of member
    # trees (one per member), independent of today's writer.
    import orbax.checkpoint as ocp

    rows = [{"member_id": f"m{m}", "member_index": m, "preprocessing": "none"} for m in range(M)]
    trees = [jax.tree.map(lambda x, m=m: np.asarray(x)[m], toy_state) for m in range(M)]
    ckpt = checkpoints.ProgramCheckpoints(tmp_path)
    ckpt._manager.save(1, args=ocp.args.Composite(
        train=ocp.args.StandardSave(trees), best=ocp.args.StandardSave(trees),
        members=ocp.args.JsonSave({"members": rows, checkpoints.LAYOUT_KEY: "per_member"})))
    ckpt.close()
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x)[1:], np.asarray(x).dtype),
                          toy_state)
    for strategy in ("loop", "vmap"):
        runner = packing.make_runner(strategy, M, jax.devices())
        ckpt = checkpoints.ProgramCheckpoints(tmp_path)
        train, best, _ = ckpt.restore(1, target, target, runner)
        ckpt.close()
        host = runner.to_host(best)
        np.testing.assert_array_equal(host.params["w"], toy_state.params["w"])
        np.testing.assert_array_equal(runner.to_host(train.epoch), toy_state.epoch)
