"""Child process: the original study's Keras training step, one model, as the peer row.

Spec (JSON): model ('resnet50' | 'tiny'), image_size, batch_size, warmup, steps, jit_compile.
The parent runs this with KERAS_BACKEND=tensorflow (tf.keras as the study used it, TF 2.x).

The study's model: `ResNet50(weights=None, include_top=False, pooling='avg')` -> Dropout(0.5) ->
Dense(2, softmax), Adam(1e-3, epsilon=1e-7), categorical cross-entropy, `train_on_batch`.
`jit_compile=False` is the study's execution (TF 2.15 / Keras 2 ran tf.function graphs with
oneDNN kernels; Keras 3's 'auto' would XLA-compile instead). Data: random preprocessed images
and one-hot labels, already in memory (the study's ImageDataGenerator input pipeline and
augmentation are not timed; the JAX rows do include on-device augmentation).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks.common import emit, parse_spec, peak_rss_mib, time_calls

SEED = 812


def tiny_backbone(keras: Any, input_shape: tuple[int, int, int], width: int = 8,
                  stage_sizes: tuple[int, ...] = (1, 1, 1, 1)) -> Any:
    """The project's TinyResNet topology in Keras: ResNet50's stem and v1 blocks, narrower."""
    from keras.src.applications.resnet import residual_block_v1  # same block as ResNet50

    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(width, 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, blocks in enumerate(stage_sizes):
        filters = width * 2**stage
        for block in range(blocks):
            stride = (1 if stage == 0 else 2) if block == 0 else 1
            x = residual_block_v1(x, filters, stride=stride, conv_shortcut=block == 0,
                                  name=f"conv{stage + 2}_block{block + 1}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="tiny_resnet")


def build(spec: dict[str, Any]) -> Any:
    """The study's compiled Keras classifier for the spec's model and input size."""
    import keras

    shape = (spec["image_size"], spec["image_size"], 3)
    if spec["model"] == "resnet50":
        base = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                           input_shape=shape)
    else:
        base = tiny_backbone(keras, shape)
    x = keras.layers.Dropout(0.5)(base.output)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(base.input, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7),
                  loss="categorical_crossentropy", jit_compile=bool(spec.get("jit_compile", False)))
    return model


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Build, warm up and time `train_on_batch`."""
    t = time.perf_counter()
    import keras
    import tensorflow as tf
    import_s = time.perf_counter() - t

    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    b, size = int(spec["batch_size"]), int(spec["image_size"])
    x = (rng.random((b, size, size, 3), np.float32) * 255.0 - 117.0).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, b)]
    model = build(spec)
    timing = time_calls(lambda: float(model.train_on_batch(x, y)), warmup=int(spec["warmup"]),
                        steps=int(spec["steps"]))
    step_s = timing["step_median_s"]
    return {
        "model": spec["model"], "image_size": size, "batch_size": b, "members": 1,
        "strategy": "keras-xla" if spec.get("jit_compile") else "keras", "devices": 1,
        "framework": f"tensorflow {tf.__version__}, keras {keras.__version__} "
                     f"(backend {keras.backend.backend()})",
        "jit_compile": bool(spec.get("jit_compile", False)), "import_s": round(import_s, 2),
        # Graph tracing and (for XLA) compilation happen in the first call.
        "compile_s": round(max(timing["first_call_s"] - step_s, 0.0), 2),
        **timing,
        "member_images_per_s": round(b / step_s, 3),
        "images_per_s_per_member": round(b / step_s, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


if __name__ == "__main__":
    emit(run(parse_spec()))
