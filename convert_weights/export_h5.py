"""Flax ResNet variables -> a Keras weight file in the keras-applications (legacy Keras 2) layout.

The file is what `keras.applications.ResNet50(weights='imagenet', include_top=False)` downloads
and what `h5_reader` reads as `keras_legacy_weights`:

  /                     attrs layer_names (every layer of the Keras model, in `model.layers`
                        order, input layer excepted), backend 'tensorflow', keras_version
                        '2.2.4', sourcematters_export (JSON: what was exported, from where)
  /<layer>              attrs weight_names ['<layer>/kernel:0', ...]; empty for layers
                        without weights (padding, activations, add, pooling)
  /<layer>/<layer>/kernel:0 ...   the tensors, float32, Keras shapes (HWIO kernels)

Why this order and these attributes: Keras 3 `model.load_weights('x.h5')` (and Keras 2's) loads
a legacy file *topologically*: the i-th layer with weights in `layer_names` goes into the i-th
layer with weights of `model.layers` (with `by_name=True`, by name instead). So the names are
listed in Keras' own layer order (conv1, then per block 1, 2, [0 conv, 3 conv, 0 bn, 3 bn | 3];
checked against Keras 3 by tests/test_export.py). Within a layer the tensors follow Keras'
weight order, which is `resnet_mapping.KERAS_VARS` (the converter's name map, inverted here).
`keras_version` is needed because tf.keras treats a file without one as a Keras 1 file and
runs its Keras 1 weight conversions; `backend` 'tensorflow' is what keras-applications files
carry (HWIO kernels). Keras 3 acts on neither.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from sourcematters_jax.convert_weights.errors import ConversionError
from sourcematters_jax.convert_weights.resnet_mapping import KERAS_VARS

# The legacy-format generation written (see the module docstring): any Keras >= 2 reads it as is.
KERAS_FORMAT_VERSION = "2.2.4"
BACKEND = "tensorflow"
HEAD_LAYER = "predictions"  # keras.applications' name for the classifier Dense layer
METADATA_ATTR = "sourcematters_export"
# Keras' limit for one HDF5 attribute (legacy_h5_format.HDF5_OBJECT_HEADER_LIMIT); longer string
# lists are split into name0, name1, ..., as Keras does and h5_reader reads.
_ATTR_LIMIT = 64512

Layers = list[tuple[str, list[tuple[str, np.ndarray]]]]


def keras_layer_order(stage_sizes: Sequence[int], include_head: bool = False
                      ) -> list[tuple[str, str | None]]:
    """[(layer name, 'conv' | 'bn' | 'dense' | None)] of the Keras ResNet v1 with
    include_top=False, pooling='avg' (plus keras.applications' `predictions` Dense), in
    `model.layers` order without the input layer. None marks a layer without weights."""
    order: list[tuple[str, str | None]] = [
        ("conv1_pad", None), ("conv1_conv", "conv"), ("conv1_bn", "bn"), ("conv1_relu", None),
        ("pool1_pad", None), ("pool1_pool", None)]
    for stage, blocks in enumerate(stage_sizes):
        for block in range(blocks):
            n = f"conv{stage + 2}_block{block + 1}"
            order += [(f"{n}_1_conv", "conv"), (f"{n}_1_bn", "bn"), (f"{n}_1_relu", None),
                      (f"{n}_2_conv", "conv"), (f"{n}_2_bn", "bn"), (f"{n}_2_relu", None)]
            if block == 0:  # Keras builds the projection's conv and bn around the 3rd conv
                order += [(f"{n}_0_conv", "conv"), (f"{n}_3_conv", "conv"),
                          (f"{n}_0_bn", "bn"), (f"{n}_3_bn", "bn")]
            else:
                order += [(f"{n}_3_conv", "conv"), (f"{n}_3_bn", "bn")]
            order += [(f"{n}_add", None), (f"{n}_out", None)]
    order.append(("avg_pool", None))
    if include_head:
        order.append((HEAD_LAYER, "dense"))
    return order


def flax_to_keras(stage_sizes: Sequence[int], backbone: Mapping[str, Any],
                  head: Mapping[str, Any] | None = None) -> Layers:
    """[(layer, [(weight name, float32 array), ...])] in Keras' layer order.

    Args:
      backbone: {'params', 'batch_stats'} of `models.ResNet` (the flat Keras-named tree).
      head: None, or the classifier's Dense params {'kernel' [features, classes], 'bias'},
        written as keras.applications' `predictions` layer.
    Raises ConversionError naming every missing variable.
    """
    layers: Layers = []
    missing: list[str] = []
    for layer, kind in keras_layer_order(stage_sizes, include_head=head is not None):
        tensors: list[tuple[str, np.ndarray]] = []
        # A Dense layer has Conv2D's variables (kernel, bias), in the same order.
        for keras_name, collection, flax_name in KERAS_VARS.get(
                "conv" if kind == "dense" else kind, ()):
            owner = head if kind == "dense" else backbone.get(collection, {}).get(layer, {})
            if flax_name not in owner:
                missing.append(f"{'head' if kind == 'dense' else collection}/{layer}/{flax_name}")
                continue
            tensors.append((f"{layer}/{keras_name}:0", np.asarray(owner[flax_name], np.float32)))
        layers.append((layer, tensors))
    if missing:
        raise ConversionError(f"variables lack {len(missing)} tensor(s) of the Keras ResNet: "
                              + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    return layers


def _set_strings(attrs: h5py.AttributeManager, name: str, values: Sequence[str]) -> None:
    data = np.asarray([v.encode("utf8") for v in values], dtype="S") if values else np.asarray(
        [], dtype="S1")
    chunks = 1
    while data.nbytes > chunks * _ATTR_LIMIT:
        chunks += 1
    if chunks == 1:
        attrs[name] = data
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            attrs[f"{name}{i}"] = part


def write_keras_h5(path: str | os.PathLike, layers: Layers, metadata: Mapping[str, Any]
                   ) -> pathlib.Path:
    """Writes `layers` as a legacy Keras weight file at `path` (created or truncated).

    Not atomic by itself: `export.export` writes to a temporary sibling, checks it and renames
    it. `metadata` (JSON-able) goes into the root attribute `sourcematters_export`; Keras and
    `h5_reader` ignore it.
    """
    path = pathlib.Path(path)
    with h5py.File(path, "w") as f:
        _set_strings(f.attrs, "layer_names", [name for name, _ in layers])
        f.attrs["backend"] = BACKEND.encode("utf8")
        f.attrs["keras_version"] = KERAS_FORMAT_VERSION.encode("utf8")
        _set_metadata(f, metadata)
        # Groups in name order, as Keras writes them; `layer_names` keeps the model's order.
        for name, tensors in sorted(layers, key=lambda item: item[0]):
            group = f.create_group(name)
            _set_strings(group.attrs, "weight_names", [w for w, _ in tensors])
            for weight_name, array in tensors:
                group.create_dataset(weight_name, data=array)
    return path


def _set_metadata(f: h5py.File, metadata: Mapping[str, Any]) -> None:
    f.attrs[METADATA_ATTR] = json.dumps(dict(metadata), sort_keys=True)


def update_export_metadata(path: str | os.PathLike, metadata: Mapping[str, Any]) -> None:
    """Replaces the `sourcematters_export` record of a file written by `write_keras_h5`."""
    with h5py.File(path, "r+") as f:
        _set_metadata(f, metadata)


def read_export_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The `sourcematters_export` record of a file written here, or None for other files."""
    with h5py.File(path, "r") as f:
        raw = f.attrs.get(METADATA_ATTR)
    if raw is None:
        return None
    return json.loads(raw.decode("utf8") if isinstance(raw, bytes) else str(raw))
