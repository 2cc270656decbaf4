"""Keras ResNet50 v1 topology in Flax Linen, with parameter names equal to the Keras layer names.

The reference is `keras.applications.ResNet50(include_top=False, pooling='avg')`:
  conv1_pad (ZeroPadding 3) -> conv1_conv (7x7/2, valid, bias) -> conv1_bn -> relu
  pool1_pad (ZeroPadding 1) -> pool1_pool (3x3/2 max, valid)
  conv{2..5}_block{k}: 1x1 (stride of the stage on the first block) -> 3x3 same -> 1x1 (x4),
  projection shortcut `_0_conv/_0_bn` on the first block of each stage only, add, relu
  avg_pool: global average pooling -> [N, 32 * width] features (2048 for ResNet50).

Every convolution has a bias and every BatchNorm uses epsilon 1.001e-5 and momentum 0.99, as in
Keras. Strided ops use explicit zero padding plus VALID, never 'SAME', so feature maps align with
Keras at any input size. 1x1 convolutions are computed as channel matmuls (`Conv1x1`: same
parameters and result, much faster training on XLA:CPU), and so are 3x3 convolutions on maps
smaller than 3x3 (`SmallMapConv3x3`, over the 9 taps). The parameter tree is flat:
`params['conv2_block1_1_conv']['kernel']`, `batch_stats['conv2_block1_1_bn']['mean']`, so
converting Keras weights is a rename. Width and blocks per stage are fields, so tests run tiny
models through the very same code.

Memory levers (`docs/training.md`): `dtype=bfloat16` is mixed precision: parameters (and so
gradients and Adam state) stay float32, convolutions and matmuls compute in bfloat16, BatchNorm
statistics are computed in float32, and the stem convolution (`conv1_conv`) stays float32 so the
preprocessed input (grey levels minus the BGR mean, about +-150) is not rounded to bfloat16 (steps
of 0.5-1 grey level at that range, a rounding error as large as the X-ray noise confounder's
1.83 vs 2.10 grey-level noise difference). `remat=True` rematerialises every residual block in the backward pass
(`nn.remat` of a function of the module, so parameter names stay flat and unchanged): only block
inputs are kept between the forward and the backward pass.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# keras.applications.resnet settings.
BN_EPSILON = 1.001e-5
BN_MOMENTUM = 0.99
RESNET50_STAGE_SIZES = (3, 4, 6, 3)
LAST_STAGE = "last_stage"  # name of the sown last-stage feature map (collection 'intermediates')


def _zero_pad(x: jnp.ndarray, pad: int) -> jnp.ndarray:
    """Keras ZeroPadding2D(pad) on NHWC input."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


class Conv1x1(nn.Module):
    """Keras Conv2D(features, 1, strides, padding='valid', use_bias=True) as a channel matmul.

    The same parameters as `nn.Conv(features, (1, 1))` (kernel [1, 1, C_in, C_out], bias), made
    in the same order, so initialisation and weight conversion are unchanged; the output equals
    the convolution's up to float rounding. Why: XLA:CPU trains dots much faster than 1x1
    convolutions (their gradients become transposes plus slower kernels); ResNet50's training
    step is about 1.4x faster on CPU (docs/performance.md), and a dot is as fast on GPU/TPU.
    """

    features: int
    strides: int = 1
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.glorot_uniform()
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", self.kernel_init, (1, 1, x.shape[-1], self.features),
                            jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides, :]
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jax.lax.dot_general(x, kernel[0, 0], (((x.ndim - 1,), (0,)), ((), ())))
        return y + bias


class SmallMapConv3x3(nn.Module):
    """Keras Conv2D(features, 3, padding='same', use_bias=True) on a map smaller than 3x3.

    Computed as a matmul over the 9 taps of the zero-padded input (im2col), with the parameters
    of `nn.Conv(features, (3, 3))`. Why: when the window is larger than the input (ResNet50's
    last stage at <= 64 px input), XLA's algebraic simplifier swaps the convolution's operands
    and XLA:CPU then runs it, and its gradient, as a naive loop (docs/performance.md). The maps
    here are at most 2x2, so the 9x patch tensor is small.
    """

    features: int
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.glorot_uniform()
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        n, h, w, c = x.shape
        kernel = self.param("kernel", self.kernel_init, (3, 3, c, self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        xp = _zero_pad(x, 1)
        patches = jnp.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)],
                                  axis=-1)  # [N, H, W, 9C], tap-major like kernel.reshape
        y = jax.lax.dot_general(patches, kernel.reshape(9 * c, self.features),
                                (((3,), (0,)), ((), ())))
        return y + bias


