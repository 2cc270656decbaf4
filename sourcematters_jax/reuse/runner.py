"""Chosen members on devices, packed as in training: per-member functions over their splits.

The members' best weights (no optimizer state) and preprocessing constants are stacked on a
member axis and placed by the trainer's own `packing.Runner` (the config's execution strategy
and devices, 'auto' resolved as in training), the image pool is put on every device once, and a
per-member function `fn(weights, arrays, pool)` is lifted to all members, so evaluating or
extracting features from M members costs what the trainer's test evaluation does.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import ml_collections
import numpy as np
from flax import struct

from sourcematters_jax.data.types import ExperimentData, MemberData
from sourcematters_jax.reuse.members import LoadedMember
from sourcematters_jax.train import packing
from sourcematters_jax.train.state import preprocessing_constants
from sourcematters_jax.train.step import DevicePool, MemberArrays


@struct.dataclass
class MemberWeights:
    """One member's inference state: best weights plus its source's preprocessing."""

    params: Any
    batch_stats: Any
    pixel_mean: Any  # float32 [3]
    pixel_scale: Any  # float32 []


def stacked_weights(members: Sequence[LoadedMember]) -> MemberWeights:
    """The members' MemberWeights stacked on a leading member axis (host numpy)."""
    per_member = []
    for lm in members:
        mean, scale = preprocessing_constants(lm.row["preprocessing"])
        per_member.append(MemberWeights(params=lm.variables["params"],
                                        batch_stats=lm.variables["batch_stats"],
                                        pixel_mean=mean, pixel_scale=np.float32(scale)))
    return packing.stack_trees(per_member)


def make_runner(config: ml_collections.ConfigDict, num_members: int) -> packing.Runner:
    """The Runner training would use for `num_members` members of this config's model."""
    devices = packing.select_devices(config.execution.num_devices)
    strategy = packing.resolve_strategy(config.execution.strategy, devices[0].platform,
                                        model_width=config.model.width,
                                        num_members=num_members, num_devices=len(devices))
    return packing.make_runner(strategy, num_members, devices)


def pack_splits(members_data: Sequence[MemberData], config: ml_collections.ConfigDict
                ) -> MemberArrays:
    """Every member's splits padded and stacked as the trainer packs them (numpy).

    The training split is padded like the others (to a multiple of the eval batch), so every
    split can be evaluated in `config.eval_batch_size` batches.
    """
    return packing.pack_member_arrays(members_data, batch_size=config.eval_batch_size,
                                      eval_batch_size=config.eval_batch_size)


def run_members(fn: Callable[[MemberWeights, Any, DevicePool], Any],
                members: Sequence[LoadedMember], inputs: Any, data: ExperimentData,
                config: ml_collections.ConfigDict) -> Any:
    """fn(weights, inputs of the member, pool) for every member; host numpy, member axis first.

    `inputs` is a numpy pytree with a leading member axis (e.g. `pack_splits(...)`).
    """
    runner = make_runner(config, len(members))
    pool = runner.put_shared(DevicePool(images=np.asarray(data.pool.images),
                                        labels=np.asarray(data.pool.labels, np.int32)))
    def member_fn(weights, inputs, pool):
        return fn(weights, inputs, pool)

    lifted = runner.lift(member_fn, member=("weights", "inputs"))
    out = lifted(runner.put_members(stacked_weights(members)), runner.put_members(inputs), pool)
    return runner.to_host(out)
