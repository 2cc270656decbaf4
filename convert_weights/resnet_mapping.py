"""Keras ResNet v1 tensors -> the flat Flax variables of `sourcematters_jax.models.ResNet`.

Module names of the Flax model equal the Keras layer names, so the map is a rename per layer:

  Keras Conv2D              kernel, bias                        -> params[layer] kernel, bias
  Keras BatchNormalization  gamma, beta                         -> params[layer] scale, bias
                            moving_mean, moving_variance        -> batch_stats[layer] mean, var

Both use HWIO kernels and the same channel order, so no tensor is transposed. Within a layer the
tensors are matched by the names the file gives them; where it gives none (Keras 3 files) or
unknown ones, by their position, which is how Keras itself loads these files (Keras' weight
order: kernel, bias / gamma, beta, moving_mean, moving_variance).

The architecture (stage_sizes, width) is read from the layer names and the stem's kernel, so
tiny test variants convert through the same code. Anything else is refused with a message that
says what the file looks like: another architecture (DenseNet, ResNet v2, the fchollet v0.2
ResNet50 layout), a model with its classifier, a BatchNorm epsilon other than Keras ResNet's,
and, strictly, every missing, unexpected or mis-shaped tensor.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from sourcematters_jax.convert_weights.errors import ConversionError
from sourcematters_jax.convert_weights.h5_reader import KerasWeights, Tensors
from sourcematters_jax import pretrained
from sourcematters_jax.models.resnet import BN_EPSILON

# Keras variable names in Keras' own order, and where each goes in the Flax tree.
KERAS_VARS = {
    "conv": (("kernel", "params", "kernel"), ("bias", "params", "bias")),
    "bn": (("gamma", "params", "scale"), ("beta", "params", "bias"),
           ("moving_mean", "batch_stats", "mean"), ("moving_variance", "batch_stats", "var")),
}
_BLOCK_RE = re.compile(r"conv(\d+)_block(\d+)_(\d)_(conv|bn)")


def refuse_other_architectures(names: set[str], where: str) -> None:
    """Raises ConversionError with a specific message for layouts known not to be ours."""
    def has(pattern: str) -> list[str]:
        return sorted(n for n in names if re.search(pattern, n))

    if found := has(r"^(res|bn)\d+[a-z]+_branch|^bn_conv1$"):
        raise ConversionError(
            f"{where}: the old fchollet/deep-learning-models v0.2 ResNet50 layout (layers like "
            f"{found[0]!r}, BatchNorm epsilon 1e-3) is a different network from "
            "keras.applications.ResNet50 and is not supported; use the keras-applications file "
            "that keras.applications.ResNet50(weights='imagenet') downloads "
            "(storage.googleapis.com/tensorflow/keras-applications/resnet/"
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5)")
    if found := has(r"[./](weight|running_mean|running_var)$|^layer\d+\."):
        raise ConversionError(f"{where}: looks like a PyTorch/torchvision state dict (names like "
                              f"{found[0]!r}); only Keras weight files are supported")
    if found := has(r"^conv1/conv$|^pool\d+_(conv|bn)$|_block\d+_concat$|^bn$"):
        raise ConversionError(f"{where}: looks like a Keras DenseNet (layers like {found[0]!r}), "
                              "not a Keras ResNet v1 (ResNet50)")
    if found := has(r"_preact_bn$|^post_bn$"):
        raise ConversionError(f"{where}: looks like a Keras ResNet v2 (layers like "
                              f"{found[0]!r}); only ResNet v1 (keras.applications.ResNet50) "
                              "is supported")
    if found := has(r"^(probs|predictions|fc1000)$"):
        raise ConversionError(f"{where}: the file includes the classifier layer {found[0]!r}; "
                              "convert the include_top=False ('_notop') weights")
    if "conv1_conv" not in names:
        raise ConversionError(f"{where}: not a Keras ResNet v1: no layer 'conv1_conv' (layers "
                              f"with weights: {sorted(names)[:8]}"
                              f"{' ...' if len(names) > 8 else ''})")


def infer_architecture(layers: dict[str, Tensors], where: str) -> dict[str, Any]:
    """{'family', 'stage_sizes', 'width'} from the layer names and the stem kernel."""
    stem = dict(layers["conv1_conv"])
    kernel = stem.get("kernel", layers["conv1_conv"][0][1])
    if np.ndim(kernel) != 4:
        raise ConversionError(f"{where}: conv1_conv's first tensor has shape {np.shape(kernel)}, "
                              "expected a 4-D kernel")
    blocks: dict[int, set[int]] = {}
    for name in layers:
        if m := _BLOCK_RE.fullmatch(name):
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    stages = sorted(blocks)
    if not stages or stages != list(range(2, 2 + len(stages))):
        raise ConversionError(f"{where}: residual stages {stages} are not conv2, conv3, ... "
                              "in sequence (layer names like 'conv2_block1_1_conv')")
    stage_sizes = []
    for stage in stages:
        numbers = sorted(blocks[stage])
        if numbers != list(range(1, len(numbers) + 1)):
            raise ConversionError(f"{where}: stage conv{stage} has blocks {numbers}, "
                                  "expected 1..n in sequence")
        stage_sizes.append(len(numbers))
    return {"family": pretrained.ARCH_FAMILY, "stage_sizes": stage_sizes,
            "width": int(np.shape(kernel)[-1])}


def keras3_positional_names(layers: dict[str, Tensors], where: str) -> dict[str, Tensors]:
    """Names the layers of a Keras 3 file that records no layer names.

    Keras 3 keys such layers by class and position in `model.layers` ('conv2d', 'conv2d_1',
    ...). For keras.applications ResNet v1 that order is conv1, then per block 1, 2, [0,] 3
    (the projection shortcut after the 3x3 conv; checked against Keras 3.15 by the tests). A
    stage starts where a block's first 1x1 conv doubles the bottleneck width; the first block
    of every stage has the projection. Batch norms follow their convolutions one to one.
    """
    def by_class(prefix: str) -> list[Tensors]:
        keys = sorted((k for k in layers if re.fullmatch(rf"{prefix}(_\d+)?", k)),
                      key=lambda k: int(k[len(prefix) + 1:] or 0))
        return [layers[k] for k in keys]

    convs, bns = by_class("conv2d"), by_class("batch_normalization")
    others = sorted(k for k in layers if not re.fullmatch(r"(conv2d|batch_normalization)(_\d+)?",
                                                          k))
    if others:
        raise ConversionError(f"{where}: Keras 3 file without layer names holds layers "
                              f"{others[:8]} besides Conv2D and BatchNormalization; not a "
                              "Keras ResNet v1")
    if not convs or len(convs) != len(bns):
        raise ConversionError(f"{where}: Keras 3 file without layer names has {len(convs)} "
                              f"Conv2D and {len(bns)} BatchNormalization layers; a Keras "
                              "ResNet v1 has one of each per convolution")
    shapes = [np.shape(c[0][1]) for c in convs]
    if any(len(s) != 4 for s in shapes):
        raise ConversionError(f"{where}: a Conv2D's first tensor is not a 4-D kernel")
    names = ["conv1"]
    i, stage = 1, 1
    while i < len(shapes):
        stage += 1
        block = 0
        while True:
            block += 1
            order = ("1", "2", "0", "3") if block == 1 else ("1", "2", "3")
            if i + len(order) > len(shapes):
                raise ConversionError(f"{where}: Keras 3 file without layer names ends inside "
                                      f"block conv{stage}_block{block}; not a Keras ResNet v1")
            names += [f"conv{stage}_block{block}_{j}" for j in order]
            filters = shapes[i][-1]
            i += len(order)
            # The next block stays in this stage iff its first conv keeps the bottleneck width.
            if i >= len(shapes) or shapes[i][-1] != filters:
                break
    out: dict[str, Tensors] = {}
    for name, conv, bn in zip(names, convs, bns):
        out[f"{name}_conv"], out[f"{name}_bn"] = conv, bn
    return out


def _assign(layer: str, tensors: Tensors, kind: str, where: str,
            variables: dict[str, dict[str, dict[str, np.ndarray]]], problems: list[str]) -> None:
    spec = KERAS_VARS[kind]
    keras_names = [k for k, _, _ in spec]
    given = [n for n, _ in tensors]
    if sorted(n for n in given if n is not None) == sorted(keras_names):
        values = dict(tensors)
    elif len(tensors) == len(spec):
        values = {k: array for k, (_, array) in zip(keras_names, tensors)}  # Keras' order
    else:
        problems.append(f"layer {layer!r} has tensors {given}, expected {keras_names}")
        return
    for keras_name, collection, flax_name in spec:
        array = values[keras_name]
        if not np.issubdtype(np.asarray(array).dtype, np.floating):
            problems.append(f"{layer}/{keras_name} has dtype {np.asarray(array).dtype}, "
                            "expected floating point")
            continue
        variables[collection].setdefault(layer, {})[flax_name] = np.asarray(array, np.float32)


def keras_to_flax(weights: KerasWeights, where: str
                  ) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, np.ndarray]]]]:
    """(architecture, {'params', 'batch_stats'}) from a Keras ResNet v1 weight file.

    Raises ConversionError naming every problem at once (after the architecture checks).
    """
    layers = weights.layers
    if weights.positional:
        layers = keras3_positional_names(layers, where)
    names = set(layers)
    refuse_other_architectures(names, where)
    bad_eps = {k: v for k, v in weights.bn_epsilons.items() if abs(v - BN_EPSILON) > 1e-12}
    if bad_eps:
        name, eps = sorted(bad_eps.items())[0]
        raise ConversionError(f"{where}: BatchNormalization epsilon {eps} in layer {name!r} "
                              f"({len(bad_eps)} layer(s)); Keras ResNet v1 and the Flax model "
                              f"use {BN_EPSILON}")
    architecture = infer_architecture(layers, where)
    variables: dict[str, dict[str, dict[str, np.ndarray]]] = {"params": {}, "batch_stats": {}}
    problems: list[str] = []
    for layer, tensors in sorted(layers.items()):
        kind = "conv" if layer.endswith("_conv") else "bn" if layer.endswith("_bn") else None
        if kind is None:
            problems.append(f"unexpected layer {layer!r} (not a _conv or _bn layer)")
            continue
        _assign(layer, tensors, kind, where, variables, problems)
    problems += pretrained.tree_mismatches(pretrained.expected_shapes(architecture), variables)
    if problems:
        raise ConversionError(
            f"{where}: does not match a Keras ResNet v1 with stage_sizes "
            f"{architecture['stage_sizes']} and width {architecture['width']}: "
            f"{len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return architecture, variables
