"""Device memory of one member, measured on the product's own training step, and G from it.

Two numbers describe a member (`StepMemory`):

  state  bytes of its `TrainState` + `BestState` (params, BN statistics, Adam mu/nu, the best
         copy, counters), from the abstract `state.init_member` (`jax.eval_shape`, no FLOPs);
         it lives on the device for the whole program.
  step   XLA's working memory of ONE member's real training step
         (`step.make_member_train_step` with the config's model, Adam and augmentation, the
         masked BatchNorm and the non-finite guard, state donated as the trainer donates it):
         `compiled.memory_analysis().temp_size_in_bytes` plus any output not aliased to the
         donated state. Activations, gradients and the update's temporaries are all in it.

Lowering the real step means the estimate follows every change to the step. The compile is for
the local backend: XLA:GPU/TPU fuse (and so allocate) differently from XLA:CPU, so measure on
the target when you can. A program then needs, per device,

  members x state + G x step        ('groups' of G, 'loop' and 'lax_map' with G = 1; 'vmap' with
                                     G = all of the device's members)

(`lax_map` also keeps a second copy of the state: jax.lax.map stacks its outputs into new
buffers.) `choose_group_size` picks the largest G that fits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sourcematters_jax import atomic_files
from sourcematters_jax.train import packing

# Upper bound on an automatic G: the largest group the accelerator benchmark measures
# (benchmarks/accelerator_check.py: vmap G = 2/4/8); larger groups are untested.
MAX_AUTO_GROUP = 8
# 'lax_map' holds the member state twice (inputs and jax.lax.map's stacked outputs).
STATE_COPIES = {"lax_map": 2}


@dataclasses.dataclass(frozen=True)
class StepMemory:
    """Measured device bytes of one member of a config (see the module docstring)."""

    num_params: int
    num_stats: int
    state_bytes: int
    step_bytes: int
    batch_size: int
    remat: bool
    dtype: str
    measured_on: str  # the XLA backend that compiled the step
    estimate: str = ""  # how step_bytes was estimated when not compiled ('' = measured)

    def program_bytes(self, members_per_device: int, group_size: int, strategy: str) -> int:
        """Bytes one device needs for `members_per_device` members run `group_size` at a time."""
        copies = STATE_COPIES.get(strategy, 1)
        return copies * members_per_device * self.state_bytes + group_size * self.step_bytes

    def describe(self) -> str:
        return (f"{self.num_params / 1e6:.2f} M params -> {self.state_bytes / 2**20:.0f} MiB state "
                f"per member; one member's step at batch {self.batch_size} "
                f"({self.dtype}{', remat' if self.remat else ''}) "
                f"{self.step_bytes / 2**30:.2f} GiB ({self.step_bytes / self.batch_size / 2**20:.1f}"
                f" MiB/image, {self.estimate or 'XLA:' + self.measured_on})")


def _bytes(tree: Any) -> int:
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _count(tree: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def _cache_key(config: ml_collections.ConfigDict, batch_size: int, remat: bool) -> str:
    """What the measurement depends on: the step's inputs, the code that builds it, the XLA."""
    import jaxlib

    code = hashlib.sha256()
    root = pathlib.Path(__file__).resolve().parents[1]
    for path in sorted([*root.glob("models/*.py"), *(root / "train" / f for f in (
            "step.py", "state.py", "augment.py", "programs.py"))]):
        code.update(path.read_bytes())
    fields = {k: config[k].to_dict() if hasattr(config[k], "to_dict") else config[k]
              for k in ("model", "image_size", "dropout_rate", "augment")}
    return json.dumps([fields, batch_size, remat, jax.default_backend(), jax.__version__,
                       jaxlib.__version__, code.hexdigest()], sort_keys=True, default=str)


def measure_member_step(config: ml_collections.ConfigDict, *, batch_size: int, remat: bool
                        ) -> StepMemory:
    """One member's real training step of `config` at `batch_size`, compiled and measured.

    A compile of the ResNet50 step takes a minute or more on CPU, so results are kept in
    $SOURCEMATTERS_CACHE_DIR (default ~/.cache/sourcematters_jax)/step_memory.json, keyed by the
    config fields the step depends on, the batch, remat, the XLA backend, the JAX versions and
    a hash of the model and step source files (a change to any of them measures again).

    Raises:
      RuntimeError: the backend reports no memory analysis.
    """
    cache = pathlib.Path(os.environ.get("SOURCEMATTERS_CACHE_DIR", "~/.cache/sourcematters_jax")
                         ).expanduser() / "step_memory.json"
    key = _cache_key(config, batch_size, remat)
    try:
        entries = json.loads(cache.read_text())
    except (OSError, ValueError):
        entries = {}
    if key in entries:
        return StepMemory(**entries[key])
    memory = _measure(config, batch_size=batch_size, remat=remat)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:  # re-read: another planner may have added entries meanwhile
            entries = json.loads(cache.read_text())
        except (OSError, ValueError):
            entries = {}
        entries[key] = dataclasses.asdict(memory)
        atomic_files.write_json(cache, entries)
    except OSError:
        pass  # a read-only home: measure again next time
    return memory


