"""models.ResNet against Keras: same features (inference and training mode), Keras-default init.

The Keras reference is a small ResNet v1 built from Keras' own residual blocks
(`convert_weights.keras_parity.build_keras_resnet`, i.e. keras.applications' stack function),
with randomised weights and BN moving statistics. Tolerances: float32, max abs difference
<= 1e-4 on features of magnitude O(10); moving statistics after one training step <= 1e-5.
The full ResNet50 parity (every layer name and shape, features) is in test_convert_weights.py.
"""

import functools

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from sourcematters_jax.convert_weights.keras_parity import build_keras_resnet
from sourcematters_jax.models import BN_EPSILON, BN_MOMENTUM, ResNet50, TinyResNet

STAGES, WIDTH = (1, 2), 4
TOL = 1e-4


@pytest.fixture(scope="module")
def keras_and_flax():
    """A randomised Keras model and the same numbers as Flax variables, copied by layer name."""
    model = build_keras_resnet(STAGES, WIDTH)
    rng = np.random.default_rng(0)
    params, stats = {}, {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape
            values = [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.5, n),
                      rng.uniform(0.5, 2.0, n)]
            values = [v.astype(np.float32) for v in values]
            layer.set_weights(values)
            params[layer.name] = {"scale": values[0], "bias": values[1]}
            stats[layer.name] = {"mean": values[2], "var": values[3]}
        elif isinstance(layer, keras.layers.Conv2D):
            kernel = layer.get_weights()[0]
            bias = rng.normal(0, 0.1, kernel.shape[-1]).astype(np.float32)
            layer.set_weights([kernel, bias])
            params[layer.name] = {"kernel": kernel, "bias": bias}
    return model, {"params": params, "batch_stats": stats}


def images(n, size, seed):
    return np.random.default_rng(seed).uniform(-120, 140, (n, size, size, 3)).astype(np.float32)


# Odd sizes catch 'SAME' vs explicit padding; at 12 px the second stage's maps are 2x2 and at
# 8 px both stages' are under 3x3, so the 3x3 convolutions run as SmallMapConv3x3.
@pytest.mark.parametrize("size", [37, 32, 12, 8])
def test_inference_features_match_keras(keras_and_flax, size):
    model, variables = keras_and_flax
    x = images(3, size, seed=size)
    expected = model.predict(x, verbose=0)
    module = TinyResNet(width=WIDTH, stage_sizes=STAGES)
    got = jax.jit(functools.partial(module.apply, train=False))(variables, x)
    assert got.shape == (3, module.num_features) == (3, 4 * WIDTH * 2)
    assert got.dtype == jnp.float32
    assert np.abs(expected).max() > 1.0
    assert np.max(np.abs(np.asarray(got) - expected)) <= TOL


def test_training_mode_matches_keras(keras_and_flax):
    """Batch statistics in the forward pass and the moving-average update (momentum 0.99)."""
    model, variables = keras_and_flax
    x = images(4, 37, seed=1)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    expected, new_non_trainable = jax.jit(
        lambda t, n, x: model.stateless_call(t, n, x, training=True))(trainable, non_trainable, x)
    module = TinyResNet(width=WIDTH, stage_sizes=STAGES)
    got, updates = jax.jit(functools.partial(module.apply, train=True, mutable=["batch_stats"]))(
        variables, x)
    assert np.max(np.abs(np.asarray(got) - np.asarray(expected))) <= TOL
    keras_stats = {v.path: np.asarray(value)
                   for v, value in zip(model.non_trainable_variables, new_non_trainable)}
    checked = 0
    for layer, s in updates["batch_stats"].items():
        for flax_name, keras_name in (("mean", "moving_mean"), ("var", "moving_variance")):
            new = keras_stats[f"{layer}/{keras_name}"]
            assert np.max(np.abs(new - variables["batch_stats"][layer][flax_name])) > 1e-4
            assert np.max(np.abs(np.asarray(s[flax_name]) - new)) <= 1e-5
            checked += 1
    assert checked == 2 * len(variables["batch_stats"])


def test_keras_default_initialisation():
    """glorot_uniform kernels (fan in/out over the receptive field), zero biases, BN identity."""
    module = TinyResNet(width=8, stage_sizes=(1,))
    # Partitionable threefry (the default) compiles several times slower on XLA:CPU.
    with jax.threefry_partitionable(False):
        variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    params, stats = variables["params"], variables["batch_stats"]
    for name, p in params.items():
        if name.endswith("_conv"):
            kh, kw, cin, cout = p["kernel"].shape
            limit = np.sqrt(6.0 / (kh * kw * (cin + cout)))
            k = np.asarray(p["kernel"])
            assert np.abs(k).max() <= limit
            if k.size >= 1000:  # the uniform's std is limit / sqrt(3)
                assert abs(k.std() / (limit / np.sqrt(3)) - 1) < 0.1, name
            assert not np.any(np.asarray(p["bias"]))
        else:
            assert np.all(np.asarray(p["scale"]) == 1) and not np.any(np.asarray(p["bias"]))
            assert not np.any(np.asarray(stats[name]["mean"]))
            assert np.all(np.asarray(stats[name]["var"]) == 1)


def test_resnet50_configuration():
    module = ResNet50()
    assert tuple(module.stage_sizes) == (3, 4, 6, 3) and module.width == 64
    assert module.num_features == 2048
    assert BN_EPSILON == 1.001e-5 and BN_MOMENTUM == 0.99
    assert TinyResNet(width=8, stage_sizes=(1, 1, 1, 1)).num_features == 256


def test_bfloat16_compute_returns_float32_features(keras_and_flax):
    _, variables = keras_and_flax
    x = images(2, 32, seed=5)
    f32 = TinyResNet(width=WIDTH, stage_sizes=STAGES)
    bf16 = TinyResNet(width=WIDTH, stage_sizes=STAGES, dtype=jnp.bfloat16)
    a = jax.jit(functools.partial(f32.apply, train=False))(variables, x)
    b = jax.jit(functools.partial(bf16.apply, train=False))(variables, x)
    assert b.dtype == jnp.float32
    # bfloat16 has 8 mantissa bits: about 1% relative error after a dozen layers.
    assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= 0.05 * np.abs(np.asarray(a)).max()


def test_3x3_convolutions_on_maps_under_3x3_are_matmuls(keras_and_flax):
    """XLA:CPU runs a convolution whose window exceeds its input as a naive loop: at 8 px every
    block's 3x3 convolution sees a map under 3x3, so conv1 is the only convolution left."""
    _, variables = keras_and_flax
    module = TinyResNet(width=WIDTH, stage_sizes=STAGES)

    def convolutions(size):
        jaxpr = jax.make_jaxpr(functools.partial(module.apply, train=False))(
            variables, jnp.zeros((1, size, size, 3)))
        return str(jaxpr).count("conv_general_dilated")

    assert convolutions(8) == 1
    assert convolutions(37) == 1 + sum(STAGES)  # conv1 + one 3x3 per block
