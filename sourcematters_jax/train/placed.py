"""The runner interface: one placed-state view for every strategy, member arguments by name.

Placed trees. A `packing.Runner` places a member-axis pytree as a tree *of the same structure*
for every strategy, so callers read `train.stopped`, build `{"a": best.epoch, ...}` for one
`runner.to_host`, or hand the tree to a lifted function without knowing the strategy:
  sharded strategies  leaves are jax.Arrays with a leading (padded) member axis on the mesh
  'loop'              leaves are `PerMember`: M single-member arrays, member m on its device
Chosen over giving `Runner` accessor methods (`runner.field(tree, name)`, ...) because the
state's own structure is what every caller already knows: attribute access, dict building and
tree maps then need no strategy at all; only the loop runner (slicing member m for its jitted
call, reassembling outputs) and the checkpoint writer (whose 'per_member' on-disk layout is a
list of member trees, kept readable) look inside a `PerMember`. Shared trees of 'loop' hold
`PerDevice` leaves (one copy per device).

Both containers are pytree nodes whose children are their arrays, so `jax.device_get`,
`jax.block_until_ready` and `jax.tree.leaves` see every member's array.

Member arguments. `MemberSignature.of(fn, member=(...), donate=(...))` names which parameters of
a per-member function carry the member axis (they come first), which are donated, and which a
skipped member passes through unchanged; runners derive argument counts and donate_argnums
from it, so no call site counts positions. `Runner` is the interface every strategy implements;
`Lifted` the callable a lift returns.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
from typing import Any, Callable, Sequence

import jax
import numpy as np


class _Parts:
    """A leaf of a 'loop'-placed tree: one array per member or device (a pytree node)."""

    def __init__(self, parts: Sequence[Any]):
        self.parts = tuple(parts)

    def tree_flatten(self) -> tuple[tuple[Any, ...], None]:
        return self.parts, None

    @classmethod
    def tree_unflatten(cls, aux: None, parts: Sequence[Any]) -> "_Parts":
        return cls(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.parts)} parts)"


@jax.tree_util.register_pytree_node_class
class PerMember(_Parts):
    """One leaf of a 'loop'-placed member tree: `parts[m]` is member m's array, on its device."""


@jax.tree_util.register_pytree_node_class
class PerDevice(_Parts):
    """One leaf of a 'loop'-placed shared tree: `parts[d]` is the copy on device d."""


def _is_parts(x: Any) -> bool:
    return isinstance(x, _Parts)


def assemble(trees: Sequence[Any], kind: type[_Parts] = PerMember) -> Any:
    """[tree of member 0, tree of member 1, ...] -> one tree with `kind` leaves."""
    first, treedef = jax.tree.flatten(trees[0])  # one flatten per tree (a dispatch-path cost)
    columns = [first] + [treedef.flatten_up_to(t) for t in trees[1:]]
    return treedef.unflatten([kind(xs) for xs in zip(*columns)])


def split(tree: Any, count: int | None = None) -> list[Any]:
    """A tree with `PerMember` (or `PerDevice`) leaves -> the list of its members' (devices')
    trees, the inverse of `assemble`; `count` is needed only for a tree without leaves."""
    leaves, treedef = jax.tree.flatten(tree, is_leaf=_is_parts)
    count = len(leaves[0].parts) if leaves else (count or 0)
    return [treedef.unflatten([x.parts[m] for x in leaves]) for m in range(count)]


def is_per_member(tree: Any) -> bool:
    """True for a 'loop'-placed tree (its leaves are `PerMember`)."""
    return any(isinstance(x, PerMember) for x in jax.tree.leaves(tree, is_leaf=_is_parts))


def stack_host(tree: Any) -> Any:
    """A placed tree with `PerMember` leaves -> numpy with a leading member axis (one transfer)."""
    host = jax.device_get(tree)
    return jax.tree.map(lambda x: np.stack([np.asarray(p) for p in x.parts]), host,
                        is_leaf=_is_parts)


