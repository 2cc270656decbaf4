"""Every output written all-or-nothing: files, whole directories, and files merged into a folder.

A reader (another process, a rerun after a kill, a user looking at the disk) sees the old output
or the complete new one, never half of one. Everything is first written to a temporary sibling of
the target (same directory, so the final rename stays on one file system and is atomic), renamed
into place when the writing succeeded, and removed when it failed. Temporaries are named
`.<target name>.tmp-<random>` (hidden; `ls` does not show a leftover of a killed process).

- `replacing(path)`: a temporary file path for any writer (h5py, pandas, `Path.write_text`), put
  onto `path` with `os.replace`; `write_bytes`, `write_text`, `write_json` and `write_csv` on top.
  Used for the workdirs' records (config.json, program.json, results.csv, predictions.csv), the
  pretraining identity, the planner's step-memory cache, the sweep manifest, exported Keras files.
- `new_directory(path)`: a temporary sibling directory that becomes `path` (an existing `path` is
  refused unless `replace=True`). Used for Orbax variable sets (`variables_io`), the synthetic
  download and the prepared LIDC crops.
- `write_into(out, write)`: a command's files written into a temporary directory, then moved into
  an existing or new `out` (other files there are kept). Used by `report`, `saliency`, `features`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import shutil
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:  # pandas is imported by the callers that have a frame; not needed here
    import pandas as pd


def _sibling(path: pathlib.Path, suffix: str = "") -> pathlib.Path:
    """A fresh hidden name next to `path` (nothing is created)."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}")


@contextlib.contextmanager
def replacing(path: str | os.PathLike, *, suffix: str = "") -> Iterator[pathlib.Path]:
    """Yields a temporary file path next to `path`; the caller writes the whole file there.

    When the block ends without an exception, the file is renamed onto `path` (replacing an
    existing file atomically); when it raises, the temporary is removed and `path` is untouched.
    The parent directory must exist. `suffix` ends the temporary name, for writers that read the
    format from it (e.g. ".h5").
    """
    path = pathlib.Path(path)
    tmp = _sibling(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write `data` to `path` atomically; returns the path."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return pathlib.Path(path)


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Write `obj` as indented, key-sorted JSON to `path` atomically; returns the path."""
    return write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> pathlib.Path:
    """Write `frame` as CSV (no index column) to `path` atomically; returns the path."""
    with replacing(path) as tmp:
        frame.to_csv(tmp, index=False)
    return pathlib.Path(path)


@contextlib.contextmanager
def _temporary_directory(path: pathlib.Path) -> Iterator[pathlib.Path]:
    """An empty temporary sibling directory of `path` (parents created), removed at the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def new_directory(path: str | os.PathLike, *, replace: bool = False) -> Iterator[pathlib.Path]:
    """Yields an empty temporary sibling directory that becomes `path` when the block succeeds.

    When the block raises, the temporary directory is removed and `path` is untouched.

    Args:
      replace: an existing `path` is swapped out for the new directory (moved aside, then
        removed once the new one is in place; put back if the rename fails). The caller has
        checked that it may be.
    Raises:
      FileExistsError: `path` exists (checked before the block runs) and `replace` is False, or
        another writer created `path` while the block ran (the new directory is then discarded).
    """
    path = pathlib.Path(path).absolute()
    if path.exists() and not replace:
        raise FileExistsError(f"{path} exists; remove it or choose a new directory")
    with _temporary_directory(path) as tmp:
        yield tmp
        if replace:
            _swap_in(tmp, path)
        else:
            _rename_new(tmp, path)


def _rename_new(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Renames `tmp` to `path`, refusing a `path` that appeared meanwhile."""
    appeared = FileExistsError(f"{path} was created by another writer while this one wrote it; "
                               "remove it or choose a new directory")
    if path.exists():  # os.rename would silently replace an empty directory
        raise appeared
    try:
        os.rename(tmp, path)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
            raise appeared from e
        raise


def _swap_in(new: pathlib.Path, directory: pathlib.Path) -> None:
    """Renames `new` to `directory`, moving an existing one aside first (removed after)."""
    old = None
    if directory.exists():
        old = _sibling(directory)
        os.replace(directory, old)
    try:
        os.replace(new, directory)
    except OSError:
        if old is not None:
            os.replace(old, directory)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_into(out: str | os.PathLike, write: Callable[[pathlib.Path], None]) -> list[pathlib.Path]:
    """Call `write(tmp_dir)`, then move what it wrote into `out` (created); returns the paths.

    A failure inside `write` leaves `out` untouched (not even created); files already in `out`
    with other names are kept, equal names are replaced (a directory by a directory).
    """
    out = pathlib.Path(out).absolute()
    with _temporary_directory(out) as tmp:
        write(tmp)
        out.mkdir(exist_ok=True)
        written = []
        for path in sorted(tmp.iterdir()):
            dest = out / path.name
            if dest.is_dir() and path.is_dir():
                shutil.rmtree(dest)
            path.replace(dest)
            written.append(dest)
        return written
