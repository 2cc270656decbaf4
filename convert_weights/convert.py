"""One conversion: Keras .h5 -> converted checkpoint directory (Orbax variables + metadata.json).

Order of work, so that a refusal leaves nothing behind: check the output directory, read and
map the file (every refusal happens here), optionally verify against Keras, and only then write
to a temporary sibling directory that is renamed into place (`pretrained.save`).
"""

from __future__ import annotations

import hashlib
import pathlib
import re
from typing import Any

from sourcematters_jax.convert_weights.errors import ConversionError
from sourcematters_jax.convert_weights.h5_reader import read_keras_weights
from sourcematters_jax.convert_weights.resnet_mapping import keras_to_flax
from sourcematters_jax import __version__, preprocessing, pretrained

_SOURCE_RE = re.compile(r"[a-z0-9][a-z0-9_]*")
# File names of the study's two weight files -> source (used when --source is not given).
_KNOWN_FILES = (("radimagenet", "radimagenet"),
                ("resnet50_weights_tf_dim_ordering_tf_kernels", "imagenet"))


def sha256_of(path: str | pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_input(input_path: pathlib.Path) -> None:
    """ConversionError naming the input if it is missing, a directory or unreadable."""
    if not input_path.exists():
        missing = next((p for p in reversed(input_path.parents) if not p.exists()), None)
        where = f" (directory {missing} does not exist)" if missing else ""
        raise ConversionError(f"--input {input_path}: no such file{where}")
    if input_path.is_dir():
        raise ConversionError(f"--input {input_path} is a directory; pass the .h5 weight file")
    try:
        open(input_path, "rb").close()
    except OSError as e:
        raise ConversionError(f"--input {input_path}: cannot be read ({e.strerror})") from None


def resolve_source(input_path: pathlib.Path, source: str | None,
                   preprocessing_mode: str | None) -> tuple[str, str]:
    """(source, preprocessing): the given source, or one known from the file name; the given
    preprocessing, or the one the source was trained with."""
    if source is None:
        lowered = input_path.name.lower()
        source = next((s for pattern, s in _KNOWN_FILES if pattern in lowered), None)
        if source is None:
            raise ConversionError(f"{input_path}: cannot tell the source from the file name; "
                                  "pass --source NAME (e.g. imagenet, radimagenet)")
    if not _SOURCE_RE.fullmatch(source):
        raise ConversionError(f"--source {source!r}: use lower-case letters, digits and '_' "
                              "(it becomes part of member ids)")
    if source == pretrained.RANDOM_SOURCE:
        raise ConversionError("--source random needs no conversion: it is the model's own "
                              "Keras-default initialisation")
    if preprocessing_mode is None:
        preprocessing_mode = pretrained.SOURCE_PREPROCESSING.get(source)
        if preprocessing_mode is None:
            modes = ",".join(preprocessing.MODES)
            raise ConversionError(f"--source {source!r}: unknown source, so its preprocessing "
                                  f"is unknown; pass --preprocessing {{{modes}}}")
    if preprocessing_mode not in preprocessing.MODES:
        raise ConversionError(f"--preprocessing {preprocessing_mode!r}: expected one of "
                              f"{preprocessing.MODES}")
    return source, preprocessing_mode


def convert(input_path: str | pathlib.Path, output: str | pathlib.Path, *,
            source: str | None = None, preprocessing_mode: str | None = None,
            overwrite: bool = False, verify: bool = False, verify_image_size: int = 64,
            verify_tolerance: float = 1e-4) -> dict[str, Any]:
    """Converts a Keras ResNet v1 weight file; returns the metadata written.

    Args:
      input_path: a Keras .h5 weight file (see `h5_reader` for the layouts).
      output: directory to create; refused if it holds anything but (with `overwrite`) a
        previous conversion.
      source: source name recorded in the metadata; guessed from the study's file names.
      preprocessing_mode: a `preprocessing.MODES` entry; defaults to the source's.
      verify: also load the file with Keras' own loader (needs keras) and compare features on
        a random input of `verify_image_size` pixels; fail above `verify_tolerance`.
    Raises:
      ConversionError: on any bad input or output; nothing is written then.
    """
    input_path, output = pathlib.Path(input_path), pathlib.Path(output)
    if verify and verify_image_size < 32:
        raise ConversionError(f"--verify-image-size {verify_image_size}: Keras needs >= 32")
    try:
        pretrained.check_output_dir(output, overwrite)
    except FileExistsError as e:
        raise ConversionError(str(e)) from None
    # The file first: a missing, unreadable or corrupt input is named before the source is
    # guessed from its name (a wrong path would otherwise read as "cannot tell the source").
    check_input(input_path)
    weights = read_keras_weights(input_path)
    source, preprocessing_mode = resolve_source(input_path, source, preprocessing_mode)
    architecture, variables = keras_to_flax(weights, str(input_path))
    metadata: dict[str, Any] = {
        "source": source,
        "preprocessing": preprocessing_mode,
        "architecture": architecture,
        "num_features": pretrained.module_for(architecture).num_features,
        "input_file": input_path.name,
        "input_sha256": sha256_of(input_path),
        "input_layout": weights.layout,
        "input_keras_version": weights.keras_version,
        "converter": f"convert_weights (sourcematters_jax {__version__})",
    }
    if verify:
        try:
            from sourcematters_jax.convert_weights import keras_parity  # deferred: imports keras
        except ImportError as e:
            raise ConversionError(f"--verify needs keras ({e}); install the 'parity' extra: "
                                  "pip install 'sourcematters-jax[parity]'") from None
        diff = keras_parity.verify(input_path, weights, architecture, variables,
                                   image_size=verify_image_size)
        metadata["verified_with_keras"] = {"image_size": verify_image_size,
                                           "max_abs_diff": diff, "tolerance": verify_tolerance}
        if not diff <= verify_tolerance:
            raise ConversionError(f"{input_path}: features differ from Keras' by {diff:.3g} "
                                  f"(max abs, tolerance {verify_tolerance:g}); not written")
    try:
        pretrained.save(output, variables, metadata, overwrite=overwrite)
    except (FileExistsError, ValueError) as e:
        raise ConversionError(str(e)) from None
    return metadata
