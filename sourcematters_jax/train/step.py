"""The single-member training step: a pure function of (member state, batch indices, pool).

Images never leave the device: a batch is a set of indices into the device-resident `DevicePool`
plus, per index, whether to take the confounded variant, plus a mask for padding (members'
training sets differ in size, and Keras trains on the last partial batch of an epoch). Masked
examples enter neither the loss nor the BatchNorm statistics; a batch with no valid example leaves
the member untouched. `packing` lifts these functions to M members (vmap, lax.map or a loop).

Epochs: every member draws its own permutation of its training set per epoch from its RNG; valid
examples come first, so an epoch is ceil(n / batch) real steps (one pass, the last batch partial,
as Keras' `flow_from_dataframe` with `steps_per_epoch = n / batch`), and smaller members idle
(masked, no-op steps) while the largest finishes its epoch. All members run the same number of
program steps.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from sourcematters_jax.data.types import CONFOUNDED
from sourcematters_jax.models import Classifier
from sourcematters_jax.train.augment import AugmentConfig, augment_batch
from sourcematters_jax.train.state import SHUFFLE_STREAM, STEP_STREAM, TrainState, normalize


@struct.dataclass
class Examples:
    """Indices into the pool; a batch, or a whole padded split of one member."""

    indices: jnp.ndarray  # int32 [n]
    confounded: jnp.ndarray  # bool [n]: take the confounded variant
    mask: jnp.ndarray  # bool [n]: False for padding


@struct.dataclass
class DevicePool:
    """The experiment's images on device (replicated), uint8 [N, V, H, W], and labels int32 [N]."""

    images: jnp.ndarray
    labels: jnp.ndarray


@struct.dataclass
class MemberArrays:
    """Every split of one member, each padded to the program's common length.

    `extra_tests`: further test splits by name (MemberData.extra_tests), e.g. test_ood_denoising.
    """

    train: Examples
    val: Examples
    test_iid: Examples
    test_ood: Examples
    test_clean: Examples
    extra_tests: dict[str, Examples] = dataclasses.field(default_factory=dict)


def gather(pool: DevicePool, ex: Examples) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(float32 [n, H, W] images in 0..255, int32 [n] labels) for the examples."""
    variant = jnp.where(ex.confounded, CONFOUNDED, 0)
    images = pool.images[ex.indices, variant].astype(jnp.float32)
    return images, pool.labels[ex.indices]


def masked_mean_ce(logits: jnp.ndarray, labels: jnp.ndarray, mask: jnp.ndarray
                   ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(mean, sum) of softmax cross-entropy over the masked-in examples."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    total = jnp.sum(jnp.where(mask, ce, 0.0))
    return total / jnp.maximum(jnp.sum(mask), 1), total


def train_step(state: TrainState, batch: Examples, pool: DevicePool, *, model: Classifier,
               tx: optax.GradientTransformation, augment: AugmentConfig
               ) -> tuple[TrainState, dict[str, jnp.ndarray]]:
    """One Adam step of one member on one (masked) batch; a no-op when stopped or empty.

    A NaN/inf loss or gradient is not applied: the member is marked `nonfinite` and stopped.
    Returns the new state and {'loss_sum', 'count'} of the applied step (zeros otherwise).
    """
    key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state.rng), STEP_STREAM),
                             state.step)
    aug_key, dropout_key = jax.random.split(key)
    images, labels = gather(pool, batch)
    x = normalize(augment_batch(aug_key, images, augment), state.pixel_mean, state.pixel_scale)

    def loss_fn(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": state.batch_stats}, x, train=True, mask=batch.mask,
            rngs={"dropout": dropout_key}, mutable=["batch_stats"])
        mean, total = masked_mean_ce(logits, labels, batch.mask)
        return mean, (total, updates["batch_stats"])

    (loss, (loss_sum, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    count = jnp.sum(batch.mask)
    finite = jnp.isfinite(loss) & jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    active = (count > 0) & ~state.stopped
    apply = active & finite
    bad = active & ~finite
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)  # noqa: E731
    new_state = state.replace(
        step=state.step + 1,
        params=keep(params, state.params),
        batch_stats=keep(batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state),
        stopped=state.stopped | bad,
        nonfinite=state.nonfinite | bad,
    )
    metrics = {"loss_sum": jnp.where(apply, loss_sum, 0.0),
               "count": jnp.where(apply, count, 0).astype(jnp.int32)}
    return new_state, metrics


def epoch_order(key: jax.Array, mask: jnp.ndarray) -> jnp.ndarray:
    """A random permutation of positions with every valid (mask True) position first."""
    u = jax.random.uniform(key, mask.shape)
    return jnp.argsort(jnp.where(mask, u, 2.0))


def batch_at(state: TrainState, train: Examples, *, steps_per_epoch: int, batch_size: int
             ) -> Examples:
    """The member's batch for program step `state.step`, from its permutation of that epoch."""
    epoch, within = jnp.divmod(state.step, steps_per_epoch)
    key = jax.random.fold_in(
        jax.random.fold_in(jax.random.wrap_key_data(state.rng), SHUFFLE_STREAM), epoch)
    order = epoch_order(key, train.mask)
    positions = jax.lax.dynamic_slice_in_dim(order, within * batch_size, batch_size)
    return jax.tree.map(lambda a: a[positions], train)


def make_member_train_step(model: Classifier, tx: optax.GradientTransformation,
                           augment: AugmentConfig, *, steps_per_epoch: int, batch_size: int
                           ) -> Callable[[TrainState, MemberArrays, DevicePool],
                                         tuple[TrainState, dict[str, jnp.ndarray]]]:
    """(state, member arrays, pool) -> (state, metrics): draws the batch, then `train_step`.

    This per-member function is what `packing.Runner.lift` turns into the M-member step.
    """
    if steps_per_epoch * batch_size < 1:
        raise ValueError("steps_per_epoch and batch_size must be positive")

    def member_train_step(state: TrainState, data: MemberArrays, pool: DevicePool):
        batch = batch_at(state, data.train, steps_per_epoch=steps_per_epoch, batch_size=batch_size)
        return train_step(state, batch, pool, model=model, tx=tx, augment=augment)

    return member_train_step


def with_matmul_precision(fn: Callable, precision: str) -> Callable:
    """`fn` traced under `jax.default_matmul_precision(precision)` (config.execution.matmul_precision).

    'default' leaves XLA's choice: on recent NVIDIA GPUs (Ampere and later) float32 matmuls and
    convolutions then run as TF32 (10-bit mantissa inputs), on TPU as bfloat16 passes; 'highest'
    asks for full float32. The context is entered while `fn` is traced, which is when the
    precision of every dot and convolution is fixed.
    """
    if precision == "default":
        return fn

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision(precision):
            return fn(*args, **kwargs)

    return wrapped
