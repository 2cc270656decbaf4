"""How many members fit into one program: a per-member memory estimate against a device budget.

A member's device memory is its training state plus the activations of its training step:

  state  = 4 bytes x params x 5      params, gradients, Adam mu and nu, best-val-loss copy
         + 4 bytes x BN stats x 2    running statistics and their best-val-loss copy
  act    = activation bytes per image x batch_size   (+ a per-step constant)

`params` and `BN stats` are counted exactly from the model's abstract init (`jax.eval_shape`,
no FLOPs). The activation bytes per image are measured, not guessed: a single-member training step
(forward, backward, BN updates) of the config's model at the config's image size is lowered and
compiled for batch 1 and batch 2, and XLA's `compiled.memory_analysis().temp_size_in_bytes` gives
the working memory of each; their difference is the per-image cost and the rest the constant. The
compile targets the launcher's own backend: run the launcher on the target platform when you can,
since XLA:GPU/TPU fuse (and so allocate) differently from XLA:CPU.
Examples (float32, XLA:CPU): ResNet50 at 224 px is 23.5 M params (449 MiB of state) and about
117 MiB of activations per image, so one member at the study's batch 256 needs about 30 GiB;
the demo's tiny ResNet at 64 px needs about 0.5 MiB per image.

With execution strategy 'vmap' (and 'auto', counted as vmap to be safe) every member's
activations live at once; with 'loop' or 'lax_map' members take turns, so only one member's
activations count. The data pool (uint8, shared by the program's members) and the runtime's own
needs are covered by `reserve_fraction` of the budget. Members are sharded over the devices of a
program, so a program holds `members_per_device x devices` members.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

GIB = 1024**3
# params, grads, Adam mu, Adam nu, best-so-far params.
PARAM_COPIES = 5
# BN running statistics and their best-so-far copy.
STAT_COPIES = 2


@dataclasses.dataclass(frozen=True)
class MemberMemory:
    """Estimated device bytes of one member (see the module docstring for the model)."""

    num_params: int
    num_stats: int
    state_bytes: int
    activation_bytes_per_image: int
    step_constant_bytes: int
    batch_size: int

    @property
    def activation_bytes(self) -> int:
        return self.activation_bytes_per_image * self.batch_size + self.step_constant_bytes

    def members_per_device(self, budget_bytes: float, strategy: str) -> int:
        """How many members fit in `budget_bytes` of one device under an execution strategy."""
        if strategy in ("vmap", "auto"):
            per_member = self.state_bytes + self.activation_bytes
            return max(0, int(budget_bytes // per_member))
        left = budget_bytes - self.activation_bytes
        return max(0, int(left // self.state_bytes))

    def describe(self) -> str:
        return (f"{self.num_params / 1e6:.2f} M params -> {self.state_bytes / 2**20:.1f} MiB state; "
                f"{self.activation_bytes_per_image / 2**20:.2f} MiB activations/image x batch "
                f"{self.batch_size} = {self.activation_bytes / 2**20:.1f} MiB")


def _model(config: ml_collections.ConfigDict):
    from sourcematters_jax.train.state import build_model

    return build_model(config.model.to_dict(), config.dropout_rate)


def _size(tree: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def estimate_member_memory(config: ml_collections.ConfigDict) -> MemberMemory:
    """Measure the memory of one member of `config` (model, image_size, batch_size)."""
    model = _model(config)
    size = int(config.image_size)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    variables = jax.eval_shape(lambda: model.init(rngs, jnp.zeros((1, size, size, 3)), train=False))
    params, stats = variables["params"], variables.get("batch_stats", {})

    def loss(p, s, x, y):
        logits, updates = model.apply({"params": p, "batch_stats": s}, x, train=True,
                                      mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
        onehot = jax.nn.one_hot(y, logits.shape[-1])
        return -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(logits), -1)), updates

    def temp_bytes(batch: int) -> int:
        x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
        y = jax.ShapeDtypeStruct((batch,), jnp.int32)
        compiled = jax.jit(jax.grad(loss, has_aux=True)).lower(params, stats, x, y).compile()
        analysis = compiled.memory_analysis()
        if analysis is None:
            raise RuntimeError(f"XLA reports no memory analysis on {jax.default_backend()}; "
                               "pass --activation_mib_per_image")
        return int(analysis.temp_size_in_bytes)

    one, two = temp_bytes(1), temp_bytes(2)
    per_image = max(two - one, 0)
    num_params, num_stats = _size(params), _size(stats)
    return MemberMemory(
        num_params=num_params,
        num_stats=num_stats,
        state_bytes=4 * (PARAM_COPIES * num_params + STAT_COPIES * num_stats),
        activation_bytes_per_image=per_image,
        step_constant_bytes=max(one - per_image, 0),
        batch_size=int(config.batch_size),
    )


def device_memory_bytes() -> int:
    """Memory of the local accelerator (its allocator limit), or half the host RAM on CPU."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)


def members_per_program(memory: MemberMemory, *, device_memory_gib: float, devices: int,
                        strategy: str, reserve_fraction: float = 0.1) -> int:
    """Members per program for `devices` devices of `device_memory_gib` each (0 = this machine's).

    Raises:
      ValueError: not even one member fits one device; the message gives the numbers.
    """
    budget = device_memory_gib * GIB if device_memory_gib > 0 else device_memory_bytes()
    usable = budget * (1.0 - reserve_fraction)
    per_device = memory.members_per_device(usable, strategy)
    if per_device < 1:
        raise ValueError(
            f"one member needs {math.ceil((memory.state_bytes + memory.activation_bytes) / 2**20)} MiB "
            f"({memory.describe()}) but a device offers {usable / 2**20:.0f} MiB "
            f"({1 - reserve_fraction:.0%} of {budget / GIB:.1f} GiB); lower batch_size or image_size")
    return per_device * max(1, devices)