def _measure(config: ml_collections.ConfigDict, *, batch_size: int, remat: bool) -> StepMemory:
    """Compile and measure (no cache); see `measure_member_step`."""
    from sourcematters_jax.train import programs as programs_lib, state as state_lib
    from sourcematters_jax.train import step as step_lib
    from sourcematters_jax.train.augment import AugmentConfig

    size = int(config.image_size)
    model = state_lib.build_model(config.model.to_dict(), config.dropout_rate, remat=remat)
    tx = state_lib.make_optimizer(config.learning_rate, config.adam_b1, config.adam_b2,
                                  config.adam_eps)
    member_step = step_lib.make_member_train_step(
        model, tx, AugmentConfig.from_config(config.augment), steps_per_epoch=1,
        batch_size=batch_size)
    i32 = jnp.int32
    train, best = jax.eval_shape(lambda i: state_lib.init_member(
        i, None, model=model, tx=tx, image_size=size), programs_lib.abstract_member_inputs())

    def examples(n: int) -> step_lib.Examples:
        return step_lib.Examples(indices=jax.ShapeDtypeStruct((n,), i32),
                                 confounded=jax.ShapeDtypeStruct((n,), bool),
                                 mask=jax.ShapeDtypeStruct((n,), bool))

    data = step_lib.MemberArrays(train=examples(batch_size), val=examples(1),
                                 test_iid=examples(1), test_ood=examples(1),
                                 test_clean=examples(1))
    pool = step_lib.DevicePool(images=jax.ShapeDtypeStruct((batch_size, 2, size, size), jnp.uint8),
                               labels=jax.ShapeDtypeStruct((batch_size,), i32))
    compiled = jax.jit(member_step, donate_argnums=(0,)).lower(train, data, pool).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        raise RuntimeError(f"XLA reports no memory analysis on {jax.default_backend()}")
    unaliased_out = max(int(analysis.output_size_in_bytes) - int(analysis.alias_size_in_bytes), 0)
    return StepMemory(
        num_params=_count(train.params), num_stats=_count(train.batch_stats),
        state_bytes=_bytes(train) + _bytes(best),
        step_bytes=int(analysis.temp_size_in_bytes) + unaliased_out,
        batch_size=batch_size, remat=remat, dtype=str(config.model.dtype),
        measured_on=jax.default_backend())


