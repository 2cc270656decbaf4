"""Keras reference models and the feature-parity check (needs the `parity` extra: keras).

`build_keras_resnet` builds the Keras ResNet v1 a converted checkpoint describes: for ResNet50
`keras.applications.ResNet50` itself; for other stage sizes / widths the same graph from Keras'
own residual blocks (`keras.src.applications.resnet.stack_residual_blocks_v1`, the function
keras.applications uses) behind the keras.applications stem with `width` filters.
`verify` loads the original file with Keras' own loader and compares Keras' features with the
Flax model's on one random, caffe-preprocessed input.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any, Sequence

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported anywhere

import jax  # noqa: E402
import keras  # noqa: E402
from keras.src.applications.resnet import stack_residual_blocks_v1  # noqa: E402

from sourcematters_jax.convert_weights.errors import ConversionError  # noqa: E402
from sourcematters_jax.convert_weights.h5_reader import KerasWeights  # noqa: E402
from sourcematters_jax.models.resnet import BN_EPSILON, RESNET50_STAGE_SIZES  # noqa: E402


def build_keras_resnet(stage_sizes: Sequence[int], width: int, image_size: int | None = None):
    """Keras ResNet v1, include_top=False, pooling='avg', with keras.applications layer names."""
    # Keras initialises every variable with jax.random; with partitionable threefry (JAX's
    # default) each initialiser compiles several times slower on XLA:CPU. The initial values
    # are overwritten by the weights loaded next, so the cheaper bit stream is used here.
    with jax.threefry_partitionable(False):
        return _build_keras_resnet(stage_sizes, width, image_size)


def _build_keras_resnet(stage_sizes: Sequence[int], width: int, image_size: int | None):
    shape = (image_size, image_size, 3) if image_size else (None, None, 3)
    if tuple(stage_sizes) == RESNET50_STAGE_SIZES and width == 64:
        return keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                           input_shape=shape)
    layers = keras.layers
    inputs = keras.Input(shape)
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = layers.Conv2D(width, 7, strides=2, use_bias=True, name="conv1_conv")(x)
    x = layers.BatchNormalization(axis=3, epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, blocks in enumerate(stage_sizes):
        x = stack_residual_blocks_v1(x, width * 2**stage, blocks, stride1=1 if stage == 0 else 2,
                                     name=f"conv{stage + 2}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="resnet")


def _load_into_keras(model, path: pathlib.Path, weights: KerasWeights) -> None:
    """Keras' own loader: by layer name for legacy .h5, by object path for Keras 3 files.
    Keras picks the format from the file suffix, so the file is linked under the right one."""
    if weights.nested:
        raise ConversionError(f"{path}: the network is stored as one nested sub-model; Keras' "
                              "by-name loader cannot verify this layout (convert without "
                              "--verify)")
    suffix = ".weights.h5" if weights.layout == "keras3_weights" else ".h5"
    with tempfile.TemporaryDirectory() as tmp:
        link = pathlib.Path(tmp) / f"file{suffix}"
        os.symlink(path.absolute(), link)
        if weights.layout == "keras3_weights":
            model.load_weights(link)
        else:
            model.load_weights(link, by_name=True)


def verify(path: str | pathlib.Path, weights: KerasWeights, architecture: dict[str, Any],
           variables: dict[str, Any], image_size: int = 64, seed: int = 0) -> float:
    """Max abs difference between Keras' and the Flax model's features (inference mode)."""
    from sourcematters_jax import preprocessing, pretrained

    model = build_keras_resnet(architecture["stage_sizes"], architecture["width"], image_size)
    _load_into_keras(model, pathlib.Path(path), weights)
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (2, image_size, image_size, 3)).astype(np.float32)
    x = np.asarray(preprocessing.preprocess(images, "caffe"))
    expected = np.asarray(model.predict(x, verbose=0))  # inference mode, one compiled graph
    got = np.asarray(pretrained.module_for(architecture).apply(variables, x, train=False))
    return float(np.max(np.abs(got - expected)))