class ResNet(nn.Module):
    """Keras ResNet v1 backbone (bottleneck blocks) returning globally average-pooled features.

    Attributes:
      stage_sizes: blocks per stage; (3, 4, 6, 3) is ResNet50.
      width: channels of the stem and of the first stage's bottleneck (64 in ResNet50). Stage s
        uses `width * 2**s` bottleneck channels and outputs four times that.
      dtype: computation dtype (float32 for parity with Keras; bfloat16 is mixed precision,
        see the module docstring). Parameters are always float32; the stem conv is float32.
      remat: rematerialise each residual block in the backward pass (less activation memory,
        about one more forward pass of compute); results and parameter names are unchanged.
    """

    stage_sizes: Sequence[int] = RESNET50_STAGE_SIZES
    width: int = 64
    dtype: Any = jnp.float32
    remat: bool = False

    @property
    def num_features(self) -> int:
        return 4 * self.width * 2 ** (len(self.stage_sizes) - 1)

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False,
                 mask: jnp.ndarray | None = None) -> jnp.ndarray:
        """Features for NHWC float input that is already preprocessed for the source.

        Args:
          x: [N, H, W, 3] float images.
          train: BatchNorm uses batch statistics (and updates `batch_stats`) when True.
          mask: optional bool [N]; in training mode only the examples where it is True enter the
            BatchNorm batch statistics (padded batches of different sizes, as the trainer has).
        Returns:
          [N, num_features] float32 features.
        """
        # Keras Conv2D defaults: glorot_uniform kernel, zero bias (the study's "random init" source).
        conv = functools.partial(
            nn.Conv,
            use_bias=True,
            kernel_init=nn.initializers.glorot_uniform(),
            bias_init=nn.initializers.zeros,
            dtype=self.dtype,
        )
        norm = functools.partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            # Two-pass variance, as Keras computes it, for float32 parity.
            use_fast_variance=False,
            dtype=self.dtype,
        )
        conv1x1 = functools.partial(Conv1x1, dtype=self.dtype)
        bn_mask = None if mask is None else jnp.asarray(mask, bool)[:, None, None, None]

        def bottleneck(mdl, h, bn_mask, *, filters: int, strides: int, projection: bool,
                       name: str):
            del mdl  # the (possibly rematerialised) module the layers below attach to
            if projection:
                shortcut = conv1x1(4 * filters, strides=strides, name=f"{name}_0_conv")(h)
                shortcut = norm(name=f"{name}_0_bn")(shortcut, mask=bn_mask)
            else:
                shortcut = h
            h = conv1x1(filters, strides=strides, name=f"{name}_1_conv")(h)
            h = nn.relu(norm(name=f"{name}_1_bn")(h, mask=bn_mask))
            if min(h.shape[1:3]) >= 3:
                h = conv(filters, (3, 3), padding="SAME", name=f"{name}_2_conv")(h)
            else:
                h = SmallMapConv3x3(filters, dtype=self.dtype, name=f"{name}_2_conv")(h)
            h = nn.relu(norm(name=f"{name}_2_bn")(h, mask=bn_mask))
            h = conv1x1(4 * filters, name=f"{name}_3_conv")(h)
            h = norm(name=f"{name}_3_bn")(h, mask=bn_mask)
            return nn.relu(shortcut + h)

        # The stem convolution computes in float32 whatever the dtype (see the module docstring).
        x = jnp.asarray(x, jnp.float32)
        x = conv(self.width, (7, 7), strides=2, padding="VALID", name="conv1_conv",
                 dtype=jnp.float32)(_zero_pad(x, 3))
        x = nn.relu(norm(name="conv1_bn")(x.astype(self.dtype), mask=bn_mask))
        x = nn.max_pool(_zero_pad(x, 1), (3, 3), strides=(2, 2), padding="VALID")
        for stage, num_blocks in enumerate(self.stage_sizes):
            filters = self.width * 2**stage
            for block in range(num_blocks):
                fn = functools.partial(
                    bottleneck,
                    filters=filters,
                    strides=(1 if stage == 0 else 2) if block == 0 else 1,
                    projection=block == 0,
                    name=f"conv{stage + 2}_block{block + 1}",
                )
                x = (nn.remat(fn) if self.remat else fn)(self, x, bn_mask)
        # The last conv stage's activations, for Grad-CAM (sourcematters_jax/reuse/saliency.py):
        # kept only when 'intermediates' is mutable in apply (init and training leave it out).
        self.sow("intermediates", LAST_STAGE, x)
        return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)


def ResNet50(dtype: Any = jnp.float32, remat: bool = False) -> ResNet:  # noqa: N802 - keras name
    """The study's backbone: Keras ResNet50 v1, include_top=False, pooling='avg' (2048 features)."""
    return ResNet(stage_sizes=RESNET50_STAGE_SIZES, width=64, dtype=dtype, remat=remat)


def TinyResNet(width: int = 8, stage_sizes: Sequence[int] = (1, 1, 1, 1),  # noqa: N802
               dtype: Any = jnp.float32, remat: bool = False) -> ResNet:
    """A small ResNet through the same code path, for tests and the CPU demo."""
    return ResNet(stage_sizes=tuple(stage_sizes), width=width, dtype=dtype, remat=remat)
