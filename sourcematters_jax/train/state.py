"""Per-member training state, the optimizer, and member initialisation.

A member's state is two pytrees of arrays: `TrainState` (what the next step needs: weights,
BatchNorm statistics, Adam state with its hyperparameters, RNG, preprocessing constants, early
stopping counters) and `BestState` (the weights with the best validation loss so far, as Keras'
ModelCheckpoint(save_best_only=True) keeps them). Stacking M members' states on a leading axis
gives the program's state; every function here works on one member and is lifted by `packing`.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from sourcematters_jax.models import Classifier, ResNet
from sourcematters_jax.preprocessing import CAFFE_BGR_MEAN, MODES

# Sub-streams of a member's RNG (jax.random.fold_in data).
INIT_STREAM, STEP_STREAM, SHUFFLE_STREAM = 0, 1, 2


@struct.dataclass
class TrainState:
    """Everything one member's next training step reads and writes (leaves are arrays)."""

    step: jnp.ndarray  # int32: program steps taken (the same for every member of a program)
    params: Any
    batch_stats: Any
    opt_state: Any  # optax.inject_hyperparams(adam) state: count, hyperparams, moments
    rng: jnp.ndarray  # uint32 key data of the member's root key (from its seed)
    pixel_mean: jnp.ndarray  # float32 [3]: BGR mean subtracted by the source's preprocessing
    pixel_scale: jnp.ndarray  # float32 []: factor after mean subtraction (1/255 for RadImageNet)
    bad_epochs: jnp.ndarray  # int32: epochs since the last val-loss improvement
    epochs_trained: jnp.ndarray  # int32: epochs the member was active at the epoch's end
    stopped: jnp.ndarray  # bool: early-stopped or stopped by a non-finite loss; state frozen
    nonfinite: jnp.ndarray  # bool: a NaN/inf loss or gradient stopped the member


@struct.dataclass
class BestState:
    """The weights with the lowest validation loss so far (Keras ModelCheckpoint save_best_only)."""

    params: Any
    batch_stats: Any
    val_loss: jnp.ndarray  # float32, +inf before the first epoch
    epoch: jnp.ndarray  # int32, 1-based epoch whose weights these are; 0 = none yet


@struct.dataclass
class MemberInit:
    """The per-member inputs of `init_member` (leaves stack on the member axis)."""

    seed: jnp.ndarray  # int32
    source_slot: jnp.ndarray  # int32 index into the stacked pretrained backbones (-1 = random)
    pixel_mean: jnp.ndarray  # float32 [3]
    pixel_scale: jnp.ndarray  # float32 []


def build_model(model_cfg: Mapping[str, Any], dropout_rate: float, *, remat: bool = False,
                num_classes: int = 2) -> Classifier:
    """The Classifier a config describes (ResNet of `model.stage_sizes`/`width`/`dtype`).

    `num_classes` is 2 for the study's binary tasks; pretraining a source sets its class count.

    `model.dtype='bfloat16'` is mixed precision: the compute dtype of the convolutions and
    matmuls; parameters, and so gradients, Adam state and the loss, stay float32 (`models.resnet`).
    `remat` rematerialises each residual block (memory only; the same results).
    """
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[model_cfg["dtype"]]
    backbone = ResNet(stage_sizes=tuple(model_cfg["stage_sizes"]), width=int(model_cfg["width"]),
                      dtype=dtype, remat=bool(remat))
    return Classifier(backbone=backbone, num_classes=int(num_classes),
                      dropout_rate=float(dropout_rate))


def make_optimizer(learning_rate: float, b1: float, b2: float, eps: float
                   ) -> optax.GradientTransformation:
    """Adam with Keras' defaults; hyperparameters live in the (per-member) optimizer state."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)


def preprocessing_constants(mode: str) -> tuple[np.ndarray, np.float32]:
    """(BGR mean [3], scale) implementing `preprocessing.preprocess(x, mode)` as x*1 - mean, * scale."""
    if mode not in MODES:
        raise ValueError(f"unknown preprocessing mode {mode!r}; expected one of {MODES}")
    mean = np.zeros(3, np.float32) if mode == "none" else np.asarray(CAFFE_BGR_MEAN, np.float32)
    scale = np.float32(1 / 255 if mode == "caffe_div255" else 1.0)
    return mean, scale


def normalize(images: jnp.ndarray, pixel_mean: jnp.ndarray, pixel_scale: jnp.ndarray) -> jnp.ndarray:
    """[B, H, W] grayscale floats in 0..255 -> [B, H, W, 3] model input.

    The study replicates grayscale to RGB, so the caffe RGB->BGR flip is the identity and the
    preprocessing reduces to subtracting the per-channel BGR mean, then scaling. Taking the
    constants as arrays lets members with different sources share one program.
    """
    x = jnp.repeat(images[..., None].astype(jnp.float32), 3, axis=-1)
    return (x - pixel_mean) * pixel_scale


def init_member(inputs: MemberInit, pretrained: Any, *, model: Classifier,
                tx: optax.GradientTransformation, image_size: int) -> tuple[TrainState, BestState]:
    """A member's initial state: model init from its seed, backbone from its source.

    Args:
      inputs: the member's seed, source slot and preprocessing constants.
      pretrained: None, or {'params', 'batch_stats'} backbone variables stacked on a leading
        source axis; slot -1 keeps the seeded Keras-default initialisation ('random').
    The head (Dense(2), glorot_uniform, zero bias) is always freshly initialised from the seed.
    """
    root = jax.random.key(inputs.seed)
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    variables = model.init(jax.random.fold_in(root, INIT_STREAM), dummy, train=False)
    params, batch_stats = variables["params"], variables["batch_stats"]
    if pretrained is not None:
        use = inputs.source_slot >= 0
        slot = jnp.maximum(inputs.source_slot, 0)
        pick = lambda own, stacked: jnp.where(use, stacked[slot].astype(own.dtype), own)  # noqa: E731
        params = {**params, "backbone": jax.tree.map(pick, params["backbone"],
                                                     pretrained["params"])}
        batch_stats = {**batch_stats, "backbone": jax.tree.map(pick, batch_stats["backbone"],
                                                               pretrained["batch_stats"])}
    train = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        rng=jax.random.key_data(root),
        pixel_mean=jnp.asarray(inputs.pixel_mean, jnp.float32),
        pixel_scale=jnp.asarray(inputs.pixel_scale, jnp.float32),
        bad_epochs=jnp.zeros((), jnp.int32),
        epochs_trained=jnp.zeros((), jnp.int32),
        stopped=jnp.zeros((), bool),
        nonfinite=jnp.zeros((), bool),
    )
    best = BestState(params=params, batch_stats=batch_stats,
                     val_loss=jnp.full((), jnp.inf, jnp.float32), epoch=jnp.zeros((), jnp.int32))
    return train, best


def backbone_shapes(model: Classifier, image_size: int) -> dict[str, Any]:
    """{'params', 'batch_stats'} of the backbone as ShapeDtypeStructs (target for strict merges)."""
    abstract = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, image_size, image_size, 3)), train=False))
    return {c: abstract[c]["backbone"] for c in ("params", "batch_stats")}


def variables_of(params: Any, batch_stats: Any) -> dict[str, Any]:
    """Flax variables for `model.apply`."""
    return {"params": params, "batch_stats": batch_stats}


__all__ = ["BestState", "MemberInit", "TrainState", "backbone_shapes", "build_model",
           "init_member", "make_optimizer", "normalize", "preprocessing_constants",
           "variables_of"]
