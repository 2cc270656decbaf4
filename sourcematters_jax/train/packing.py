"""Members packed on a leading axis, and the execution strategies that run them over devices.

Host side: `pack_member_arrays` pads every member's splits to a common length (index 0, mask
False) so that M members stack into one array per field.

Device side: a `Runner` places member-axis pytrees (the same tree structure for every strategy,
`train.placed`) and lifts a per-member function `f(*member_args, *shared_args)` to all members,
its member parameters named (`runner.lift(f, member=("state", "data"), donate=("state",))`):
  'vmap'     jit(shard_map(vmap(f))): the member axis is sharded over a 1-D device mesh, and
             each device vectorises its members (convolutions become grouped convolutions).
  'groups'   jit(shard_map(fori_loop over groups of vmap(f)))): each device vectorises G members
             at a time and runs its groups one after another inside one program, updating the
             donated member state in place (every member's state, one group's activations).
  'lax_map'  jit(shard_map(lax.map(f))): each device runs its members one after another inside
             one program (compact memory; slow on XLA:CPU, see docs/performance.md).
  'loop'     a Python loop over jit(f) (train.loop_runner), one member at a time, each member's
             state on its own device; devices run concurrently through asynchronous dispatch.
shard_map keeps every member's computation on one device: there is no cross-device traffic in
any step, and BatchNorm statistics are per member by construction. For 'vmap'/'groups'/'lax_map'
the member count is padded to a multiple of the device count (times the number of groups for
'groups') with copies of the last member; the padding never reaches the host (`to_host` drops it).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sourcematters_jax.data.types import SPLITS, MemberData, SplitIndex
from sourcematters_jax.train.loop_runner import LoopRunner
from sourcematters_jax.train.placed import Lifted, MemberSignature, Runner
from sourcematters_jax.train.step import Examples, MemberArrays

MEMBER_AXIS = "members"
STRATEGIES = ("vmap", "groups", "lax_map", "loop")
# On CPU, members at least this wide (ResNet50's 64) train faster as M single-member programs
# spread over the host devices ('loop') than vmapped: benchmarks/results/*_cpu2_resnet50_*.md.
CPU_LOOP_MIN_WIDTH = 64


# ---------------------------------------------------------------------------------------------
# Host-side packing
# ---------------------------------------------------------------------------------------------

def padded_length(max_len: int, batch: int) -> int:
    """Round `max_len` up to a multiple of min(batch, max_len) (at least 1)."""
    max_len = max(max_len, 1)
    step = min(batch, max_len)
    return math.ceil(max_len / step) * step


def _pad_split(split: SplitIndex, length: int) -> Examples:
    n = len(split.indices)
    indices = np.zeros(length, np.int32)
    confounded = np.zeros(length, bool)
    mask = np.zeros(length, bool)
    indices[:n] = split.indices
    confounded[:n] = split.confounded
    mask[:n] = True
    return Examples(indices=indices, confounded=confounded, mask=mask)


def _split_of(md: MemberData, split: str) -> SplitIndex:
    """A member's split by name: one of SPLITS or an extra test (MemberData.extra_tests)."""
    return md.extra_tests[split] if split in md.extra_tests else getattr(md, split)


def longest_splits(members_data: Sequence[MemberData]) -> dict[str, int]:
    """{split: the longest member's length} over SPLITS and the extra tests; pass a sweep's to
    pad its programs alike."""
    names = [*SPLITS, *dict.fromkeys(n for md in members_data for n in md.extra_tests)]
    return {split: max(len(_split_of(md, split).indices) for md in members_data
                       if split in SPLITS or split in md.extra_tests)
            for split in names}


def train_layout(members_data: Sequence[MemberData], batch_size: int,
                 pad_to: Mapping[str, int] | None = None) -> tuple[int, int]:
    """(effective batch, steps per epoch): one pass over the largest member's training set.

    The batch is min(batch_size, largest training set), so a study batch of 256 on ~220
    images is one full-set step per epoch (as in Keras) without computing padded rows.
    `pad_to` ({split: length}, e.g. `longest_splits` of the whole sweep) raises the lengths
    the layout is computed for, so every program of a sweep gets the same shapes.
    """
    largest = max(longest_splits(members_data)["train"], (pad_to or {}).get("train", 0))
    if largest == 0:
        raise ValueError("every member has an empty training set")
    batch = min(batch_size, largest)
    return batch, math.ceil(largest / batch)


