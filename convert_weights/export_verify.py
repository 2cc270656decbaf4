"""`export --verify`: Keras loads the exported file, and its outputs match the Flax model's.

The Keras model is `keras_parity.build_keras_resnet` (keras.applications.ResNet50 itself for
ResNet50), plus keras.applications' `predictions` Dense with softmax when the head was
exported; the file is loaded with plain `model.load_weights(path)`, Keras' topological loader
for legacy .h5 files, the way a Keras user would. Compared: features (backbone) or class
probabilities (with head), in inference mode, on one random input preprocessed as the source
expects. Needs the `parity` extra (keras).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np

from sourcematters_jax.convert_weights.export_h5 import HEAD_LAYER
from sourcematters_jax.convert_weights.export_sources import ExportSource
from sourcematters_jax.convert_weights.keras_parity import build_keras_resnet
from sourcematters_jax import preprocessing, pretrained


def keras_model(stage_sizes: Any, width: int, image_size: int, num_classes: int | None = None):
    """The Keras model an exported file loads into (with the head if `num_classes`)."""
    import keras

    model = build_keras_resnet(stage_sizes, width, image_size)
    if num_classes is None:
        return model
    with jax.threefry_partitionable(False):  # as build_keras_resnet: cheaper throwaway init
        x = keras.layers.Dropout(0.5, name="dropout")(model.output)
        probs = keras.layers.Dense(num_classes, activation="softmax", name=HEAD_LAYER)(x)
        return keras.Model(model.input, probs, name=model.name)


def flax_outputs(source: ExportSource, head: dict[str, np.ndarray] | None, x: np.ndarray
                 ) -> np.ndarray:
    """Features of the Flax backbone, or softmax(head(features)) when `head` is given."""
    module = pretrained.module_for(source.architecture)
    features = jax.jit(module.apply, static_argnames="train")(source.backbone, x, train=False)
    if head is None:
        return np.asarray(features)
    return np.asarray(jax.nn.softmax(features @ head["kernel"] + head["bias"], axis=-1))


def verify(path: str | pathlib.Path, source: ExportSource, head: dict[str, np.ndarray] | None,
           image_size: int = 64, seed: int = 0) -> float:
    """Max abs difference between Keras' and the Flax model's outputs for the file at `path`."""
    arch = source.architecture
    classes = None if head is None else int(np.shape(head["bias"])[0])
    model = keras_model(arch["stage_sizes"], arch["width"], image_size, classes)
    model.load_weights(str(path))
    images = np.random.default_rng(seed).uniform(0, 255, (2, image_size, image_size, 3))
    x = np.asarray(preprocessing.preprocess(images.astype(np.float32),
                                            source.record.get("preprocessing") or "caffe"))
    expected = np.asarray(model.predict(x, verbose=0))
    return float(np.max(np.abs(flax_outputs(source, head, x) - expected)))
