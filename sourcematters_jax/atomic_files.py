"""Small files written atomically: a temporary sibling, then `os.replace`.

A reader (another process, a rerun after a kill) sees the old file or the new one, never half of
one. Used for the workdirs' JSON records (config.json, program.json, the pretraining identity) and
the planner's step-memory cache.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any


def write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Write `obj` as indented, key-sorted JSON to `path` atomically; returns the path."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path
