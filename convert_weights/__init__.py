"""Keras ResNet50 (v1) weight files -> Flax variables in an Orbax checkpoint, with parity checks.

  python -m sourcematters_jax.convert_weights --input resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --output weights/imagenet            # source and preprocessing recognised from the name
  python -m sourcematters_jax.convert_weights --input RadImageNet-ResNet50_notop.h5 --output weights/radimagenet

Modules: `h5_reader` (the three Keras layouts, h5py only), `resnet_mapping` (Keras names ->
the flat Flax tree of `sourcematters_jax.models.ResNet`, refusals of other architectures),
`convert` (one conversion, atomic output), `keras_parity` (Keras reference models and the
`--verify` check), `cli`. Read the result with `sourcematters_jax.pretrained.load(DIR)`.
See docs/convert_weights.md.
"""

from sourcematters_jax.convert_weights.convert import convert
from sourcematters_jax.convert_weights.errors import ConversionError
from sourcematters_jax.convert_weights.h5_reader import KerasWeights, read_keras_weights
from sourcematters_jax.convert_weights.resnet_mapping import keras_to_flax

__all__ = ["ConversionError", "KerasWeights", "convert", "keras_to_flax", "read_keras_weights"]
