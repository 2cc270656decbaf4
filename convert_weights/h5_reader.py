"""Reads Keras weight files with h5py only (no TensorFlow, no Keras), in three layouts.

  keras_legacy_weights  `model.save_weights('x.h5')` of Keras 2 / tf.keras, and what
                        keras-applications ships: `layer_names` attribute at the root, one group
                        per layer with a `weight_names` attribute naming its datasets
                        ('conv1_conv/kernel:0' in TF 2, 'conv1_conv/kernel' in Keras 3).
  keras_legacy_model    `model.save('x.h5')`: `model_config` attribute plus the same layout
                        under a `model_weights` group (RadImageNet ships this).
  keras3_weights        Keras 3 `model.save_weights('x.weights.h5')`: `layers/<object
                        name>/vars/<index>`; recent Keras records the layer name as the `name`
                        attribute of `vars`, older Keras 3 does not (then only the position
                        identifies a layer, as when Keras itself loads the file).

The result is `KerasWeights`: for every layer, its tensors in file order, each with the
variable name the file gives it ('kernel', 'gamma', ...) or None where the file has no names.
Files that are not HDF5 (PyTorch checkpoints, .keras archives, garbage) or are truncated get a
`ConversionError` that says what the file looks like.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import zipfile
from typing import Any

import h5py
import numpy as np

from sourcematters_jax.convert_weights.errors import ConversionError

LAYOUTS = ("keras_legacy_weights", "keras_legacy_model", "keras3_weights")

Tensors = list[tuple[str | None, np.ndarray]]


@dataclasses.dataclass
class KerasWeights:
    """Tensors of a Keras weight file, by layer, in file order.

    Attributes:
      layout: one of LAYOUTS.
      layers: {layer name: [(variable name or None, array), ...]}; for a Keras 3 file without
        layer names, the keys are positional ('conv2d_3', 'batch_normalization_3', ...) and
        `positional` is True.
      positional: layer names are Keras 3 object paths, not layer names.
      nested: the legacy file stores the network as one sub-model layer.
      keras_version: the `keras_version` attribute, if the file has one.
      bn_epsilons: {layer name: epsilon} from a full-model file's `model_config`.
    """

    layout: str
    layers: dict[str, Tensors]
    positional: bool = False
    nested: bool = False
    keras_version: str | None = None
    bn_epsilons: dict[str, float] = dataclasses.field(default_factory=dict)


def read_keras_weights(path: str | pathlib.Path) -> KerasWeights:
    """Reads every weight tensor of a Keras .h5 file; raises ConversionError on bad input."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise ConversionError(f"{path}: {_describe_non_hdf5(path)}")
    try:
        with h5py.File(path, "r") as f:
            return _read_open_file(f, path)
    except ConversionError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ConversionError(f"{path}: cannot read the HDF5 file ({type(e).__name__}: {e}); "
                              "it may be truncated or corrupt") from None


def _describe_non_hdf5(path: pathlib.Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] == b"PK\x03\x04" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if "model.weights.h5" in names:
            return ("a Keras 3 .keras archive, not an HDF5 file; unzip it and convert its "
                    "model.weights.h5")
        if any(n.endswith("data.pkl") for n in names):
            return ("a PyTorch checkpoint (torch.save zip), not a Keras HDF5 file; PyTorch "
                    "state dicts are not supported")
        return "a zip archive, not a Keras HDF5 weight file"
    if head[:1] == b"\x80":
        return ("a Python pickle (e.g. a legacy torch.save file), not a Keras HDF5 file; "
                "PyTorch state dicts are not supported")
    return "not an HDF5 file (no HDF5 signature); is it corrupt or truncated?"


def _strings(attrs: h5py.AttributeManager, name: str) -> list[str]:
    """A list-of-strings attribute, also when Keras split it into `name0`, `name1`, ...
    because of the HDF5 object-header size limit."""
    if name in attrs:
        values = list(np.atleast_1d(attrs[name]))
    else:
        values, i = [], 0
        while f"{name}{i}" in attrs:
            values += list(np.atleast_1d(attrs[f"{name}{i}"]))
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _version(attrs: h5py.AttributeManager) -> str | None:
    v = attrs.get("keras_version")
    return v.decode("utf8") if isinstance(v, bytes) else (None if v is None else str(v))


def _read_open_file(f: h5py.File, path: pathlib.Path) -> KerasWeights:
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        layers, nested = _read_legacy(f, path)
        return KerasWeights("keras_legacy_weights", layers, nested=nested,
                            keras_version=_version(f.attrs))
    if "model_weights" in f and isinstance(f["model_weights"], h5py.Group):
        group = f["model_weights"]
        layers, nested = _read_legacy(group, path)
        return KerasWeights("keras_legacy_model", layers, nested=nested,
                            keras_version=_version(group.attrs) or _version(f.attrs),
                            bn_epsilons=_bn_epsilons(f.attrs.get("model_config"), path))
    if "layers" in f and isinstance(f["layers"], h5py.Group):
        layers, positional = _read_keras3(f, path)
        return KerasWeights("keras3_weights", layers, positional=positional)
    datasets: list[str] = []
    f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset)
                 else None)
    if any(n.endswith(("running_mean", "running_var")) or re.search(r"\.(weight|bias)$", n)
           for n in datasets):
        raise ConversionError(f"{path}: looks like a PyTorch/torchvision state dict stored in "
                              "HDF5 (names like 'layer1.0.conv1.weight'); only Keras weight "
                              "files are supported")
    raise ConversionError(f"{path}: HDF5 file is not a Keras weight file (no 'layer_names' "
                          "attribute, 'model_weights' group or Keras 3 'layers' group); top "
                          f"level holds {sorted(f.keys())[:8]}")


