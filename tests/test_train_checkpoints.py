"""Program checkpoints: placed jax.Arrays saved asynchronously, restored onto any runner.

No model: small member trees shaped like a BestState ({params, batch_stats, epoch, val_loss}),
placed by real runners ('vmap' over 2 devices pads 3 members to 4; 'loop' holds PerMember
leaves, saved as a list of member trees).
"""

import jax
import numpy as np
import pytest

from sourcematters_jax.train import checkpoints, packing

M = 3


def member_tree(m):
    """Member m's state: distinct values per member, a non-scalar and scalar leaves."""
    return {"params": {"w": np.arange(4, dtype=np.float32) + 10 * m},
            "batch_stats": {"mean": np.full((2,), m, np.float32)},
            "epoch": np.int32(m + 1), "val_loss": np.float32(0.5 + m)}


def stacked():
    return packing.stack_trees([member_tree(m) for m in range(M)])


def table():
    rows = [{"member_id": f"m{m}", "member_index": 10 + m, "preprocessing": "caffe"}
            for m in range(M)]
    return {"members": rows, "model": {"width": 4}, "image_size": 32}


def runner(strategy, num_devices=2):
    return packing.make_runner(strategy, M, jax.devices()[:num_devices])


def abstract():
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                        member_tree(0))


@pytest.mark.parametrize("saved_by,restored_by", [
    (("vmap", 2), ("vmap", 2)), (("vmap", 2), ("vmap", 1)), (("vmap", 1), ("vmap", 2)),
    (("loop", 2), ("loop", 2)), (("loop", 2), ("vmap", 2)), (("vmap", 2), ("loop", 1))])
def test_save_placed_state_and_restore_on_any_runner(tmp_path, saved_by, restored_by):
    source, target = runner(*saved_by), runner(*restored_by)
    train = source.put_members(stacked())
    best = source.put_members(stacked())
    ckpt = checkpoints.ProgramCheckpoints(tmp_path)
    ckpt.save(1, train, best, table())
    # The save has copied the state off the device: a donating update of the live buffers
    # (what the next training step does) must not reach the checkpoint.
    bump = source.lift(lambda t: jax.tree.map(lambda x: x + 100, t), member=("t",), donate=("t",))
    train = bump(train)
    ckpt.close()

    ckpt = checkpoints.ProgramCheckpoints(tmp_path)
    assert ckpt.latest_epoch() == 1
    restored_train, restored_best, members = ckpt.restore(1, abstract(), abstract(), target)
    ckpt.close()
    assert members["members"] == table()["members"]
    assert members[checkpoints.LAYOUT_KEY] == checkpoints.layout_of(train)
    for placed in (restored_train, restored_best):
        assert checkpoints.layout_of(placed) == checkpoints.layout_of(target.put_members(stacked()))
        host = target.to_host(placed)
        jax.tree.map(np.testing.assert_array_equal, host, stacked())
    if target.strategy == "loop":
        assert [p.devices() for p in restored_train["params"]["w"].parts] == [
            {target.device_of(m)} for m in range(M)]
    else:
        assert restored_train["params"]["w"].sharding == target.member_sharding


def test_saved_arrays_keep_their_device_sharding(tmp_path):
    # Orbax wrote the sharded jax.Array itself (per-device shards), not a stacked host copy.
    r = runner("vmap", 2)
    ckpt = checkpoints.ProgramCheckpoints(tmp_path)
    ckpt.save(1, r.put_members(stacked()), r.put_members(stacked()), table())
    ckpt.wait()
    meta = ckpt._manager.item_metadata(1)["train"]
    leaf = getattr(meta, "tree", meta)["params"]["w"]
    ckpt.close()
    assert tuple(leaf.shape) == (4, 4)  # 3 members padded to a multiple of 2 devices
    assert leaf.sharding is not None and "members" in str(leaf.sharding)


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_load_member_reads_either_layout(tmp_path, strategy):
    r = runner(strategy)
    ckpt = checkpoints.ProgramCheckpoints(tmp_path)
    ckpt.save(3, r.put_members(stacked()), r.put_members(stacked()), table())
    ckpt.close()
    variables, meta = checkpoints.load_member(tmp_path, "m2")
    np.testing.assert_array_equal(variables["params"]["w"], member_tree(2)["params"]["w"])
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], [2, 2])
    assert meta["best_epoch"] == 3 and meta["best_val_loss"] == pytest.approx(2.5)
    _, meta = checkpoints.load_member(tmp_path, 10)  # by sweep member_index
    assert meta["member"]["member_id"] == "m0"


def test_keeps_one_checkpoint_by_default(tmp_path):
    r = runner("vmap")
    ckpt = checkpoints.ProgramCheckpoints(tmp_path)
    for epoch in (1, 2, 3):
        ckpt.save(epoch, r.put_members(stacked()), r.put_members(stacked()), table())
    ckpt.close()
    assert sorted(p.name for p in (tmp_path / checkpoints.CHECKPOINT_DIR).iterdir()
                  if p.name.isdigit()) == ["3"]


def test_restore_of_another_state_is_a_clear_error(tmp_path):
    r = runner("loop")
    ckpt = checkpoints.ProgramCheckpoints(tmp_path)
    ckpt.save(1, r.put_members(stacked()), r.put_members(stacked()), table())
    ckpt.close()
    wrong = {**abstract(), "params": {"w": jax.ShapeDtypeStruct((5,), np.float32)}}
    ckpt = checkpoints.ProgramCheckpoints(tmp_path)
    with pytest.raises(ValueError, match="does not match this program's state"):
        ckpt.restore(1, wrong, wrong, r)
    ckpt.close()
