"""Augmentation against Keras' own ImageDataGenerator code (the study's augmentation).

Reference: keras' legacy `apply_affine_transform` (numpy + scipy.ndimage, float64), fed the same
fixed parameters. Tolerance: 2e-3 grey levels on 0..255 images (float32 coordinates here).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sourcematters_jax.train.augment import (AugmentConfig, affine_matrix, apply_affine,
                                             augment_batch, random_params)

keras_image = pytest.importorskip("keras.src.legacy.preprocessing.image")

PARAMS = [
    dict(theta=7.3, tx=3.2, ty=-2.5, shear=5.0, zx=0.93, zy=1.08),
    dict(theta=-9.9, tx=-3.1, ty=3.9, shear=0.1, zx=1.1, zy=0.9),
    dict(theta=0.0, tx=2.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0),  # pure row shift
    dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0),  # identity
]


@pytest.fixture(scope="module")
def image():
    # Non-square, with structure, so a swapped axis or a shifted centre would show.
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (24, 40))
    img[4:10, 5:30] = 255.0
    return img.astype(np.float32)


@pytest.fixture(scope="module")
def warp():
    return jax.jit(lambda img, p: apply_affine(img, *affine_matrix(
        p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"], *img.shape)))


@pytest.mark.parametrize("params", PARAMS)
def test_matches_keras_apply_affine_transform(image, warp, params):
    want = keras_image.apply_affine_transform(
        image[..., None].astype(np.float64), **params, row_axis=0, col_axis=1, channel_axis=2,
        fill_mode="nearest", order=1)[..., 0]
    got = warp(jnp.asarray(image), {k: jnp.float32(v) for k, v in params.items()})
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-3, rtol=0)


def test_tx_moves_columns_as_keras_does(image, warp):
    # Keras quirk (tensorflow#41460): tx is drawn from height_shift_range * rows, but after the
    # (x, y) -> (row, col) swap it moves content along the column axis. Kept for parity.
    got = np.asarray(warp(jnp.asarray(image), {k: jnp.float32(v) for k, v in PARAMS[2].items()}))
    np.testing.assert_allclose(got[:, :-2], image[:, 2:], atol=1e-4)


def test_random_params_follow_keras_ranges():
    cfg = AugmentConfig(rotation_deg=10, width_shift=0.1, height_shift=0.2, shear_deg=0.1, zoom=0.1)
    keys = jax.random.split(jax.random.key(0), 2000)
    p = jax.vmap(lambda k: random_params(k, 30, 50, cfg))(keys)
    bounds = {"theta": 10, "tx": 0.2 * 30, "ty": 0.1 * 50, "shear": 0.1}
    for name, bound in bounds.items():
        v = np.asarray(p[name])
        assert np.abs(v).max() <= bound and np.abs(v).max() > 0.9 * bound, name
        assert abs(v.mean()) < 0.1 * bound, name
    zx, zy = np.asarray(p["zx"]), np.asarray(p["zy"])
    assert zx.min() >= 0.9 and zx.max() <= 1.1 and zy.min() >= 0.9 and zy.max() <= 1.1
    assert abs(np.corrcoef(zx, zy)[0, 1]) < 0.1  # drawn independently


def test_augment_batch_draws_per_image_and_is_deterministic():
    images = jnp.broadcast_to(jnp.arange(32 * 32, dtype=jnp.float32).reshape(32, 32), (3, 32, 32))
    augment = jax.jit(augment_batch, static_argnums=2)
    out = augment(jax.random.key(1), images, AugmentConfig())
    again = augment(jax.random.key(1), images, AugmentConfig())
    np.testing.assert_array_equal(out, again)
    assert not np.allclose(out[0], out[1])
    off = augment_batch(jax.random.key(1), images, AugmentConfig(enabled=False))
    np.testing.assert_array_equal(off, images)
