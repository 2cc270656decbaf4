"""One export: a backbone checkpoint or a fine-tuned member -> a Keras .h5 weight file.

The inverse of `convert`: `convert(export(DIR))` gives back DIR's variables exactly, and Keras
loads the file into `keras.applications.ResNet50(weights=None, include_top=False,
pooling='avg')` (or the same topology at another width/depth) with `model.load_weights(FILE)`.
With `include_head`, a member's Dense(2) head is written as keras.applications' `predictions`
layer, and the file loads into `ResNet50(weights=None, include_top=True, classes=2)` (the
study's Dropout has no weights; Keras' softmax is the study's). `convert` reads only backbones
and refuses such a file, as it refuses every file with a classifier.

Order of work, so that a refusal leaves nothing: check the output path, read and check the
input (every refusal happens here), write to a temporary sibling, optionally load that file
with Keras and compare features, and only then rename it into place.
"""

from __future__ import annotations

import pathlib
from typing import Any

import h5py

from sourcematters_jax.convert_weights.errors import ConversionError
from sourcematters_jax.convert_weights.export_h5 import flax_to_keras, update_export_metadata, write_keras_h5
from sourcematters_jax.convert_weights.export_sources import load_source
from sourcematters_jax import __version__, atomic_files


def check_output(output: pathlib.Path, overwrite: bool) -> None:
    """Raises ConversionError if `output` is not a writable legacy-Keras .h5 path."""
    name = output.name.lower()
    if name.endswith(".weights.h5"):
        raise ConversionError(f"--output {output}: Keras reads a '.weights.h5' file as its own "
                              "Keras 3 format; name the legacy .h5 file e.g. "
                              f"{output.name[:-len('.weights.h5')]}.h5")
    if not name.endswith((".h5", ".hdf5")):
        raise ConversionError(f"--output {output}: end the name in .h5 (Keras picks the legacy "
                              "loader by that suffix)")
    if output.is_dir():
        raise ConversionError(f"--output {output} is a directory; give a file name")
    if output.exists():
        if not overwrite:
            raise ConversionError(f"--output {output} exists; pass --overwrite to replace it")
        if not h5py.is_hdf5(output):
            raise ConversionError(f"--output {output} exists and is not an HDF5 file; refusing "
                                  "to replace it (choose another --output)")


def export(input_dir: str | pathlib.Path, output: str | pathlib.Path, *,
           member: str | None = None, include_head: bool = False, overwrite: bool = False,
           verify: bool = False, verify_image_size: int = 64, verify_tolerance: float = 1e-4
           ) -> dict[str, Any]:
    """Exports the weights at `input_dir` to the Keras file `output`; returns its record.

    Args:
      input_dir: a converted checkpoint, a training workdir (with `member`) or an exported
        member (see `export_sources`).
      member: member_id or sweep member_index, for a training workdir.
      include_head: also write a member's Dense head as the `predictions` layer.
      overwrite: replace an existing HDF5 file at `output`.
      verify: load the written file with Keras (needs keras) and compare its outputs with the
        Flax model's on a random input of `verify_image_size` pixels, preprocessed as the
        source expects; above `verify_tolerance` (max abs) nothing is written.
    Raises:
      ConversionError: on any bad input or output; nothing is written then.
    """
    input_dir, output = pathlib.Path(input_dir), pathlib.Path(output).absolute()
    if verify and verify_image_size < 32:
        raise ConversionError(f"--verify-image-size {verify_image_size}: Keras needs >= 32")
    check_output(output, overwrite)
    source = load_source(input_dir, member)
    if include_head and source.head is None:
        raise ConversionError(f"--include-head: {input_dir} is a backbone checkpoint and has no "
                              "classifier head")
    head = source.head if include_head else None
    layers = flax_to_keras(source.architecture["stage_sizes"], source.backbone, head)
    record = {**source.record, "architecture": source.architecture,
              "include_head": include_head,
              "exporter": f"sourcematters_jax.convert_weights.export (sourcematters_jax {__version__})"}
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_files.replacing(output, suffix=".h5") as tmp:  # Keras reads the format from .h5
        write_keras_h5(tmp, layers, record)
        if verify:
            try:
                from sourcematters_jax.convert_weights import export_verify  # deferred: imports keras
            except ImportError as e:
                raise ConversionError(f"--verify needs keras ({e}); install the 'parity' extra: "
                                      "pip install 'sourcematters-jax[parity]'") from None
            diff = export_verify.verify(tmp, source, head, image_size=verify_image_size)
            record["verified_with_keras"] = {"image_size": verify_image_size,
                                             "max_abs_diff": diff, "tolerance": verify_tolerance}
            if not diff <= verify_tolerance:
                raise ConversionError(f"{output}: Keras' outputs differ from the Flax model's by "
                                      f"{diff:.3g} (max abs, tolerance {verify_tolerance:g}); "
                                      "not written")
            update_export_metadata(tmp, record)
    return record
