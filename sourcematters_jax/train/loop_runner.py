"""The 'loop' strategy: a Python loop over one jitted single-member function.

Members are split over the devices in contiguous blocks (as the sharded runners assign them);
devices run concurrently through asynchronous dispatch. Placed trees keep the state's own
structure with `placed.PerMember` leaves, so callers see the sharded strategies' view.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import numpy as np

from sourcematters_jax.train import placed
from sourcematters_jax.train.placed import Lifted, MemberSignature, Runner


class LoopRunner(Runner):
    """'loop': a Python loop over a jitted single-member function; members split over devices.

    Placed member trees keep the state's structure with `placed.PerMember` leaves (member m's
    array committed to its device); shared trees hold `placed.PerDevice` leaves (one copy per
    device). A lifted call slices member m's tree for its jitted call and reassembles the
    outputs, so callers see the same view as for the sharded strategies.
    """

    strategy = "loop"
    group_size = 1  # one member at a time (as `packing.strategy_group_size`)

    def __init__(self, num_members: int, devices: Sequence[jax.Device]):
        self.num_members = num_members
        self.devices = list(devices)
        # Contiguous blocks, as the sharded runners assign members.
        per_device = math.ceil(num_members / len(self.devices))
        self._device_index = [m // per_device for m in range(num_members)]

    def device_of(self, member: int) -> jax.Device:
        return self.devices[self._device_index[member]]

    def put_members(self, tree: Any) -> Any:
        leading = {np.shape(x)[0] for x in jax.tree.leaves(tree)}
        if leading != {self.num_members}:
            raise ValueError(f"member axis has {sorted(leading)} entries, expected {self.num_members}")
        return placed.assemble([
            jax.device_put(jax.tree.map(lambda x: np.asarray(x)[m], tree), self.device_of(m))
            for m in range(self.num_members)])

    def put_shared(self, tree: Any) -> Any:
        return placed.assemble([jax.device_put(tree, d) for d in self.devices], placed.PerDevice)

    def to_host(self, tree: Any) -> Any:
        return placed.stack_host(tree)

    def abstract_members(self, member_tree: Any) -> Any:
        return placed.assemble([jax.tree.map(lambda s: jax.ShapeDtypeStruct(
            np.shape(s), s.dtype, sharding=jax.sharding.SingleDeviceSharding(self.device_of(m))),
            member_tree) for m in range(self.num_members)])

    def lift(self, fn: Callable, member: Sequence[str], donate: Sequence[str] = (),
             passthrough: Sequence[str] = ()) -> Lifted:
        signature = MemberSignature.of(fn, member, donate, passthrough)
        k, kept = signature.num_member, signature.passthrough_argnums
        jitted = jax.jit(fn, donate_argnums=signature.donate_argnums)

        def run(*args: Any, skip: Sequence[bool] | None = None) -> Any:
            n, per_device = self.num_members, len(self.devices)
            by_member = list(zip(*(placed.split(a, n) for a in args[:k])))
            by_device = list(zip(*(placed.split(s, per_device) for s in args[k:]))) or (
                [()] * per_device)
            outs = []
            for m, mine in enumerate(by_member):
                if skip is not None and skip[m]:  # its outputs are its passthrough args
                    outs.append(tuple(mine[j] for j in kept) if len(kept) > 1 else mine[kept[0]])
                    continue
                outs.append(jitted(*mine, *by_device[self._device_index[m]]))
            return placed.assemble(outs)

        return Lifted(run, signature)
