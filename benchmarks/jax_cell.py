"""Child process: time the project's M-member training step for one strategy and device layout.

Spec (JSON): model ('resnet50' | 'tiny'), image_size, batch_size, members, strategy ('vmap' |
'groups' | 'lax_map' | 'loop'), devices (how many of this process's devices the runner uses),
warmup, steps; optional group_size (G of 'groups'), dtype ('float32' | 'bfloat16'), remat (bool),
matmul_precision ('default' | 'high' | 'highest'). The parent sets XLA_FLAGS (host device count)
and JAX_PLATFORMS before this process imports JAX.

What runs is the product's code: `state.init_member` and `step.make_member_train_step` lifted to
M members by `packing.make_runner(strategy, M, devices).lift`, on synthetic uint8 images in a
`DevicePool` and member index arrays from `packing.pack_member_arrays`. Only the timing is ours.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import numpy as np

from benchmarks.common import emit, parse_spec, peak_rss_mib, time_calls

MODELS = {
    "resnet50": {"stage_sizes": (3, 4, 6, 3), "width": 64},
    "tiny": {"stage_sizes": (1, 1, 1, 1), "width": 8},
}
SEED = 812
TRAIN_BATCHES = 4  # training set = 4 batches: the step draws its batch by index, as in training


def synthetic_members(num_members: int, pool_size: int, train_size: int, eval_size: int):
    """MemberData for M members drawing different indices from one pool."""
    from sourcematters_jax.data.types import MemberData, SplitIndex

    rng = np.random.default_rng(SEED)

    def split(n: int) -> SplitIndex:
        return SplitIndex(indices=rng.integers(0, pool_size, n).astype(np.int32),
                          confounded=rng.random(n) < 0.5)

    return [MemberData(train=split(train_size), val=split(eval_size), test_iid=split(eval_size),
                       test_ood=split(eval_size), test_clean=split(eval_size))
            for _ in range(num_members)]


def flops_of(cost: Any) -> float | None:
    """'flops' from a cost_analysis() result (a dict, or a list of per-module dicts)."""
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost:
        return None
    value = cost.get("flops")
    return None if value is None else float(value)


def memory_of(compiled: Any) -> dict[str, int] | None:
    """XLA's buffer sizes (bytes, per device) of a compiled program, where the backend has them."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - optional backend feature
        return None
    if m is None:
        return None
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
              "temp_size_in_bytes", "generated_code_size_in_bytes")
    return {f: int(getattr(m, f)) for f in fields if hasattr(m, f)}


@dataclasses.dataclass
class Cell:
    """A built cell: the runner, placed member state and inputs, and the lifted step."""

    runner: Any
    state: Any
    data: Any
    pool: Any
    step: Callable  # runner.lift(member_step): (state, data, pool) -> (state, metrics)
    member_step: Callable  # the single-member step
    abstract_args: tuple  # one member's (state, data, pool) shapes, for cost analysis