def pack_member_arrays(members_data: Sequence[MemberData], *, batch_size: int,
                       eval_batch_size: int, pad_to: Mapping[str, int] | None = None
                       ) -> MemberArrays:
    """Stack members' splits as numpy [M, n_pad] arrays (train padded to steps * batch).

    Extra test splits (MemberData.extra_tests) must be the same names for every member.
    """
    batch, steps = train_layout(members_data, batch_size, pad_to)
    extra_names = list(members_data[0].extra_tests)
    for i, md in enumerate(members_data):
        if list(md.extra_tests) != extra_names:
            raise ValueError(f"member {i} has extra test splits {list(md.extra_tests)}, member 0 "
                             f"{extra_names}: every member of a program needs the same ones")
    names = [*SPLITS, *extra_names]
    lengths = {"train": batch * steps}
    longest = longest_splits(members_data)
    for split in names[1:]:
        lengths[split] = padded_length(max(longest[split], (pad_to or {}).get(split, 0)),
                                       eval_batch_size)
    for i, md in enumerate(members_data):
        for split in names:
            if len(_split_of(md, split).indices) == 0:
                raise ValueError(f"member {i}: split {split!r} is empty")
    stacked = {}
    for split in names:
        per_member = [_pad_split(_split_of(md, split), lengths[split]) for md in members_data]
        stacked[split] = jax.tree.map(lambda *xs: np.stack(xs), *per_member)
    return MemberArrays(**{s: stacked[s] for s in SPLITS},
                        extra_tests={s: stacked[s] for s in extra_names})


