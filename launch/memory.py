"""How many members fit into one program, and how that program runs, from a device budget.

`plan_capacity` answers, for a config's sweep on a target platform and device size:

1. **the batch that will run**: min(batch_size, the largest training set of the sweep), read
   from the study's shipped split files (chest14 experiments); other datasets use batch_size
   (an upper bound, and the plan says so);
2. **the budget**: `--device_memory_gib`, but on GPU JAX's allocator only takes
   XLA_PYTHON_CLIENT_MEM_FRACTION of the device (default 0.75): planning for a GPU uses
   flag x fraction, and on the target device itself min(flag, the allocator's `bytes_limit`);
   `reserve_fraction` of it is kept for the image pool and the runtime;
3. **the memory of what will run**: `sourcematters_jax.train.memory.measure_member_step` compiles
   (once: the result is cached on disk) the product's real single-member training step (model, Adam, masked BatchNorm, non-finite
   guard) at that batch; the strategy is the one `packing.resolve_strategy` picks for the target
   platform ('groups' on accelerators: every member's state plus one group's step);
4. **remat** 'auto': on only when it lets the sweep run in fewer programs; **G** of 'groups':
   the largest (<= 8) whose program fits. Planning for another platform than this machine's, the
   remat step is not compiled but estimated (`train.memory.estimate_remat`: the step without
   remat scaled by the ratio of the saved residuals), because XLA:CPU's schedule does not
   realise remat's saving that GPU/TPU schedulers do.

The chosen group size and remat are pinned in each program's config (`Plan.execution`), so a
launched program does not measure again. The compile is for the local backend (XLA:CPU when
planning a GPU sweep from a laptop): XLA:GPU/TPU fuse differently, so the plan prints where the
step was measured; plan on the target when you can.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import ml_collections

from sourcematters_jax import experiments
from sourcematters_jax.train import memory as step_memory
from sourcematters_jax.train.memory import StepMemory

GIB = 1024**3
DEFAULT_GPU_MEM_FRACTION = 0.75  # JAX's default XLA_PYTHON_CLIENT_MEM_FRACTION
PLATFORMS = ("cpu", "gpu", "tpu")


@dataclasses.dataclass(frozen=True)
class CapacityPlan:
    """Members per program and how they run; `lines` explain why it fits."""

    capacity: int
    strategy: str
    group_size: int
    remat: bool
    memory: StepMemory
    budget_bytes: float
    lines: tuple[str, ...]

    def execution(self) -> dict[str, Any]:
        """config.execution fields to pin in every program (only for 'groups')."""
        if self.strategy != "groups":
            return {}
        return {"group_size": self.group_size, "remat": "on" if self.remat else "off"}


def effective_batch(config: ml_collections.ConfigDict) -> tuple[int, str]:
    """(min(batch_size, largest training set of the sweep), how it was found)."""
    batch = int(config.batch_size)
    experiment = experiments.get(config.experiment)
    # The study's chest X-ray datasets come with shipped split files; other data is built later.
    if config.dataset != experiment.dataset or experiment.modality != "xray":
        return batch, f"batch_size {batch} (training-set sizes of {config.dataset} not known here)"
    from sourcematters_jax.data import splits

    folds = [int(f) for f in config.sweep.fold]
    if experiment.split_design == experiments.FOLDS:
        tables = splits.load_chest14_splits().folds
        sizes = [len(tables[f - 1][0]) for f in folds]
    else:
        _, pools = splits.load_sex_splits()
        sizes = [len(pools[splits.sex_folder(p)].folds[f - 1][0])
                 for p in config.sweep.p_art for f in folds]
    largest = max(sizes)
    return min(batch, largest), (f"min(batch_size {batch}, largest training set {largest} of "
                                 f"folds {folds}) = {min(batch, largest)}")


def gpu_mem_fraction() -> float:
    """XLA_PYTHON_CLIENT_MEM_FRACTION as JAX reads it (default 0.75)."""
    value = os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "")
    try:
        return float(value) if value else DEFAULT_GPU_MEM_FRACTION
    except ValueError:
        raise ValueError(f"XLA_PYTHON_CLIENT_MEM_FRACTION={value!r} is not a number") from None


def device_budget(device_memory_gib: float, platform: str) -> tuple[float, str]:
    """(bytes one target device lets a program allocate, the reason), before the reserve.

    Raises:
      ValueError: no --device_memory_gib for a target platform this machine does not have.
    """
    import jax

    local = jax.default_backend()
    flag = device_memory_gib * GIB if device_memory_gib > 0 else None
    if platform == local and platform != "cpu":
        limit = step_memory.device_budget_bytes()
        if limit is not None:
            if flag is None or limit <= flag:
                return limit, (f"allocator limit of this {platform} ({limit / GIB:.1f} GiB, "
                               "memory_stats bytes_limit)" + (f" <= --device_memory_gib "
                                                              f"{device_memory_gib:g}" if flag else ""))
            return flag, (f"--device_memory_gib {device_memory_gib:g} <= allocator limit "
                          f"{limit / GIB:.1f} GiB")
    if flag is None:
        if platform == "cpu" and local == "cpu":
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
            return ram, f"half of this machine's RAM ({ram / GIB:.1f} GiB)"
        raise ValueError(f"--device_memory_gib is needed to plan for {platform} on this "
                         f"{local} machine (e.g. 80 for an H100)")
    if platform == "gpu":
        fraction = gpu_mem_fraction()
        return flag * fraction, (f"{fraction:g} x --device_memory_gib {device_memory_gib:g} = "
                                 f"{flag * fraction / GIB:.1f} GiB (JAX's GPU allocator takes "
                                 "XLA_PYTHON_CLIENT_MEM_FRACTION of the device, default 0.75)")
    return flag, f"--device_memory_gib {device_memory_gib:g}"


def plan_capacity(config: ml_collections.ConfigDict, *, platform: str, devices: int,
                  num_members: int, device_memory_gib: float, reserve_fraction: float = 0.1
                  ) -> CapacityPlan:
    """Members per program for `num_members` members of one experiment (module docstring).

    Raises:
      ValueError: not even one member fits a device; the message gives the numbers.
    """
    import jax

    from sourcematters_jax.train import packing

    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; expected one of {PLATFORMS}")
    batch, batch_note = effective_batch(config)
    budget, budget_note = device_budget(device_memory_gib, platform)
    usable = budget * (1.0 - reserve_fraction)
    strategy = packing.resolve_strategy(config.execution.strategy, platform,
                                        model_width=int(config.model.width),
                                        num_members=num_members, num_devices=devices)
    remat_mode = config.execution.remat
    options = {"on": [True], "off": [False]}.get(remat_mode, [False, True])
    local = jax.default_backend()
    choice, measured = None, []
    for remat in options:
        if remat and platform != local:  # estimated from the step without remat
            base = next((m for m in measured if not m.remat), None) or \
                step_memory.measure_member_step(config, batch_size=batch, remat=False)
            memory = step_memory.estimate_remat(config, base)
        else:
            memory = step_memory.measure_member_step(config, batch_size=batch, remat=remat)
        measured.append(memory)
        per_device = step_memory.members_per_device(memory, usable, strategy)
        if per_device < 1:
            continue
        programs = math.ceil(num_members / (per_device * devices))
        if choice is None or programs < choice[0]:
            choice = (programs, remat, memory, per_device)
        if programs == 1:
            break  # remat cannot do better than one program
    if choice is None:
        worst = measured[-1]
        raise ValueError(
            f"one member needs {(worst.state_bytes + worst.step_bytes) / 2**20:.0f} MiB "
            f"({worst.describe()}) but a device offers {usable / 2**20:.0f} MiB "
            f"({1 - reserve_fraction:.0%} of {budget_note}); lower batch_size or image_size, "
            "or use model.dtype='bfloat16'")
    programs, remat, memory, per_device = choice
    capacity = per_device * devices
    largest = math.ceil(num_members / programs)
    requested = 0
    if strategy == "groups":
        requested = int(config.execution.group_size) or step_memory.choose_group_size(
            memory, usable, largest, devices)
    group, padded = packing.group_layout(largest, devices,
                                         packing.strategy_group_size(strategy, requested))
    on_device = padded // devices
    need = memory.program_bytes(on_device, group, strategy)
    copies = step_memory.STATE_COPIES.get(strategy, 1)
    lines = (
        f"platform {platform}, strategy {strategy}"
        + (f" (G={group})" if strategy == "groups" else "") + f", remat {'on' if remat else 'off'}"
        + (" (auto: fewer programs)" if remat and remat_mode == "auto" else ""),
        f"batch: {batch_note}",
        f"member: {memory.describe()}",
        f"budget per device: {budget_note}; usable {usable / GIB:.1f} GiB after the "
        f"{reserve_fraction:.0%} reserve",
        f"largest program per device: {on_device} members x {copies} x "
        f"{memory.state_bytes / 2**20:.0f} MiB state = "
        f"{copies * on_device * memory.state_bytes / GIB:.1f} GiB + {group} x "
        f"{memory.step_bytes / GIB:.2f} GiB step = {need / GIB:.1f} GiB <= {usable / GIB:.1f} GiB",
    )
    return CapacityPlan(capacity=capacity, strategy=strategy, group_size=group, remat=remat,
                        memory=memory, budget_bytes=budget, lines=lines)
