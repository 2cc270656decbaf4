"""Per-member evaluation on device: validation loss, best-state keeping, early stopping, tests.

Evaluation runs the model in inference mode (BatchNorm running statistics, no dropout, no
augmentation), as Keras' `fit(validation_data=...)` and `predict` do. A split is evaluated in
fixed-size batches over its padded index array; padding is masked out of the loss and dropped by
the host, so every example is evaluated exactly once and none is dropped.

The epoch end follows Keras' callbacks: ModelCheckpoint(monitor='val_loss', save_best_only=True)
keeps the weights of the first epoch with a strictly lower validation loss, and
EarlyStopping(monitor='val_loss', patience=p) stops a member after p epochs without improvement.
Both are `jnp.where` selections, so members stop independently inside one program. The epoch end
also returns the validation AUCs (exact and Keras-compatible, device_metrics.py), which the
study's Keras logs carried per epoch; they are logged, never used for selection.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from sourcematters_jax.data.types import TEST_SPLITS
from sourcematters_jax.models import Classifier
from sourcematters_jax.train.device_metrics import masked_keras_auc, masked_roc_auc
from sourcematters_jax.train.state import BestState, TrainState, normalize
from sourcematters_jax.train.step import DevicePool, Examples, MemberArrays, gather


def eval_batch_for(num_padded: int, eval_batch_size: int) -> int:
    """The batch that tiles a split padded to `num_padded` (see packing.padded_length)."""
    batch = min(eval_batch_size, num_padded)
    if num_padded % batch:
        raise ValueError(f"split padded to {num_padded} is not a multiple of the eval batch {batch}")
    return batch


def predict(params: Any, batch_stats: Any, pixel_mean: jnp.ndarray, pixel_scale: jnp.ndarray,
            examples: Examples, pool: DevicePool, *, model: Classifier, eval_batch_size: int
            ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(softmax probabilities [n, 2], per-example cross-entropy [n]) for a padded split."""
    n = examples.indices.shape[0]
    batch = eval_batch_for(n, eval_batch_size)
    batches = jax.tree.map(lambda a: a.reshape((n // batch, batch) + a.shape[1:]), examples)

    def one(ex: Examples):
        images, labels = gather(pool, ex)
        logits = model.apply({"params": params, "batch_stats": batch_stats},
                             normalize(images, pixel_mean, pixel_scale), train=False)
        logits = logits.astype(jnp.float32)
        ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]
        return jax.nn.softmax(logits), ce

    probs, ce = jax.lax.map(one, batches)
    return probs.reshape(n, -1), ce.reshape(n)


def mean_loss(ce: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Mean of the masked-in losses (NaN for an empty split)."""
    return jnp.sum(jnp.where(mask, ce, 0.0)) / jnp.sum(mask)


@struct.dataclass
class EpochEnd:
    """What the host logs after an epoch, per member."""

    val_loss: jnp.ndarray
    improved: jnp.ndarray
    active: jnp.ndarray  # the member trained this epoch and is not stopped
    val_auc: jnp.ndarray  # exact binary ROC-AUC of the positive-class probability
    val_auc_keras: jnp.ndarray  # the study's flattened Keras AUC


def make_end_epoch(model: Classifier, *, eval_batch_size: int, patience: int,
                   steps_per_epoch: int
                   ) -> Callable[[TrainState, BestState, MemberArrays, DevicePool],
                                 tuple[TrainState, BestState, EpochEnd]]:
    """(train, best, arrays, pool) -> (train, best, EpochEnd) for one member, after an epoch.

    A member stopped earlier is left unchanged. A non-finite validation loss stops the member
    like a non-finite training loss does.
    """

    def end_epoch(train: TrainState, best: BestState, data: MemberArrays, pool: DevicePool):
        probs, ce = predict(train.params, train.batch_stats, train.pixel_mean, train.pixel_scale,
                            data.val, pool, model=model, eval_batch_size=eval_batch_size)
        val_loss = mean_loss(ce, data.val.mask)
        labels = pool.labels[data.val.indices]
        val_auc = masked_roc_auc(probs[:, 1], labels, data.val.mask)
        val_auc_keras = masked_keras_auc(probs, labels, data.val.mask)
        active = ~train.stopped
        finite = jnp.isfinite(val_loss)
        improved = active & finite & (val_loss < best.val_loss)
        epoch = (train.step // steps_per_epoch).astype(jnp.int32)
        take = lambda new, old: jax.tree.map(lambda a, b: jnp.where(improved, a, b), new, old)  # noqa: E731
        best = BestState(params=take(train.params, best.params),
                         batch_stats=take(train.batch_stats, best.batch_stats),
                         val_loss=jnp.where(improved, val_loss, best.val_loss),
                         epoch=jnp.where(improved, epoch, best.epoch))
        bad_epochs = jnp.where(improved, 0, train.bad_epochs + active.astype(jnp.int32))
        nonfinite = active & ~finite
        train = train.replace(
            bad_epochs=bad_epochs,
            epochs_trained=train.epochs_trained + active.astype(jnp.int32),
            stopped=train.stopped | nonfinite | (active & (bad_epochs >= patience)),
            nonfinite=train.nonfinite | nonfinite,
        )
        return train, best, EpochEnd(val_loss=val_loss, improved=improved, active=active,
                                     val_auc=val_auc, val_auc_keras=val_auc_keras)

    return end_epoch


def make_predict_tests(model: Classifier, *, eval_batch_size: int
                       ) -> Callable[[TrainState, BestState, MemberArrays, DevicePool],
                                     dict[str, jnp.ndarray]]:
    """(train, best, arrays, pool) -> {test split: probabilities [n_pad, 2]} of the best state.

    Every test split of `all_test_splits(arrays)`: the three fixed ones and any extra ones.
    """

    def predict_tests(train: TrainState, best: BestState, data: MemberArrays, pool: DevicePool):
        out = {}
        for split, examples in all_test_splits(data).items():
            out[split], _ = predict(best.params, best.batch_stats, train.pixel_mean,
                                    train.pixel_scale, examples, pool, model=model,
                                    eval_batch_size=eval_batch_size)
        return out

    return predict_tests


def all_test_splits(arrays: MemberArrays) -> dict[str, Examples]:
    """Every test split of packed member arrays by name: test_iid, test_ood, test_clean, extras."""
    return {**{s: getattr(arrays, s) for s in TEST_SPLITS}, **dict(arrays.extra_tests)}
