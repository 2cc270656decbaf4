"""Converted pretrained backbones: save, load, and strict merging into a model.

A converted checkpoint is a directory written by `python -m sourcematters_jax.convert_weights`:

  DIR/metadata.json   format version, source, input file name and sha256, architecture,
                      the preprocessing mode the source expects (see `preprocessing.py`)
  DIR/variables/      Orbax checkpoint of {'params': ..., 'batch_stats': ...} in the flat
                      Keras-named layout of `models.ResNet` (params[layer]['kernel'|'bias'|'scale'],
                      batch_stats[layer]['mean'|'var']), float32 numpy arrays

The variables are written with `ocp.StandardCheckpointer`: the current Orbax API for a pytree of
arrays (OCDBT + tensorstore, with its own commit marker). It restores without a target as host
numpy arrays, and the trainer may instead pass an abstract target with shardings to restore
straight onto a device mesh. The metadata lives in plain JSON next to it so a person (or a
launcher) can read the source and preprocessing without Orbax.

Loading is strict everywhere: `load` checks the restored tree against the shapes `models.ResNet`
has for the recorded architecture, and `merge_into` checks every key path and shape of the
target; each raises one error that lists every missing, unexpected and mis-shaped tensor.
The 'random' source needs no checkpoint: it is the model's own (Keras-default) initialisation.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from sourcematters_jax import preprocessing, variables_io
from sourcematters_jax.models.resnet import ResNet

FORMAT = "sourcematters_jax.pretrained"
FORMAT_VERSION = 1
ARCH_FAMILY = "keras_resnet_v1"
METADATA_FILE = variables_io.METADATA_FILE
VARIABLES_DIR = variables_io.VARIABLES_DIR
COLLECTIONS = ("params", "batch_stats")
# The preprocessing each known source was trained with (PROTOCOL.md, "Input").
SOURCE_PREPROCESSING = {"imagenet": "caffe", "radimagenet": "caffe_div255", "random": "caffe"}
RANDOM_SOURCE = "random"

PathLike = str | os.PathLike
Shapes = dict[tuple[str, ...], tuple[int, ...]]


# ---------------------------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------------------------

def architecture_of(module: ResNet) -> dict[str, Any]:
    """The architecture record of a `ResNet` module, as stored in the checkpoint metadata."""
    return {"family": ARCH_FAMILY, "stage_sizes": [int(s) for s in module.stage_sizes],
            "width": int(module.width)}


def module_for(architecture: Mapping[str, Any], dtype: Any = jnp.float32) -> ResNet:
    """The `ResNet` module an architecture record describes."""
    _validate_architecture(architecture)
    return ResNet(stage_sizes=tuple(architecture["stage_sizes"]), width=architecture["width"],
                  dtype=dtype)


def _validate_architecture(architecture: Any, where: str = "architecture") -> None:
    if not isinstance(architecture, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(architecture).__name__}")
    if architecture.get("family") != ARCH_FAMILY:
        raise ValueError(f"{where}: family {architecture.get('family')!r} is not {ARCH_FAMILY!r}")
    stages, width = architecture.get("stage_sizes"), architecture.get("width")
    if (not isinstance(stages, (list, tuple)) or not stages
            or not all(isinstance(s, int) and s > 0 for s in stages)):
        raise ValueError(f"{where}: stage_sizes must be a non-empty list of positive ints, "
                         f"got {stages!r}")
    if not isinstance(width, int) or width <= 0:
        raise ValueError(f"{where}: width must be a positive int, got {width!r}")


def check_architecture(metadata: Mapping[str, Any], module: ResNet, where: str = "checkpoint"
                       ) -> None:
    """Raises ValueError unless the checkpoint's architecture is the one `module` builds."""
    want = architecture_of(module)
    got = metadata.get("architecture")
    if got is None or {k: got.get(k) for k in want} != want:
        raise ValueError(
            f"{where}: checkpoint architecture {got!r} does not match the model "
            f"{want!r}; set model.stage_sizes/model.width to the checkpoint's, or convert "
            f"weights for this model")


@functools.lru_cache(maxsize=8)
def _expected_shapes_cached(stage_sizes: tuple[int, ...], width: int) -> tuple:
    module = ResNet(stage_sizes=stage_sizes, width=width)
    side = max(32, 2 ** (len(stage_sizes) + 2))  # every stage keeps >= 1 pixel
    abstract = jax.eval_shape(
        lambda: module.init(jax.random.key(0), jnp.zeros((1, side, side, 3)), train=False))
    flat = traverse_util.flatten_dict({c: abstract[c] for c in COLLECTIONS})
    return tuple(sorted((k, tuple(v.shape)) for k, v in flat.items()))


def expected_shapes(architecture: Mapping[str, Any]) -> Shapes:
    """{(collection, layer, name): shape} of every variable the architecture's ResNet has."""
    _validate_architecture(architecture)
    return dict(_expected_shapes_cached(tuple(architecture["stage_sizes"]),
                                        int(architecture["width"])))


# ---------------------------------------------------------------------------------------------
# Strict tree comparison and merging
# ---------------------------------------------------------------------------------------------

def _flat(tree: Any) -> dict[tuple[str, ...], Any]:
    if not isinstance(tree, Mapping):
        raise ValueError(f"expected a nested mapping of arrays, got {type(tree).__name__}")
    return traverse_util.flatten_dict(tree)


def _path(key: tuple[str, ...]) -> str:
    return "/".join(str(k) for k in key)


