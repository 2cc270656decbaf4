"""Keras ImageDataGenerator's random affine augmentation, on device, per image.

The study trained with `ImageDataGenerator(rotation_range=10, width_shift_range=0.1,
height_shift_range=0.1, shear_range=0.1, zoom_range=0.1, fill_mode='nearest')` (interpolation
order 1). For every image Keras draws
  theta ~ U(-rotation, rotation) degrees,   tx ~ U(-h_shift, h_shift) * H (rows),
  ty ~ U(-w_shift, w_shift) * W (columns),  shear ~ U(-shear, shear) DEGREES,
  zx, zy ~ U(1 - zoom, 1 + zoom) independently,
builds rotation @ shift @ shear @ zoom about the image centre and resamples with
`scipy.ndimage.affine_transform(order=1, mode='nearest')` (Keras' `apply_affine_transform`).
Keras quirk kept for parity: after its (x, y) -> (row, col) swap, tx (drawn from the height
range) moves the image along columns and ty along rows; with equal ranges on square images, as in
the study, this changes nothing.
Here the same matrix drives `jax.scipy.ndimage.map_coordinates(order=1, mode='nearest')`, so
augmentation is a pure, vmappable function of (key, image). Augmentation runs on the raw 0..255
grayscale image before preprocessing, as Keras applies `random_transform` before `standardize`.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """ImageDataGenerator ranges; shifts are fractions of the image side, angles in degrees."""

    rotation_deg: float = 10.0
    width_shift: float = 0.1
    height_shift: float = 0.1
    shear_deg: float = 0.1
    zoom: float = 0.1
    enabled: bool = True

    @classmethod
    def from_config(cls, augment: Mapping) -> "AugmentConfig":
        return cls(**{f.name: augment[f.name] for f in dataclasses.fields(cls)})


def random_params(key: jax.Array, height: int, width: int, cfg: AugmentConfig) -> dict[str, jnp.ndarray]:
    """One image's transform parameters, drawn as Keras' `get_random_transform` draws them."""
    k = jax.random.split(key, 5)
    u = lambda kk, lo, hi, shape=(): jax.random.uniform(kk, shape, jnp.float32, lo, hi)  # noqa: E731
    zx, zy = u(k[4], 1.0 - cfg.zoom, 1.0 + cfg.zoom, (2,))
    return {
        "theta": u(k[0], -cfg.rotation_deg, cfg.rotation_deg),
        "tx": u(k[1], -cfg.height_shift, cfg.height_shift) * height,
        "ty": u(k[2], -cfg.width_shift, cfg.width_shift) * width,
        "shear": u(k[3], -cfg.shear_deg, cfg.shear_deg),
        "zx": zx,
        "zy": zy,
    }


def affine_matrix(theta, tx, ty, shear, zx, zy, height: int, width: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Keras' `apply_affine_transform` matrix as scipy's (matrix [2, 2], offset [2]) in (row, col).

    Output pixel (i, j) samples the input at `matrix @ (i, j) + offset`.
    """
    theta = jnp.deg2rad(theta)
    shear = jnp.deg2rad(shear)
    one, zero = jnp.ones_like(theta), jnp.zeros_like(theta)

    def mat(rows):
        return jnp.stack([jnp.stack(r) for r in rows])

    rotation = mat([[jnp.cos(theta), -jnp.sin(theta), zero], [jnp.sin(theta), jnp.cos(theta), zero],
                    [zero, zero, one]])
    shift = mat([[one, zero, tx], [zero, one, ty], [zero, zero, one]])
    shear_m = mat([[one, -jnp.sin(shear), zero], [zero, jnp.cos(shear), zero], [zero, zero, one]])
    zoom = mat([[zx, zero, zero], [zero, zy, zero], [zero, zero, one]])
    m = rotation @ shift @ shear_m @ zoom
    # transform_matrix_offset_center: rotate/zoom about the centre ((H - 1) / 2, (W - 1) / 2).
    o_x, o_y = height / 2 - 0.5, width / 2 - 0.5
    centre = jnp.array([[1.0, 0.0, o_x], [0.0, 1.0, o_y], [0.0, 0.0, 1.0]], m.dtype)
    reset = jnp.array([[1.0, 0.0, -o_x], [0.0, 1.0, -o_y], [0.0, 0.0, 1.0]], m.dtype)
    m = centre @ m @ reset
    # Keras builds the matrix in (x, y) and swaps rows and columns 0 and 1 for (row, col) arrays.
    perm = jnp.array([1, 0, 2])
    m = m[perm][:, perm]
    return m[:2, :2], m[:2, 2]


def apply_affine(image: jnp.ndarray, matrix: jnp.ndarray, offset: jnp.ndarray) -> jnp.ndarray:
    """Resample a [H, W] float image like scipy.ndimage.affine_transform(order=1, mode='nearest')."""
    h, w = image.shape
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                              indexing="ij")
    src_r = matrix[0, 0] * rows + matrix[0, 1] * cols + offset[0]
    src_c = matrix[1, 0] * rows + matrix[1, 1] * cols + offset[1]
    return jax.scipy.ndimage.map_coordinates(image, [src_r, src_c], order=1, mode="nearest")


def augment_image(key: jax.Array, image: jnp.ndarray, cfg: AugmentConfig) -> jnp.ndarray:
    """One randomly transformed [H, W] float image (the input unchanged when disabled)."""
    if not cfg.enabled:
        return image
    h, w = image.shape
    p = random_params(key, h, w, cfg)
    matrix, offset = affine_matrix(p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"], h, w)
    return apply_affine(image, matrix, offset)


def augment_batch(key: jax.Array, images: jnp.ndarray, cfg: AugmentConfig) -> jnp.ndarray:
    """[B, H, W] float images, each with its own transform drawn from `key`."""
    if not cfg.enabled:
        return images
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(augment_image, in_axes=(0, 0, None))(keys, images, cfg)
