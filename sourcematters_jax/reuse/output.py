"""Write a command's files all-or-nothing: into a temporary sibling of OUT, then moved in."""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from typing import Callable


def write_into(out: str | pathlib.Path, write: Callable[[pathlib.Path], None]
               ) -> list[pathlib.Path]:
    """Call write(tmp_dir), then move what it wrote into `out` (created); returns the paths.

    A failure inside `write` leaves `out` untouched; files already in `out` with other names
    are kept, equal names are replaced.
    """
    out = pathlib.Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