def residual_bytes(config: ml_collections.ConfigDict, *, batch_size: int, remat: bool) -> int:
    """Bytes the forward pass keeps for the backward pass (the vjp's residuals), abstractly.

    `jax.eval_shape` of `jax.vjp` of the training-mode loss: no compile, backend independent.
    It overstates what XLA keeps (XLA fuses some saved values away) but measures what remat
    changes: with remat only block inputs are saved (ResNet50, 224 px: 7.8 vs 34.6 GiB at batch
    225, 4.4x).
    """
    from sourcematters_jax.train import state as state_lib

    size = int(config.image_size)
    model = state_lib.build_model(config.model.to_dict(), config.dropout_rate, remat=remat)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                                  jnp.zeros((1, size, size, 3)), train=False))
    x = jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.float32)

    def loss(params, stats, images):
        logits, updates = model.apply({"params": params, "batch_stats": stats}, images, train=True,
                                      mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
        return jnp.mean(logits), updates

    residuals = jax.eval_shape(
        lambda p, s, i: jax.vjp(lambda q: loss(q, s, i), p, has_aux=True)[1],
        variables["params"], variables["batch_stats"], x)
    return _bytes(residuals)


def estimate_remat(config: ml_collections.ConfigDict, measured: StepMemory) -> StepMemory:
    """The remat step of a target backend, from the measured step without remat.

    For planning another platform than this machine's: XLA:CPU's schedule does not realise the
    saving (its buffer assignment measured 31.7 GB with remat vs 27.8 GB without, ResNet50 at
    224 px, batch 225), while GPU/TPU schedulers do; the step is scaled by the residual ratio
    of `residual_bytes`.
    """
    kw = dict(batch_size=measured.batch_size)
    ratio = residual_bytes(config, remat=True, **kw) / residual_bytes(config, remat=False, **kw)
    return dataclasses.replace(measured, step_bytes=int(measured.step_bytes * ratio), remat=True,
                               estimate=f"estimated: XLA:{measured.measured_on} step without "
                                        f"remat x {ratio:.2f} (saved residuals with/without)")


def members_per_device(memory: StepMemory, budget_bytes: float, strategy: str) -> int:
    """The most members one device holds in `budget_bytes` (with G = 1; 'vmap': all at once)."""
    if strategy == "vmap":
        return max(0, int(budget_bytes // (memory.state_bytes + memory.step_bytes)))
    copies = STATE_COPIES.get(strategy, 1)
    return max(0, int((budget_bytes - memory.step_bytes) // (copies * memory.state_bytes)))


def choose_group_size(memory: StepMemory, budget_bytes: float, num_members: int,
                      num_devices: int, max_group: int = MAX_AUTO_GROUP) -> int:
    """The largest G <= max_group whose 'groups' program (padding included) fits the budget.

    Raises:
      ValueError: not even G = 1 fits; the message gives the numbers.
    """
    best = 0
    for g in range(1, max_group + 1):
        size, padded = packing.group_layout(num_members, num_devices, g)
        if memory.program_bytes(padded // num_devices, size, "groups") <= budget_bytes:
            best = size
    if best < 1:
        per_device = math.ceil(num_members / num_devices)
        need = memory.program_bytes(per_device, 1, "groups")
        raise ValueError(f"{num_members} members over {num_devices} device(s) need "
                         f"{need / 2**30:.1f} GiB per device with one member's step at a time "
                         f"({memory.describe()}), more than the {budget_bytes / 2**30:.1f} GiB "
                         "budget; train fewer members per program, or use execution.remat='on' "
                         "or model.dtype='bfloat16'")
    return best


def device_budget_bytes(device: jax.Device | None = None) -> int | None:
    """The allocator's limit of a local accelerator (`memory_stats()['bytes_limit']`), else None.

    On GPU this is XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.75) of the device's memory.
    """
    device = device or jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return None


@dataclasses.dataclass(frozen=True)
class Execution:
    """How a program runs: the concrete strategy, G of 'groups', remat, and why."""

    strategy: str
    group_size: int
    remat: bool
    note: str = ""


def resolve_execution(config: ml_collections.ConfigDict, *, platform: str, num_members: int,
                      num_devices: int, batch_size: int, budget_bytes: float | None = None
                      ) -> Execution:
    """The program's execution from `config.execution` (its 'auto' and 0 fields resolved).

    strategy: `packing.resolve_strategy`. For 'groups' with group_size 0 on an accelerator, G is
    the largest that fits `budget_bytes` (default: the allocator's limit of the local device),
    measured with `measure_member_step` at the program's batch; remat 'auto' is then on only
    if G = 1 does not fit without it. On CPU (no allocator limit), group_size 0 means one group
    per device (plain vmap) and remat 'auto' is off. The launcher resolves all of this when it
    plans a sweep and pins the result in each program's config, so a launched program compiles
    no extra step here.
    """
    ex = config.execution
    strategy = packing.resolve_strategy(ex.strategy, platform, model_width=int(config.model.width),
                                        num_members=num_members, num_devices=num_devices)
    remat = ex.remat == "on"
    group = int(ex.group_size)
    if strategy != "groups" or (group and ex.remat != "auto"):
        return Execution(strategy, group if strategy == "groups" else 0, remat)
    budget = budget_bytes if budget_bytes is not None else (
        None if platform == "cpu" else device_budget_bytes())
    if budget is None:
        return Execution(strategy, group, remat, "no allocator limit: one group per device")
    options = [remat] if ex.remat != "auto" else [False, True]
    error = None
    for option in options:
        memory = measure_member_step(config, batch_size=batch_size, remat=option)
        try:
            best = choose_group_size(memory, budget, num_members, num_devices)
        except ValueError as e:
            error = e
            continue
        size = group or best
        return Execution(strategy, size, option, f"G={size} of {best} that fit "
                         f"{budget / 2**30:.1f} GiB: {memory.describe()}")
    raise error
