"""One on-disk format for a set of Flax variables: `DIR/variables/` (Orbax) + `DIR/metadata.json`.

Converted pretrained backbones (`pretrained.save`) and exported fine-tuned members
(`train.checkpoints.export_member`) both use it. Writing is atomic (`atomic_files.new_directory`):
everything goes to a temporary sibling directory that is renamed into place at the end, so a
failure never leaves a half-written directory that looks complete.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping

from sourcematters_jax import atomic_files

METADATA_FILE = "metadata.json"
VARIABLES_DIR = "variables"


def write(directory: str | os.PathLike, variables: Mapping[str, Any], metadata: Mapping[str, Any],
          *, replace: bool = False) -> pathlib.Path:
    """Writes `variables` (a pytree of arrays) and `metadata` (JSON-able) to `directory`.

    Args:
      replace: an existing `directory` is swapped out for the new one (the caller has checked it
        may be); otherwise an existing `directory` is an error.
    Returns the absolute directory.
    """
    import orbax.checkpoint as ocp  # deferred: only writing and reading need Orbax

    directory = pathlib.Path(directory).absolute()
    if directory.exists() and not replace:
        raise FileExistsError(f"{directory} exists; choose a new directory")
    with atomic_files.new_directory(directory, replace=replace) as tmp:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / VARIABLES_DIR, dict(variables))
            ckptr.wait_until_finished()
        (tmp / METADATA_FILE).write_text(json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n")
    return directory


def read_metadata(directory: str | os.PathLike, what: str) -> dict[str, Any]:
    """The parsed metadata.json of `directory`; `what` names the expected kind in errors."""
    path = pathlib.Path(directory) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {METADATA_FILE}; not {what}")
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable metadata ({e})") from e
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: metadata must be a JSON object")
    return metadata


def read_variables(directory: str | os.PathLike) -> dict[str, Any]:
    """The variables tree (host numpy arrays) of `directory`."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(directory).absolute() / VARIABLES_DIR
    if not path.is_dir():
        raise FileNotFoundError(f"{directory}: no {VARIABLES_DIR}/ (Orbax checkpoint) directory")
    with ocp.StandardCheckpointer() as ckptr:
        return dict(ckptr.restore(path))

