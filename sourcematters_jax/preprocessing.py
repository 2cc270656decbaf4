"""Per-source input preprocessing, as keras.applications and the study applied it.

The study feeds grayscale radiographs replicated to RGB, resized (nearest) to the model size, then:
  caffe:         RGB -> BGR, subtract the ImageNet channel means [103.939, 116.779, 123.68]
                 (keras.applications.resnet50.preprocess_input; ImageNet and random init)
  caffe_div255:  caffe, then x 1/255 (RadImageNet: Keras applies preprocessing_function before
                 ImageDataGenerator's rescale=1/255)
  none:          the raw 0..255 floats (for sources that bring their own normalisation)
The converted-weights metadata names the mode each source expects.
"""

from __future__ import annotations

import jax.numpy as jnp

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
MODES = ("caffe", "caffe_div255", "none")


def preprocess(images: jnp.ndarray, mode: str) -> jnp.ndarray:
    """Preprocess RGB float images in [0, 255], NHWC (or HWC), for a source's expected `mode`."""
    if mode not in MODES:
        raise ValueError(f"unknown preprocessing mode {mode!r}; expected one of {MODES}")
    x = jnp.asarray(images, jnp.float32)
    if mode == "none":
        return x
    x = x[..., ::-1] - jnp.asarray(CAFFE_BGR_MEAN, jnp.float32)
    if mode == "caffe_div255":
        x = x / 255.0
    return x


def gray_to_rgb(images: jnp.ndarray) -> jnp.ndarray:
    """[..., H, W] grayscale -> [..., H, W, 3] float32, as the study replicated the channel."""
    x = jnp.asarray(images, jnp.float32)
    return jnp.repeat(x[..., None], 3, axis=-1)
