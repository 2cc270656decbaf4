"""A program's compiled functions, keyed by a frozen `ProgramSpec`.

`ProgramSpec.from_config(config, batch_size=..., steps_per_epoch=..., remat=...)` names every
setting the compiled functions depend on: the config's model and recipe plus what the data and
the memory plan decide (effective batch, steps per epoch, remat). It is hashable and compares by
value, so `build_programs(spec, runner)` (cached per process) hands a second program of the same
shape the functions the first one compiled. `Programs` names those functions.

Whether members start from pretrained backbones is not part of the spec: `init` takes the
stacked backbones as a shared argument that may be None, and jit traces each form once; the
initial state has the same shapes either way (`abstract_state`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sourcematters_jax.train import evaluate, packing, state as state_lib, step as step_lib
from sourcematters_jax.train.augment import AugmentConfig
from sourcematters_jax.train.placed import Lifted


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """Everything a program's compiled functions depend on (the compile-cache key)."""

    model: tuple[tuple[str, Any], ...]  # sorted config.model items
    dropout_rate: float
    learning_rate: float
    adam_b1: float
    adam_b2: float
    adam_eps: float
    augment: AugmentConfig
    image_size: int
    steps_per_epoch: int
    batch_size: int  # the effective batch (`packing.train_layout`)
    eval_batch_size: int
    patience: int
    remat: bool
    matmul_precision: str

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, *, batch_size: int,
                    steps_per_epoch: int, remat: bool) -> "ProgramSpec":
        """The spec of `config`'s program with the data's batch/steps and the plan's remat."""
        return cls(model=tuple(sorted(config.model.to_dict().items())),
                   dropout_rate=float(config.dropout_rate),
                   learning_rate=float(config.learning_rate), adam_b1=float(config.adam_b1),
                   adam_b2=float(config.adam_b2), adam_eps=float(config.adam_eps),
                   augment=AugmentConfig.from_config(config.augment),
                   image_size=int(config.image_size), steps_per_epoch=int(steps_per_epoch),
                   batch_size=int(batch_size), eval_batch_size=int(config.eval_batch_size),
                   patience=int(config.patience), remat=bool(remat),
                   matmul_precision=str(config.execution.matmul_precision))


class Programs(NamedTuple):
    """The compiled functions of one program (all lifted to the runner's members).

    init(inputs, pretrained) -> (train, best): `state.MemberInit` per member; pretrained None
        or backbones stacked on a source axis (shared)
    train_step(state, summed, data, pool) -> (state, summed): one step, the epoch's loss
        summed on device; donates state and summed; a stopped member may be skipped
    end_epoch(train, best, data, pool) -> (train, best, EpochEnd); donates train and best
    predict(train, best, data, pool) -> test probabilities per split
    abstract_state: one member's (TrainState, BestState) as `jax.ShapeDtypeStruct`s
    """

    init: Lifted
    train_step: Lifted
    end_epoch: Lifted
    predict: Lifted
    abstract_state: tuple[Any, Any]


@functools.lru_cache(maxsize=4)
def build_programs(spec: ProgramSpec, runner: packing.Runner) -> Programs:
    """The programs of `spec` lifted by `runner` (cached: jit compiles each on first call)."""
    model = state_lib.build_model(dict(spec.model), spec.dropout_rate, remat=spec.remat)
    tx = state_lib.make_optimizer(spec.learning_rate, spec.adam_b1, spec.adam_b2, spec.adam_eps)

    def init(inputs, pretrained):
        return state_lib.init_member(inputs, pretrained, model=model, tx=tx,
                                     image_size=spec.image_size)

    member_step = step_lib.make_member_train_step(model, tx, spec.augment,
                                                  steps_per_epoch=spec.steps_per_epoch,
                                                  batch_size=spec.batch_size)

    def train_step(state, summed, data, pool):  # the epoch's loss is summed on device
        state, metrics = member_step(state, data, pool)
        return state, jax.tree.map(jnp.add, summed, metrics)

    end_epoch = evaluate.make_end_epoch(model, eval_batch_size=spec.eval_batch_size,
                                        patience=spec.patience,
                                        steps_per_epoch=spec.steps_per_epoch)
    predict = evaluate.make_predict_tests(model, eval_batch_size=spec.eval_batch_size)
    init, train_step, end_epoch, predict = (
        step_lib.with_matmul_precision(f, spec.matmul_precision)
        for f in (init, train_step, end_epoch, predict))
    return Programs(
        init=runner.lift(init, member=("inputs",)),
        train_step=runner.lift(train_step, member=("state", "summed", "data"),
                               donate=("state", "summed"), passthrough=("state", "summed")),
        end_epoch=runner.lift(end_epoch, member=("train", "best", "data"),
                              donate=("train", "best")),
        predict=runner.lift(predict, member=("train", "best", "data")),
        abstract_state=jax.eval_shape(init, abstract_member_inputs(), None))


def abstract_member_inputs() -> state_lib.MemberInit:
    """One member's `state.MemberInit` as `jax.ShapeDtypeStruct`s (for `jax.eval_shape`)."""
    f32 = np.float32
    return state_lib.MemberInit(
        seed=jax.ShapeDtypeStruct((), np.int32), source_slot=jax.ShapeDtypeStruct((), np.int32),
        pixel_mean=jax.ShapeDtypeStruct((3,), f32), pixel_scale=jax.ShapeDtypeStruct((), f32))