def stack_trees(trees: Sequence[Any]) -> Any:
    """Stack same-structured pytrees on a new leading axis (numpy)."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


# ---------------------------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------------------------

def resolve_strategy(strategy: str, platform: str, *, model_width: int, num_members: int,
                     num_devices: int) -> str:
    """The concrete strategy for 'auto' (any other strategy is checked and returned as is).

    Accelerators: 'groups' (one program holding every member's state; G members vectorised at a
    time, G from the memory estimate: `group_layout`, `train.memory`). CPU, as measured on a 2-core host
    (docs/performance.md): for the study's ResNet50 width, 'loop' over one host device per core
    beats 'vmap' at every member count at 64 and 128 px, because vmap turns each convolution into
    a grouped convolution that XLA:CPU runs slower than M plain ones; for the narrow test and demo
    variants a step is dispatch-bound and 'vmap' is fastest, unless there are fewer members than
    devices (vmap would compute padded copies). 'lax_map' is never chosen (pathological on CPU).
    With several processes (jax.distributed) 'loop' is not available: its members live on
    single local devices, and only the sharded strategies span the processes' global mesh.
    """
    processes = jax.process_count()
    if strategy != "auto":
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown execution strategy {strategy!r}; expected 'auto' or one of "
                             f"{STRATEGIES}")
        if strategy == "loop" and processes > 1:
            raise ValueError(f"config.execution.strategy='loop' runs on one process, but this "
                             f"program has {processes} (jax.distributed); use 'vmap', 'groups', "
                             "'lax_map' or 'auto'")
        return strategy
    if platform != "cpu":
        return "groups"
    if processes == 1 and (model_width >= CPU_LOOP_MIN_WIDTH or num_members < num_devices):
        return "loop"
    return "vmap"


def group_layout(num_members: int, num_devices: int, group_size: int) -> tuple[int, int]:
    """(G, padded member count) of the 'groups' strategy.

    Each device holds ceil(M / devices) members; `group_size` (0 = all of a device's members,
    i.e. plain vmap) is capped at that and then balanced: with g = ceil(per_device / G) groups,
    G = ceil(per_device / g), so padding (copies of the last member) is under one per group.
    """
    if group_size < 0:
        raise ValueError(f"group_size must be >= 0 (0 = every member of a device), got {group_size}")
    per_device = math.ceil(num_members / num_devices)
    size = min(group_size or per_device, per_device)
    groups = math.ceil(per_device / size)
    size = math.ceil(per_device / groups)
    return size, num_devices * groups * size


def strategy_group_size(strategy: str, group_size: int = 0) -> int:
    """The `group_layout` group size of a concrete strategy: 'vmap' is one group of a device's
    members (0), 'lax_map' and 'loop' run members one at a time (1), 'groups' uses `group_size`."""
    return {"vmap": 0, "groups": group_size, "lax_map": 1, "loop": 1}[strategy]


def select_devices(num_devices: int) -> list[jax.Device]:
    """The program's devices: the first `num_devices` local devices (all when 0).

    With several processes (jax.distributed) the program spans them: every process's devices,
    the global `jax.devices()` (process 0's first), and `num_devices` counts global devices
    (0 or all of them: each process must hold shards of the member axis).
    """
    processes = jax.process_count()
    devices = jax.devices() if processes > 1 else jax.local_devices()
    if num_devices < 0 or num_devices > len(devices):
        raise ValueError(f"execution.num_devices={num_devices}, but {len(devices)} devices exist")
    if processes > 1 and num_devices not in (0, len(devices)):
        raise ValueError(f"execution.num_devices={num_devices}: a program of {processes} "
                         f"processes runs on all {len(devices)} global devices; set 0")
    return devices[:num_devices] if num_devices else devices


class ShardedRunner(Runner):
    """'vmap', 'groups' and 'lax_map': one jitted program, member axis sharded over a mesh."""

    def __init__(self, strategy: str, num_members: int, devices: Sequence[jax.Device],
                 group_size: int = 0):
        if strategy not in ("vmap", "groups", "lax_map"):
            raise ValueError(f"ShardedRunner runs 'vmap', 'groups' or 'lax_map', not {strategy!r}")
        self.strategy = strategy
        self.num_members = num_members
        self.devices = list(devices)
        self.mesh = Mesh(np.array(self.devices), (MEMBER_AXIS,))
        self.group_size, self.padded_members = group_layout(
            num_members, len(self.devices), strategy_group_size(strategy, group_size))
        self.member_sharding = NamedSharding(self.mesh, P(MEMBER_AXIS))
        self.replicated = NamedSharding(self.mesh, P())

    # With several processes (jax.distributed) the mesh spans them: every process holds the
    # same host data and supplies only its addressable shards (`make_array_from_callback`), and
    # `to_host` gathers the member axis from every process (`process_allgather`).

    def put_members(self, tree: Any) -> Any:
        def put(x):
            x = np.asarray(x)
            if x.shape[0] != self.num_members:
                raise ValueError(f"member axis has {x.shape[0]} entries, expected {self.num_members}")
            pad = self.padded_members - self.num_members
            if pad:
                x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
            return self._put(x, self.member_sharding)
        return jax.tree.map(put, tree)

    def put_shared(self, tree: Any) -> Any:
        return jax.tree.map(lambda x: self._put(np.asarray(x), self.replicated), tree)

    def to_host(self, placed: Any) -> Any:
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            placed = multihost_utils.process_allgather(placed, tiled=True)
        return jax.tree.map(lambda x: np.asarray(jax.device_get(x))[: self.num_members], placed)

    @staticmethod
    def _put(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    def device_of(self, member: int) -> jax.Device:
        per_device = self.padded_members // len(self.devices)
        return self.devices[member // per_device]

    def abstract_members(self, member_tree: Any) -> Any:
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(
            (self.padded_members,) + tuple(np.shape(s)), s.dtype, sharding=self.member_sharding),
            member_tree)

    def lift(self, fn: Callable, member: Sequence[str], donate: Sequence[str] = (),
             passthrough: Sequence[str] = ()) -> Lifted:
        signature = MemberSignature.of(fn, member, donate, passthrough)
        k = signature.num_member
        strategy, size = self.strategy, self.group_size
        donate_argnums = signature.donate_argnums
        in_place = tuple(i for i in donate_argnums if i < k)

        def local(*args):
            member_args, shared = args[:k], args[k:]
            if strategy == "lax_map":
                return jax.lax.map(lambda m: fn(*m, *shared), member_args)
            return run_groups(fn, member_args, shared, size, in_place, axis_name=MEMBER_AXIS)

        def program(*args):
            specs = (P(MEMBER_AXIS),) * k + (P(),) * (len(args) - k)
            return jax.shard_map(local, mesh=self.mesh, in_specs=specs,
                                 out_specs=P(MEMBER_AXIS))(*args)

        jitted = jax.jit(program, donate_argnums=donate_argnums)
        return Lifted(lambda *args, skip=None: jitted(*args), signature, jitted)


def run_groups(fn: Callable, member_args: Sequence[Any], shared: Sequence[Any], size: int,
               in_place: Sequence[int] = (), axis_name: str | None = None) -> Any:
    """fn over the leading member axis of `member_args`, vmapped `size` members at a time.

    The groups run one after another in a `fori_loop`. An output at position j in `in_place`
    (a donated argument whose structure the function returns, e.g. the train state) is written
    back into that argument's buffer group by group (dynamic_update_slice on the loop carry), so
    XLA can keep one copy of every member's state; other outputs fill fresh buffers. One group
    (size = all members) is plain vmap. Chosen over `jax.lax.map(..., batch_size=G)` (a scan
    whose stacked outputs are new buffers) by XLA's memory analysis on CPU: for a step whose
    outputs read no float state the fori_loop is in place (240 bytes of temporaries) where
    lax.map holds the state twice (tests/test_train_strategy.py); with a float reduction over
    the state, as in the real step, XLA:CPU copies the state once either way (docs/performance.md). Inside `shard_map` pass its `axis_name`: the fresh output
    buffers are then marked as varying over it, like the member arguments.
    """
    member_args = tuple(member_args)
    n = jax.tree.leaves(member_args)[0].shape[0]
    vmapped = jax.vmap(fn, in_axes=(0,) * len(member_args) + (None,) * len(shared))
    if size >= n:
        return vmapped(*member_args, *shared)
    if n % size:
        raise ValueError(f"{n} members do not split into groups of {size}")
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), member_args)
    out_shapes = jax.eval_shape(lambda *m: fn(*m, *shared), *one)
    single = not isinstance(out_shapes, tuple)
    out_shapes = (out_shapes,) if single else out_shapes

    def same(j: int) -> bool:
        return (j < len(out_shapes) and jax.tree.structure(out_shapes[j]) ==
                jax.tree.structure(one[j]) and all(
                    (a.shape, a.dtype) == (b.shape, b.dtype) for a, b in
                    zip(jax.tree.leaves(out_shapes[j]), jax.tree.leaves(one[j]))))

    in_place = tuple(j for j in in_place if same(j))
    def zeros(s):
        z = jax.numpy.zeros((n,) + s.shape, s.dtype)
        return z if axis_name is None else jax.lax.pcast(z, (axis_name,), to="varying")

    fresh = tuple(None if j in in_place else jax.tree.map(zeros, o)
                  for j, o in enumerate(out_shapes))
    carried = tuple(member_args[j] for j in in_place)

    def body(g, carry):
        carried, fresh = carry
        start = g * size
        take = lambda a: jax.lax.dynamic_slice_in_dim(a, start, size)  # noqa: E731
        put = lambda a, u: jax.lax.dynamic_update_slice_in_dim(a, u, start, 0)  # noqa: E731
        args = list(member_args)
        for j, c in zip(in_place, carried):
            args[j] = c
        out = vmapped(*jax.tree.map(take, tuple(args)), *shared)
        out = (out,) if single else out
        carried = tuple(jax.tree.map(put, c, out[j]) for j, c in zip(in_place, carried))
        fresh = tuple(None if f is None else jax.tree.map(put, f, out[j])
                      for j, f in enumerate(fresh))
        return carried, fresh

    carried, fresh = jax.lax.fori_loop(0, n // size, body, (carried, fresh))
    outs = tuple(carried[in_place.index(j)] if j in in_place else fresh[j]
                 for j in range(len(out_shapes)))
    return outs[0] if single else outs


def make_runner(strategy: str, num_members: int, devices: Sequence[jax.Device],
                group_size: int = 0) -> Runner:
    """The Runner for a concrete strategy ('vmap', 'groups', 'lax_map' or 'loop').

    `group_size` is G of 'groups' (0 = a device's members in one group); other strategies
    ignore it.
    """
    if num_members < 1:
        raise ValueError("a program needs at least one member")
    if strategy == "loop":
        if jax.process_count() > 1:
            raise ValueError("the 'loop' strategy runs on one process; a program of several "
                             "processes needs 'vmap', 'groups' or 'lax_map'")
        return LoopRunner(num_members, devices)
    return ShardedRunner(strategy, num_members, devices, group_size)