def _owner_and_var(weight_name: str) -> tuple[str, str]:
    """'conv1_conv/kernel:0' -> ('conv1_conv', 'kernel')."""
    parts = weight_name.split("/")
    var = re.sub(r":\d+$", "", parts[-1])
    return (parts[-2] if len(parts) > 1 else ""), var


def _read_legacy(group: h5py.Group, path: pathlib.Path) -> tuple[dict[str, Tensors], bool]:
    layers: dict[str, Tensors] = {}
    nested = False
    for layer_name in _strings(group.attrs, "layer_names"):
        if layer_name not in group:
            raise ConversionError(f"{path}: layer {layer_name!r} is listed in 'layer_names' but "
                                  "has no group in the file")
        g = group[layer_name]
        weight_names = _strings(g.attrs, "weight_names")
        # A weight-less layer (padding, activation) has none; a whole sub-model saved as one
        # layer names the weights of several inner layers.
        owners = {_owner_and_var(w)[0] for w in weight_names}
        is_submodel = len(owners) > 1
        nested |= is_submodel
        group_layers: dict[str, Tensors] = {}
        for w in weight_names:
            if w not in g or not isinstance(g[w], h5py.Dataset):
                raise ConversionError(f"{path}: weight {w!r} of layer {layer_name!r} is listed "
                                      "in 'weight_names' but missing from the file")
            owner, var = _owner_and_var(w)
            group_layers.setdefault(owner if is_submodel else layer_name, []).append(
                (var, np.asarray(g[w][()])))
        for name, tensors in group_layers.items():
            if name in layers:
                raise ConversionError(f"{path}: layer {name!r} appears twice")
            layers[name] = tensors
    return layers, nested


def _bn_epsilons(model_config: Any, path: pathlib.Path) -> dict[str, float]:
    """{layer name: epsilon} of every BatchNormalization layer in a full-model config."""
    if model_config is None:
        return {}
    if isinstance(model_config, bytes):
        model_config = model_config.decode("utf8")
    try:
        config = json.loads(model_config)
    except ValueError as e:
        raise ConversionError(f"{path}: attribute 'model_config' is not valid JSON ({e})") from None
    found: dict[str, float] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "BatchNormalization" and isinstance(
                    node.get("config"), dict) and "epsilon" in node["config"]:
                found[str(node["config"].get("name"))] = float(node["config"]["epsilon"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def _natural_key(name: str) -> tuple[str, int]:
    """'conv2d_12' -> ('conv2d', 12), 'conv2d' -> ('conv2d', 0): Keras 3's object order."""
    m = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
    return m.group(1), int(m.group(2) or 0)


def _read_keras3(f: h5py.File, path: pathlib.Path) -> tuple[dict[str, Tensors], bool]:
    entries: list[tuple[str, str | None, Tensors]] = []  # (object path, layer name, tensors)

    def walk(container: h5py.Group, prefix: str) -> None:
        vars_group = container.get("vars")
        if isinstance(vars_group, h5py.Group) and len(vars_group) and prefix:
            name = vars_group.attrs.get("name")
            name = name.decode("utf8") if isinstance(name, bytes) else name
            keys = sorted(vars_group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
            if any(not k.isdigit() for k in keys):
                raise ConversionError(f"{path}: unexpected entries {keys} in {prefix}/vars")
            entries.append((prefix, name, [(None, np.asarray(vars_group[k][()])) for k in keys]))
        elif isinstance(vars_group, h5py.Group) and len(vars_group):
            raise ConversionError(f"{path}: the model itself holds variables "
                                  f"({sorted(vars_group.keys())}); not a plain Keras ResNet")
        children = container.get("layers")
        if isinstance(children, h5py.Group):
            for key in sorted(children.keys(), key=_natural_key):
                walk(children[key], f"{prefix}/{key}" if prefix else key)

    walk(f, "")
    if not entries:
        raise ConversionError(f"{path}: Keras 3 weights file holds no layer variables")
    positional = any(name is None for _, name, _ in entries)
    layers: dict[str, Tensors] = {}
    for obj_path, name, tensors in entries:
        key = obj_path.rsplit("/", 1)[-1] if positional else name
        if key in layers:
            raise ConversionError(f"{path}: layer {key!r} appears twice ({obj_path})")
        layers[key] = tensors
    return layers, positional
