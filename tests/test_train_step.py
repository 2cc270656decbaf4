"""The per-member step and its M-member lifts: equivalence, isolation, masks, epoch end.

One tiny ResNet (one stage, width 4, 32 px) and 4 members of a fake experiment with different
seeds, preprocessing modes, p_art and training-set sizes; compiled programs are shared through
module-scoped fixtures. Tolerances: the M-member step must match M single-member steps to
rtol 1e-4 / atol 2e-5 (vmap turns convolutions into grouped convolutions, so float32 sums are
reassociated); the loop strategy runs the very same single-member program and must match exactly.

The optimizer here uses Adam eps=1e-3 instead of Keras' 1e-7: a conv bias right before a
BatchNorm has a gradient that is mathematically zero, i.e. float noise of ~1e-9, and with a tiny
eps Adam's m / (sqrt(v) + eps) turns that noise into steps of size lr that differ between any
two summation orders. A larger eps keeps every parameter comparable without changing the code
under test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fake_experiment import make_experiment
from sourcematters_jax.models import Classifier, TinyResNet
from sourcematters_jax.preprocessing import preprocess
from sourcematters_jax.train import evaluate, packing, state as st, step as sp
from sourcematters_jax.train.augment import AugmentConfig

RTOL, ATOL = 1e-4, 2e-5
MEMBERS = [(0.0, 1, 812, "caffe"), (1.0, 2, 812, "caffe_div255"), (0.5, 3, 7, "caffe"),
           (0.0, 4, 9, "caffe_div255")]


@pytest.fixture(scope="module")
def setup():
    exp = make_experiment(num_images=80, size=32)
    mds = [exp.member_data(p, f, s) for p, f, s, _ in MEMBERS]
    batch, steps = packing.train_layout(mds, 20)
    arrays = packing.pack_member_arrays(mds, batch_size=20, eval_batch_size=12)
    model = st.build_model({"stage_sizes": (1,), "width": 4, "dtype": "float32"}, 0.5)
    tx = st.make_optimizer(1e-3, 0.9, 0.999, 1e-3)
    init = jax.jit(lambda i: st.init_member(i, None, model=model, tx=tx, image_size=32))
    states = []
    for _, _, seed, mode in MEMBERS:
        mean, scale = st.preprocessing_constants(mode)
        states.append(jax.device_get(init(st.MemberInit(
            seed=np.int32(seed), source_slot=np.int32(-1), pixel_mean=mean,
            pixel_scale=np.float32(scale)))))
    train0 = packing.stack_trees([t for t, _ in states])
    best0 = packing.stack_trees([b for _, b in states])
    pool = sp.DevicePool(images=exp.pool.images, labels=exp.pool.labels)
    step_fn = sp.make_member_train_step(model, tx, AugmentConfig(), steps_per_epoch=steps,
                                        batch_size=batch)
    return dict(exp=exp, mds=mds, batch=batch, steps=steps, arrays=arrays, model=model, tx=tx,
                train0=train0, best0=best0, pool=pool, step_fn=step_fn)


def member(tree, m):
    return jax.tree.map(lambda x: np.asarray(x)[m], tree)


def run_single(setup, train_np, num_steps):
    """M single-member steps: the reference."""
    step = jax.jit(setup["step_fn"])
    out = []
    for m in range(len(MEMBERS)):
        state = member(train_np, m)
        for _ in range(num_steps):
            state, _ = step(state, member(setup["arrays"], m), setup["pool"])
        out.append(jax.device_get(state))
    return packing.stack_trees(out)


@pytest.fixture(scope="module")
def lifted(setup):
    """strategy -> (runner, M-member step, placed data, placed pool); compiled once per module."""
    cache = {}

    def get(strategy):
        if strategy not in cache:
            # 'groups' with G = 1: each device's 2 members run one after another in one program.
            runner = packing.make_runner(strategy, len(MEMBERS), jax.devices(), group_size=1)
            step = runner.lift(setup["step_fn"], member=("state", "data"), donate=("state",))
            cache[strategy] = (runner, step, runner.put_members(setup["arrays"]),
                               runner.put_shared(setup["pool"]))
        return cache[strategy]

    return get


def run_runner(lifted, strategy, train_np, num_steps):
    runner, step, data, pool = lifted(strategy)
    state = runner.put_members(train_np)
    for _ in range(num_steps):
        state, _ = step(state, data, pool)
    return runner.to_host(state), runner


@pytest.fixture(scope="module")
def reference(setup):
    # A whole epoch: full batches, each member's partial last batch, and no-op steps for the
    # members whose epoch is shorter than the largest member's.
    return run_single(setup, setup["train0"], setup["steps"])


def assert_states_close(got, want, exact=False):
    for name in ("params", "batch_stats", "opt_state"):
        flat_got = jax.tree_util.tree_leaves_with_path(getattr(got, name))
        flat_want = jax.tree.leaves(getattr(want, name))
        assert len(flat_got) == len(flat_want)
        for (path, g), w in zip(flat_got, flat_want):
            where = f"{name}{jax.tree_util.keystr(path)}"
            if exact:
                np.testing.assert_array_equal(g, w, err_msg=where)
            else:
                np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=where)
    np.testing.assert_array_equal(got.step, want.step)
    np.testing.assert_array_equal(got.stopped, want.stopped)


def test_setup_covers_partial_and_empty_batches(setup):
    sizes = [len(md.train.indices) for md in setup["mds"]]
    assert len(set(sizes)) > 1
    real_steps = [-(-n // setup["batch"]) for n in sizes]
    assert min(real_steps) < setup["steps"], "some member must idle through a no-op step"
    assert any(n % setup["batch"] for n in sizes), "some member must have a partial batch"


@pytest.mark.parametrize("strategy", ["vmap", "groups", "lax_map"])
def test_member_step_equals_single_member_steps(setup, lifted, reference, strategy):
    got, runner = run_runner(lifted, strategy, setup["train0"], setup["steps"])
    assert {runner.device_of(m) for m in range(len(MEMBERS))} == set(jax.devices()[:2])
    assert_states_close(got, reference)
    # Adam counted only the steps that had data: partial batches yes, empty ones no.
    counts = np.asarray(got.opt_state.count)
    expected = [-(-len(md.train.indices) // setup["batch"]) for md in setup["mds"]]
    np.testing.assert_array_equal(counts, expected)
    # Members really differ (different seeds, data and preprocessing).
    kernels = np.asarray(got.params["head"]["kernel"])
    assert not np.allclose(kernels[0], kernels[2])


def test_loop_strategy_is_the_single_member_program(setup, lifted, reference):
    got, runner = run_runner(lifted, "loop", setup["train0"], setup["steps"])
    assert [runner.device_of(m).id for m in range(4)] == [0, 0, 1, 1]
    assert_states_close(got, reference, exact=True)


def test_nonfinite_member_stops_alone(setup, lifted, reference):
    poisoned = jax.tree.map(np.copy, setup["train0"])
    poisoned.params["head"]["kernel"][1] = np.nan
    got, _ = run_runner(lifted, "vmap", poisoned, setup["steps"])
    np.testing.assert_array_equal(got.nonfinite, [False, True, False, False])
    np.testing.assert_array_equal(got.stopped, [False, True, False, False])
    # The bad member is frozen: no update was applied, Adam never counted a step.
    assert int(got.opt_state.count[1]) == 0
    np.testing.assert_array_equal(member(got.params, 1)["backbone"]["conv1_conv"]["kernel"],
                                  member(poisoned.params, 1)["backbone"]["conv1_conv"]["kernel"])
    for m in (0, 2, 3):
        assert_states_close(member(got, m), member(reference, m))


def test_masked_batchnorm_ignores_padding():
    model = Classifier(TinyResNet(width=4, stage_sizes=(1,)))
    x = jax.random.normal(jax.random.key(0), (6, 16, 16, 3))
    variables = model.init(jax.random.key(1), x)
    mask = jnp.array([1, 1, 1, 1, 0, 0], bool)
    garbage = x.at[4:].set(1e4)
    apply = jax.jit(lambda v, x, mask: model.apply(v, x, train=True, mask=mask,
                                                   mutable=["batch_stats"],
                                                   rngs={"dropout": jax.random.key(2)})[1])
    with_mask = apply(variables, garbage, mask)
    subset = apply(variables, x[:4], None)
    for a, b in zip(jax.tree.leaves(with_mask), jax.tree.leaves(subset)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_normalize_matches_preprocess():
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8)).astype(np.float32)
    for mode in ("caffe", "caffe_div255", "none"):
        mean, scale = st.preprocessing_constants(mode)
        want = preprocess(np.repeat(images[..., None], 3, axis=-1), mode)
        np.testing.assert_allclose(st.normalize(images, mean, scale), want, rtol=1e-6, atol=1e-4)


def test_epoch_order_shuffles_valid_examples_first():
    mask = np.array([True] * 5 + [False] * 3)
    orders = [np.asarray(sp.epoch_order(jax.random.key(k), mask)) for k in range(4)]
    for order in orders:
        assert sorted(order[:5]) == list(range(5)) and sorted(order[5:]) == [5, 6, 7]
    assert len({tuple(o[:5]) for o in orders}) > 1


@pytest.fixture(scope="module")
def single_member(setup):
    end = jax.jit(evaluate.make_end_epoch(setup["model"], eval_batch_size=12, patience=1,
                                          steps_per_epoch=setup["steps"]))
    return dict(end=end, train=member(setup["train0"], 0), best=member(setup["best0"], 0),
                data=member(setup["arrays"], 0))


def test_end_epoch_keeps_best_and_stops_after_patience(setup, single_member):
    end, data, pool = single_member["end"], single_member["data"], setup["pool"]
    train = single_member["train"].replace(step=jnp.int32(setup["steps"]))  # after epoch 1
    train, best, info = end(train, single_member["best"], data, pool)
    assert bool(info.improved) and bool(info.active)
    assert int(best.epoch) == 1 and float(best.val_loss) == pytest.approx(float(info.val_loss))
    assert not bool(train.stopped) and int(train.epochs_trained) == 1
    # Same weights again: not strictly lower, so no improvement; patience 1 -> stopped.
    train = train.replace(step=jnp.int32(2 * setup["steps"]))
    train, best2, info2 = end(train, best, data, pool)
    assert not bool(info2.improved) and int(best2.epoch) == 1
    assert bool(train.stopped) and not bool(train.nonfinite) and int(train.bad_epochs) == 1
    # A stopped member is frozen by the train step and skipped by the next epoch end.
    step = jax.jit(setup["step_fn"])
    frozen, metrics = step(train, data, pool)
    assert int(metrics["count"]) == 0 and int(frozen.step) == int(train.step) + 1
    np.testing.assert_array_equal(frozen.params["head"]["kernel"], train.params["head"]["kernel"])
    _, _, info3 = end(frozen, best2, data, pool)
    assert not bool(info3.active)


def test_predict_covers_every_example_once(setup, single_member):
    data, pool = single_member["data"], setup["pool"]
    val = data.val
    n_valid = int(np.sum(val.mask))
    assert val.indices.shape[0] > 12 and val.indices.shape[0] % 12 == 0 and n_valid < len(val.mask)
    train = single_member["train"]
    predict = jax.jit(lambda t, ex, pool: evaluate.predict(
        t.params, t.batch_stats, t.pixel_mean, t.pixel_scale, ex, pool,
        model=setup["model"], eval_batch_size=12))
    probs, ce = predict(train, val, pool)
    idx = np.asarray(val.indices)[: n_valid]
    images = np.asarray(setup["exp"].pool.images)[idx, 0].astype(np.float32)
    logits = setup["model"].apply({"params": train.params, "batch_stats": train.batch_stats},
                                  st.normalize(images, train.pixel_mean, train.pixel_scale))
    np.testing.assert_allclose(probs[:n_valid], jax.nn.softmax(logits), rtol=1e-4, atol=1e-6)
    labels = setup["exp"].pool.labels[idx]
    want = -np.log(np.asarray(jax.nn.softmax(logits))[np.arange(n_valid), labels])
    np.testing.assert_allclose(float(evaluate.mean_loss(ce, val.mask)), want.mean(), rtol=1e-4)


def test_init_takes_backbone_from_source_and_head_from_seed(setup):
    model, tx = setup["model"], setup["tx"]
    shapes = st.backbone_shapes(model, 32)
    # Two "checkpoints" stacked on a source axis: every value 0.25 in slot 0, -0.5 in slot 1.
    stacked = jax.tree.map(lambda s: np.stack([np.full(s.shape, v, s.dtype) for v in (0.25, -0.5)]),
                           shapes)
    mean, scale = st.preprocessing_constants("caffe")
    init = jax.jit(lambda i, pre: st.init_member(i, pre, model=model, tx=tx, image_size=32))
    states = {(seed, slot): jax.device_get(init(st.MemberInit(
        seed=np.int32(seed), source_slot=np.int32(slot), pixel_mean=mean,
        pixel_scale=np.float32(scale)), stacked)[0]) for seed, slot in [(1, -1), (1, 1), (2, 1)]}
    for value, state in ((-0.5, states[(1, 1)]), (-0.5, states[(2, 1)])):
        for leaf in jax.tree.leaves(state.params["backbone"]) + jax.tree.leaves(
                state.batch_stats["backbone"]):
            np.testing.assert_array_equal(leaf, value)
    random_kernel = states[(1, -1)].params["backbone"]["conv1_conv"]["kernel"]
    assert np.std(random_kernel) > 0  # slot -1: the seeded Keras-default initialisation
    head = lambda seed, slot: states[(seed, slot)].params["head"]["kernel"]  # noqa: E731
    np.testing.assert_array_equal(head(1, -1), head(1, 1))  # same seed, same fresh head
    assert not np.allclose(head(1, 1), head(2, 1))
    np.testing.assert_allclose(states[(1, 1)].opt_state.hyperparams["learning_rate"], 1e-3, rtol=1e-6)


def test_sharded_runner_pads_members_and_drops_padding():
    runner = packing.make_runner("vmap", 3, jax.devices())
    placed = runner.put_members({"x": np.arange(3, dtype=np.float32)})
    assert placed["x"].shape == (4,)
    shards = placed["x"].addressable_shards
    assert {s.device for s in shards} == set(jax.devices()[:2])
    assert all(s.data.shape == (2,) for s in shards)
    np.testing.assert_array_equal(runner.to_host(placed)["x"], [0, 1, 2])
    assert [runner.device_of(m).id for m in range(3)] == [0, 0, 1]
    with pytest.raises(ValueError, match="member axis"):
        runner.put_members({"x": np.zeros(2)})