@dataclasses.dataclass(frozen=True)
class MemberSignature:
    """Which parameters of a per-member function carry the member axis, by name.

    params: the function's parameter names, in order; member: the leading ones holding one
    member each (the rest are shared by every member); donate: parameters whose buffers the
    call may reuse; passthrough: member parameters returned unchanged, in output order, by a
    member the caller asks to skip (`skip=`).
    """

    params: tuple[str, ...]
    member: tuple[str, ...]
    donate: tuple[str, ...] = ()
    passthrough: tuple[str, ...] = ()

    @classmethod
    def of(cls, fn: Callable, member: Sequence[str], donate: Sequence[str] = (),
           passthrough: Sequence[str] = ()) -> "MemberSignature":
        """The signature of `fn` with the named member/donated/passthrough parameters.

        Raises ValueError naming the parameter if a name is not one of fn's parameters, the
        member parameters are not fn's leading ones, or a passthrough one is not a member one.
        """
        params = tuple(inspect.signature(fn).parameters)
        member, donate, passthrough = tuple(member), tuple(donate), tuple(passthrough)
        name = getattr(fn, "__name__", repr(fn))
        for what, names in (("member", member), ("donate", donate),
                            ("passthrough", passthrough)):
            unknown = [n for n in names if n not in params]
            if unknown:
                raise ValueError(f"{what}={unknown}: not parameters of {name}{params}")
        if params[:len(member)] != member:
            raise ValueError(f"member={member}: the member parameters must be the leading "
                             f"parameters of {name}{params}, in order")
        if not set(passthrough) <= set(member):
            raise ValueError(f"passthrough={passthrough}: only member parameters {member} can "
                             f"pass through a skipped member")
        return cls(params=params, member=member, donate=donate, passthrough=passthrough)

    @property
    def num_member(self) -> int:
        return len(self.member)

    @property
    def donate_argnums(self) -> tuple[int, ...]:
        return tuple(self.params.index(n) for n in self.donate)

    @property
    def passthrough_argnums(self) -> tuple[int, ...]:
        return tuple(self.params.index(n) for n in self.passthrough)


class Runner(abc.ABC):
    """Places member-axis pytrees and lifts per-member functions (the strategies:
    `packing.ShardedRunner`, `loop_runner.LoopRunner`; placed trees: this module's docstring)."""

    strategy: str
    num_members: int
    devices: list[jax.Device]
    group_size: int  # members vectorised at a time on a device (`packing.group_layout`)

    @abc.abstractmethod
    def put_members(self, tree: Any) -> Any:
        """Numpy pytree with leading axis M -> placed representation."""
        ...

    @abc.abstractmethod
    def put_shared(self, tree: Any) -> Any:
        """A pytree every member reads (the image pool, pretrained backbones) -> placed."""
        ...

    @abc.abstractmethod
    def to_host(self, placed: Any) -> Any:
        """Placed member-axis pytree -> numpy pytree with leading axis M (padding dropped)."""
        ...

    @abc.abstractmethod
    def abstract_members(self, member_tree: Any) -> Any:
        """One member's abstract tree -> `jax.ShapeDtypeStruct`s of its placed form (with
        shardings): a restore target for Orbax."""
        ...

    @abc.abstractmethod
    def lift(self, fn: Callable, member: Sequence[str], donate: Sequence[str] = (),
             passthrough: Sequence[str] = ()) -> "Lifted":
        """fn(*member_args, *shared_args) on one member -> the same on all members.

        `member` names fn's leading parameters that hold one member each (the rest are shared),
        `donate` the parameters whose buffers the call may reuse, `passthrough` the member
        parameters a skipped member returns unchanged (see `MemberSignature`, `Lifted`).
        """
        ...

    @abc.abstractmethod
    def device_of(self, member: int) -> jax.Device:
        """The device that computes member `member`."""
        ...


class Lifted:
    """A lifted per-member function: call it with placed args; `skip=` is a per-member hint.

    `skip[m]` True says member m's outputs would equal its passthrough arguments (e.g. a
    stopped member's masked no-op step): 'loop' then does not compute it; a batched program
    cannot drop a member, so the sharded strategies compute the (no-op) step anyway.
    """

    def __init__(self, call: Callable, signature: MemberSignature, jitted: Any = None):
        self._call, self.signature, self._jitted = call, signature, jitted

    def __call__(self, *args: Any, skip: Sequence[bool] | None = None) -> Any:
        if skip is not None and not self.signature.passthrough:
            raise ValueError("skip= needs passthrough parameters in runner.lift(...)")
        return self._call(*args, skip=skip)

    def lower(self, *args: Any) -> Any:
        """`jax.jit(...).lower` of the whole program (the sharded strategies)."""
        if self._jitted is None:
            raise TypeError("a 'loop' program is M single-member calls: lower the per-member "
                            "function itself")
        return self._jitted.lower(*args)
