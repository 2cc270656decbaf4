"""The DICOM side of the LIDC-IDRI download: find the CT series, order their slices, read HU.

The download is a tree of series folders (`LIDC-IDRI-0078/<study>/<series>/*.dcm`, or TCIA's newer
descriptive folder names; the layout does not matter here): every folder holding `.dcm` files is
one series, identified by its SeriesInstanceUID, not by its path. Only headers are read while
indexing; pixels are read for the few slices that get cropped.

Slice order follows pylidc's `Scan.load_all_dicom_images`: sorted by ImagePositionPatient z; of
slices sharing a z, the one with the lower InstanceNumber is kept.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Iterator

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from sourcematters_jax.data.rawdata import DataError

DICOM_SUFFIX = ".dcm"
HEADER_TAGS = ["SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID", "Modality", "PatientID",
               "ImagePositionPatient", "InstanceNumber", "SliceThickness", "PixelSpacing"]


@dataclasses.dataclass(frozen=True)
class Series:
    """One CT series: its slices sorted by z (duplicates removed) and where each SOP UID lies."""
    directory: pathlib.Path
    series_uid: str
    patient_id: str
    files: tuple[pathlib.Path, ...]  # sorted by z
    z: np.ndarray  # [n] ImagePositionPatient z of `files`, increasing
    sop_z: dict[str, float]  # every SOPInstanceUID of the folder -> its z (duplicates included)
    slice_thickness: float
    pixel_spacing: float


def _header(path: pathlib.Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as e:
        raise DataError(f"unreadable DICOM file {path}: {e}") from e


def _field(ds: pydicom.Dataset, name: str, path: pathlib.Path):
    value = ds.get(name)
    if value is None or value == "":
        raise DataError(f"{path}: DICOM header has no {name}")
    return value


def series_folders(root: pathlib.Path) -> Iterator[tuple[pathlib.Path, list[pathlib.Path], list[pathlib.Path]]]:
    """(folder, its .dcm files, its .xml files) for every folder below `root`, in sorted order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        names = sorted(f for f in filenames if not f.startswith("."))
        folder = pathlib.Path(dirpath)
        dcm = [folder / f for f in names if f.lower().endswith(DICOM_SUFFIX)]
        xml = [folder / f for f in names if f.lower().endswith(".xml")]
        if dcm or xml:
            yield folder, dcm, xml


def identify(files: list[pathlib.Path]) -> tuple[str, str]:
    """(SeriesInstanceUID, Modality) of a folder, from its first file's header."""
    ds = _header(files[0])
    return str(_field(ds, "SeriesInstanceUID", files[0])).strip(), str(ds.get("Modality", "")).strip()


def read_series(directory: pathlib.Path, files: list[pathlib.Path]) -> Series:
    """Indexes one series folder (headers only). Every file must be a readable slice of one series."""
    rows = []
    series_uid = None
    for path in files:
        ds = _header(path)
        uid = str(_field(ds, "SeriesInstanceUID", path)).strip()
        if series_uid is None:
            series_uid, first = uid, ds
        elif uid != series_uid:
            raise DataError(f"{path}: SeriesInstanceUID {uid} differs from {series_uid} of the other "
                            f"files in {directory}")
        position = _field(ds, "ImagePositionPatient", path)
        rows.append((float(position[2]), int(ds.get("InstanceNumber") or 0),
                     str(_field(ds, "SOPInstanceUID", path)).strip(), path))
    sop_z = {sop: z for z, _, sop, _ in rows}
    kept: dict[float, tuple] = {}
    for row in sorted(rows, key=lambda r: (r[0], r[1])):
        kept.setdefault(row[0], row)  # lower InstanceNumber wins a shared z, as pylidc
    ordered = [kept[z] for z in sorted(kept)]
    z = np.asarray([r[0] for r in ordered])
    spacing = first.get("PixelSpacing")
    thickness = first.get("SliceThickness")
    if thickness in (None, "") or float(thickness) <= 0:
        thickness = float(np.median(np.diff(z))) if len(z) > 1 else 1.0
    return Series(directory=directory, series_uid=series_uid,
                  patient_id=str(first.get("PatientID", "")).strip() or directory.name,
                  files=tuple(r[3] for r in ordered), z=z, sop_z=sop_z,
                  slice_thickness=float(thickness),
                  pixel_spacing=float(spacing[0]) if spacing else float("nan"))


def slice_index(series: Series, sop_uid: str, z: float, *, where: str) -> int:
    """The index into `series.files` of an annotated slice: by SOP UID, else by its z.

    pylidc takes the slice nearest to the roi's imageZposition; the SOP UID is exact where the
    XML and the series agree, and the z is the fallback where a UID is not in the folder (it must
    then lie within half a slice of a slice).
    """
    if sop_uid in series.sop_z:
        z = series.sop_z[sop_uid]
    k = int(np.abs(series.z - z).argmin())
    if sop_uid not in series.sop_z and abs(series.z[k] - z) > series.slice_thickness / 2:
        raise DataError(f"{where}: slice {sop_uid} (z {z}) is not in series {series.series_uid} "
                        f"({series.directory}): nearest slice is at z {series.z[k]}")
    return k


def read_hu(path: pathlib.Path) -> np.ndarray:
    """One slice in Hounsfield units (pixel value x RescaleSlope + RescaleIntercept), float64."""
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError) as e:
        raise DataError(f"unreadable DICOM pixel data in {path}: {e}") from e
    if pixels.ndim != 2:
        raise DataError(f"{path}: expected a 2-D CT slice, got pixel data of shape {pixels.shape}")
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return pixels.astype(np.float64) * slope + intercept
