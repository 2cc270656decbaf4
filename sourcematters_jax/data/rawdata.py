"""Reading the user's raw files safely: CSV tables, image paths, grayscale images.

Everything that touches a user-supplied file goes through here, so that bad input fails early with
an error that names the file and the row (and, for a missing column, the columns found), before
any builder writes output.
"""

from __future__ import annotations

import os
import pathlib
import posixpath
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

DATA_ENTRY_NAMES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
DATA_ENTRY_COLUMNS = ("Image Index", "Finding Labels", "Patient ID", "Patient Gender", "View Position")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_LISTED = 20  # problems listed in one error message


class DataError(ValueError):
    """Bad or missing raw data; the message names the file (and row) at fault."""


def listing(items: Sequence[str]) -> str:
    shown = "\n  ".join(items[:MAX_LISTED])
    more = f"\n  ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"\n  {shown}{more}"


def check_relative_path(path: str, *, where: str) -> str:
    """A normalised relative POSIX path that stays inside its base directory, else DataError.

    `where` says where the path came from ("test.csv row 12"), for the error message.
    """
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise DataError(f"{where}: empty or invalid image path {path!r}")
    p = path.replace("\\", "/")
    norm = posixpath.normpath(p)
    if p.startswith("/") or (len(p) > 1 and p[1] == ":") or norm == ".." or norm.startswith("../"):
        raise DataError(f"{where}: image path {path!r} escapes the data directory")
    return norm


def read_table(
    path: str | os.PathLike,
    required: Sequence[str],
    *,
    allowed: Mapping[str, Iterable[str]] | None = None,
    integer: Sequence[str] = (),
    index_col: int | None = None,
) -> pd.DataFrame:
    """Reads a CSV, checking columns and values; errors name the file, the row and the column.

    Args:
      path: the CSV file.
      required: columns that must be present.
      allowed: column -> the values it may take (as strings).
      integer: columns that must hold integers (converted to int64).
      index_col: as pandas (0 for the study's CSVs, whose first column is an unnamed index).
    Rows are reported as 1-based data rows (the header is row 0), as a spreadsheet shows them
    minus one.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        df = pd.read_csv(path, index_col=index_col, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{path}: not a readable CSV table ({e})") from e
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    df = df.reset_index(drop=index_col is not None)
    for column, values in (allowed or {}).items():
        values = set(values)
        bad = [i for i, v in enumerate(df[column]) if v.strip() not in values]
        if bad:
            i = bad[0]
            raise DataError(f"{path}: row {i + 1}: unknown {column} {df[column][i]!r} "
                            f"(expected one of {sorted(values)}; {len(bad)} bad row(s))")
        df[column] = df[column].str.strip()
    for column in integer:
        converted = pd.to_numeric(df[column].str.strip(), errors="coerce")
        bad = np.flatnonzero(converted.isna().to_numpy() | (converted % 1 != 0).to_numpy())
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{path}: row {i + 1}: column {column!r} must be an integer, "
                            f"got {df[column][i]!r}")
        df[column] = converted.astype(np.int64)
    return df


def find_data_entry(manual_dir: str | os.PathLike) -> pathlib.Path:
    """The NIH metadata table in `manual_dir` (Data_Entry_2017.csv or its _v2020 version)."""
    for name in DATA_ENTRY_NAMES:
        if (pathlib.Path(manual_dir) / name).is_file():
            return pathlib.Path(manual_dir) / name
    raise DataError(f"{manual_dir}: missing the NIH metadata table (one of {list(DATA_ENTRY_NAMES)})")


def read_data_entry(path: str | os.PathLike) -> pd.DataFrame:
    """NIH `Data_Entry_2017.csv`: checked columns, integer patient ids, sex M/F, path checked."""
    df = read_table(path, DATA_ENTRY_COLUMNS, allowed={"Patient Gender": ("M", "F")},
                    integer=("Patient ID",))
    for i, name in enumerate(df["Image Index"]):
        check_relative_path(name, where=f"{path}: row {i + 1}")
    return df


class ImageLocator:
    """Finds image files under a root directory by their CSV path.

    A CSV path with directories is taken relative to the root. A bare file name is looked up in
    the root, in `images/`, and in NIH's `images_001/images/` .. `images_012/images/` folders
    (the layout of the NIH download), then anywhere below the root.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise DataError(f"data directory does not exist: {self.root}")
        self._index: dict[str, pathlib.Path] | None = None
        self._dirs = [self.root, self.root / "images"] + sorted(self.root.glob("images_*/images"))

    def _walk(self) -> dict[str, pathlib.Path]:
        if self._index is None:
            index = {}
            for dirpath, _, files in os.walk(self.root):
                for f in files:
                    if f.lower().endswith(IMAGE_SUFFIXES):
                        index.setdefault(f, pathlib.Path(dirpath) / f)
            self._index = index
        return self._index

    def find(self, path: str, *, where: str) -> pathlib.Path | None:
        rel = check_relative_path(path, where=where)
        if "/" in rel:
            candidate = self.root / rel
            return candidate if candidate.is_file() else None
        for d in self._dirs:
            if (d / rel).is_file():
                return d / rel
        return self._walk().get(rel)

    def find_all(self, paths: Sequence[str], wheres: Sequence[str]) -> list[pathlib.Path]:
        """All files, or one DataError listing every missing image with its CSV row."""
        found, missing = [], []
        for path, where in zip(paths, wheres):
            f = self.find(path, where=where)
            if f is None:
                missing.append(f"{path} ({where})")
            found.append(f)
        if missing:
            raise DataError(f"{len(missing)} image(s) not found under {self.root}:{listing(missing)}")
        return found


def load_grayscale(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 [H, W] grayscale (8-bit L, RGB(A) via PIL's luma, 16-bit >> 8)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.int64)
                return np.clip(arr >> 8 if arr.max() > 255 else arr, 0, 255).astype(np.uint8)
            if im.mode != "L":
                im = im.convert("L")
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"unreadable image {path}: {e}") from e