def tree_mismatches(expected: Shapes | Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Every missing, unexpected and mis-shaped leaf of `actual` against `expected`.

    `expected` is either a flat {key path: shape} dict or a nested tree whose leaves have a
    `.shape` (arrays, `jax.ShapeDtypeStruct`). Returns human-readable lines, empty when equal.
    """
    if expected and all(isinstance(k, tuple) for k in expected):
        want = {k: tuple(v) for k, v in expected.items()}
    else:
        want = {k: tuple(np.shape(v)) for k, v in _flat(expected).items()}
    got = {k: tuple(np.shape(v)) for k, v in _flat(actual).items()}
    problems = [f"missing {_path(k)} (expected shape {want[k]})" for k in sorted(want.keys() - got)]
    problems += [f"unexpected {_path(k)} (shape {got[k]})" for k in sorted(got.keys() - want)]
    problems += [f"mis-shaped {_path(k)}: shape {got[k]}, expected {want[k]}"
                 for k in sorted(want.keys() & got) if want[k] != got[k]]
    return problems


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise ValueError(f"{what}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


def merge_into(target: Mapping[str, Any], loaded: Mapping[str, Any], what: str = "backbone"
               ) -> dict[str, Any]:
    """Returns `target`'s tree with every leaf replaced by the loaded value (strictly).

    `target` is the subtree of the model's variables the checkpoint replaces, e.g.
    `{'params': params['backbone'], 'batch_stats': batch_stats['backbone']}`; its leaves may be
    arrays or `jax.ShapeDtypeStruct`s. Every key path must exist in both trees with the same
    shape, otherwise one ValueError lists all differences. Values come back as host numpy arrays
    in the target's dtype; the caller places them on devices with its own shardings.
    """
    _raise_if(tree_mismatches(target, loaded), f"cannot load {what}")
    flat_target, flat_loaded = _flat(target), _flat(loaded)
    merged = {k: np.asarray(flat_loaded[k], dtype=getattr(t, "dtype", np.float32))
              for k, t in flat_target.items()}
    return traverse_util.unflatten_dict(merged)


# ---------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------

def is_checkpoint(directory: PathLike) -> bool:
    """True if `directory` holds a converted checkpoint (its metadata.json names our format)."""
    meta = pathlib.Path(directory) / METADATA_FILE
    try:
        return json.loads(meta.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save(directory: PathLike, variables: Mapping[str, Any], metadata: Mapping[str, Any],
         overwrite: bool = False) -> pathlib.Path:
    """Writes a converted checkpoint atomically: to a temporary sibling, then a rename.

    A failure leaves nothing at `directory`. An existing `directory` is refused unless it is
    empty, or `overwrite` is set and it holds a converted checkpoint (a directory of anything
    else is never deleted).
    """
    directory = pathlib.Path(directory).absolute()
    check_output_dir(directory, overwrite)
    arch = metadata.get("architecture")
    _raise_if(tree_mismatches(expected_shapes(arch), variables), f"{directory}: variables")
    tree = {c: jax.tree.map(lambda x: np.asarray(x, np.float32), dict(variables[c]))
            for c in COLLECTIONS}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **metadata}
    if meta.get("preprocessing") not in preprocessing.MODES:
        raise ValueError(f"metadata: preprocessing {meta.get('preprocessing')!r} is not one of "
                         f"{preprocessing.MODES}")
    # check_output_dir allowed what exists there: nothing, an empty directory, or (with
    # overwrite) a converted checkpoint.
    return variables_io.write(directory, tree, meta, replace=True)


def check_output_dir(directory: PathLike, overwrite: bool) -> None:
    """Raises FileExistsError if writing a checkpoint to `directory` would destroy something."""
    directory = pathlib.Path(directory)
    if not directory.exists():
        return
    if not directory.is_dir():
        raise FileExistsError(f"output {directory} exists and is not a directory")
    if not any(directory.iterdir()):
        return
    if not is_checkpoint(directory):
        raise FileExistsError(f"output {directory} exists, is not empty and is not a converted "
                              "checkpoint; refusing to touch it (choose another --output)")
    if not overwrite:
        raise FileExistsError(f"output {directory} already holds a checkpoint; pass --overwrite "
                              "to replace it")


def read_metadata(directory: PathLike) -> dict[str, Any]:
    """The validated metadata.json of a converted checkpoint."""
    path = pathlib.Path(directory) / METADATA_FILE
    meta = variables_io.read_metadata(
        directory, "a converted checkpoint (make one with `python -m sourcematters_jax.convert_weights`)")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: 'format' is not {FORMAT!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r} is not supported (this code "
                         f"reads <= {FORMAT_VERSION}); update sourcematters_jax")
    for key in ("source", "preprocessing", "architecture"):
        if key not in meta:
            raise ValueError(f"{path}: missing field {key!r}")
    if meta["preprocessing"] not in preprocessing.MODES:
        raise ValueError(f"{path}: preprocessing {meta['preprocessing']!r} is not one of "
                         f"{preprocessing.MODES}")
    _validate_architecture(meta["architecture"], f"{path}: architecture")
    return meta


def load(directory: PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Loads a converted checkpoint: `(variables, metadata)`.

    `variables` is `{'params': ..., 'batch_stats': ...}` of float32 host numpy arrays, checked
    strictly against the ResNet of `metadata['architecture']`; `metadata` is the parsed
    metadata.json (source, preprocessing, input file and sha256, ...).
    """
    directory = pathlib.Path(directory).absolute()
    metadata = read_metadata(directory)
    restored = variables_io.read_variables(directory)
    variables = {c: restored.get(c, {}) for c in COLLECTIONS}
    extra = sorted(set(restored) - set(COLLECTIONS))
    problems = [f"unexpected collection {c!r}" for c in extra]
    problems += tree_mismatches(expected_shapes(metadata["architecture"]), variables)
    _raise_if(problems, f"{directory}: checkpoint does not match its architecture "
                        f"{metadata['architecture']}")
    return variables, metadata