def build(spec: dict[str, Any], abstract: bool = False) -> Cell:
    """The product's M-member training step for `spec`, initialised on synthetic data.

    abstract=True leaves the member state as shapes (jax.eval_shape of the lifted init), so the
    step can be traced without compiling anything (the test does this).
    """
    import jax

    from sourcematters_jax.train.augment import AugmentConfig
    from sourcematters_jax.train.config import base_config
    from sourcematters_jax.train.packing import make_runner, pack_member_arrays, select_devices
    from sourcematters_jax.train.state import (MemberInit, build_model, init_member,
                                               make_optimizer, preprocessing_constants)
    from sourcematters_jax.train.step import (DevicePool, make_member_train_step,
                                              with_matmul_precision)

    m, size, batch = int(spec["members"]), int(spec["image_size"]), int(spec["batch_size"])
    cfg = base_config()
    cfg.model.stage_sizes = MODELS[spec["model"]]["stage_sizes"]
    cfg.model.width = MODELS[spec["model"]]["width"]
    cfg.model.dtype = spec.get("dtype", "float32")
    cfg.image_size = size
    model = build_model(cfg.model, cfg.dropout_rate, remat=bool(spec.get("remat", False)))
    tx = make_optimizer(cfg.learning_rate, cfg.adam_b1, cfg.adam_b2, cfg.adam_eps)
    augment = AugmentConfig.from_config(cfg.augment)

    devices = select_devices(int(spec["devices"]))
    runner = make_runner(spec["strategy"], m, devices, int(spec.get("group_size", 0)))

    rng = np.random.default_rng(SEED)
    pool_size = max(4 * batch, 64)
    pool_np = DevicePool(images=rng.integers(0, 256, (pool_size, 2, size, size), dtype=np.uint8),
                         labels=rng.integers(0, 2, pool_size).astype(np.int32))
    members = synthetic_members(m, pool_size, TRAIN_BATCHES * batch, batch)
    data_np = pack_member_arrays(members, batch_size=batch, eval_batch_size=batch)
    steps_per_epoch = data_np.train.indices.shape[1] // batch

    mean, scale = preprocessing_constants("caffe")
    inits = MemberInit(seed=np.arange(SEED, SEED + m, dtype=np.int32),
                       source_slot=np.full(m, -1, np.int32),
                       pixel_mean=np.tile(mean, (m, 1)), pixel_scale=np.full(m, scale, np.float32))
    init_fn = functools.partial(init_member, model=model, tx=tx, image_size=size)
    # As the trainer initialises members without pretrained weights (train/programs.py).
    init = runner.lift(lambda inputs: init_fn(inputs, None), member=("inputs",))
    placed_inits = runner.put_members(inits)
    state, _ = jax.eval_shape(init, placed_inits) if abstract else init(placed_inits)
    member_step = with_matmul_precision(
        make_member_train_step(model, tx, augment, steps_per_epoch=steps_per_epoch,
                               batch_size=batch), spec.get("matmul_precision", "default"))
    one = lambda x: jax.ShapeDtypeStruct(np.shape(x)[1:], x.dtype)  # noqa: E731
    abstract_state = jax.eval_shape(lambda i: init_fn(i, None)[0], jax.tree.map(one, inits))
    return Cell(runner=runner, state=state, data=runner.put_members(data_np),
                pool=runner.put_shared(pool_np),
                step=runner.lift(member_step, member=("state", "data"), donate=("state",)),
                member_step=member_step,
                abstract_args=(abstract_state, jax.tree.map(one, data_np), pool_np))


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Build, compile and time one cell; returns the cell's result dict."""
    t_import = time.perf_counter()
    import jax

    import sourcematters_jax.train.step  # noqa: F401 - the import time is reported
    import_s = time.perf_counter() - t_import
    rss_baseline = peak_rss_mib()
    cell = build(spec)
    runner, step, data, pool = cell.runner, cell.step, cell.data, cell.pool
    m, batch = int(spec["members"]), int(spec["batch_size"])
    devices = runner.devices

    # Useful work: XLA's cost analysis of ONE member's step (before backend rewrites such as
    # the grouped-convolution expansion that vmap causes on CPU), times M.
    flops_member_step = flops_of(jax.jit(cell.member_step).lower(*cell.abstract_args)
                                 .cost_analysis())

    result: dict[str, Any] = {
        "model": spec["model"], "image_size": int(spec["image_size"]), "batch_size": batch,
        "members": m, "strategy": runner.strategy, "devices": len(devices),
        "host_devices": len(jax.local_devices()), "platform": devices[0].platform,
        "padded_members": getattr(runner, "padded_members", m),
        "import_s": round(import_s, 2), "flops_member_step": flops_member_step,
    }

    holder = {"state": cell.state}
    if runner.strategy == "loop":
        # The runner's own jit: its first call compiles (compile_s = first call - steady step).
        def call():
            holder["state"], metrics = step(holder["state"], data, pool)
            jax.block_until_ready((holder["state"], metrics))
        program_flops, memory = None, None
    else:
        t = time.perf_counter()
        compiled = step.lower(cell.state, data, pool).compile()
        result["compile_s"] = round(time.perf_counter() - t, 2)
        program_flops = flops_of(compiled.cost_analysis())
        memory = memory_of(compiled)

        def call():
            holder["state"], metrics = compiled(holder["state"], data, pool)
            jax.block_until_ready((holder["state"], metrics))

    timing = time_calls(call, warmup=int(spec["warmup"]), steps=int(spec["steps"]))
    if runner.strategy == "loop":
        result["compile_s"] = round(max(timing["first_call_s"] - timing["step_median_s"], 0.0), 2)
    result.update(timing)
    step_s = timing["step_median_s"]
    result["member_images_per_s"] = round(m * batch / step_s, 3)
    result["images_per_s_per_member"] = round(batch / step_s, 3)
    if flops_member_step:
        result["useful_flops_per_s"] = round(m * flops_member_step / step_s, 1)
    if program_flops:
        # Sharded programs are SPMD: the compiled module is one device's share.
        result["program_flops_step"] = program_flops * len(devices)
    result["xla_memory_bytes"] = memory
    result["all_members_finite"] = not bool(np.any(runner.to_host(holder["state"]).nonfinite))
    result["rss_baseline_mib"] = round(rss_baseline, 1)
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return result


if __name__ == "__main__":
    emit(run(parse_spec()))
