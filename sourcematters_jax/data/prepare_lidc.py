"""`sourcematters prepare-lidc`: the LIDC-IDRI download -> the nodule crops `lidc_nodules` reads.

    sourcematters prepare-lidc --lidc_root /data/LIDC-IDRI --out /data/lidc_crops [--size 64]

Reads every CT series of the download and its radiologists' annotation XML (`lidc_xml`), groups
the annotations of each series into nodules with pylidc's rule (`lidc_cluster`), keeps the nodules
marked by at least `--min_readers` radiologists, and for each writes the axial slice through the
consensus centre, cropped to `--size` px around it, as Hounsfield units (`crops/*.npy`, int16),
plus `nodules.csv` (path, patient_id, malignancy = median_high of the ratings, and provenance
columns the builder ignores). Nodules rated 3 are written too; `lidc_nodules` drops them.

Everything is checked before any pixel is read: an XML whose series is not in the download, a CT
series without an XML, an unreadable DICOM or XML file are errors naming the file. The output is
written into a temporary sibling directory and renamed to `--out` only when complete, so a failure
leaves nothing that looks like a prepared dataset. docs/datasets.md explains the choices.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import sys
import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from sourcematters_jax import atomic_files
from sourcematters_jax.data import lidc, lidc_cluster, lidc_dicom, lidc_xml
from sourcematters_jax.data.rawdata import DataError, listing

DEFAULT_SIZE = 64
DEFAULT_MIN_READERS = 3
AIR_HU = -1000  # the value outside the scanned field when a crop reaches past the image


@dataclasses.dataclass
class Job:
    """One annotated CT series: its folder and files, and the XML files that annotate it."""
    directory: pathlib.Path
    files: list[pathlib.Path]
    messages: list[lidc_xml.ReadMessage]


def index_download(root: pathlib.Path) -> list[Job]:
    """Pairs every CT series under `root` with its annotation XML; headers and XML only.

    Raises:
      DataError: `root` is not a directory or holds no CT series; an XML names a series that is
        not in the download; a CT series has no XML; a file is unreadable. Problems of the first
        two kinds are listed all at once.
    """
    if not root.is_dir():
        raise DataError(f"--lidc_root {root} is not a directory")
    series: dict[str, tuple[pathlib.Path, list[pathlib.Path]]] = {}
    messages: list[lidc_xml.ReadMessage] = []
    for folder, dcm, xml in lidc_dicom.series_folders(root):
        messages += [m for m in map(lidc_xml.read_message, xml) if m is not None]
        if not dcm:
            continue
        uid, modality = lidc_dicom.identify(dcm)
        if modality and modality != "CT":  # the collection's chest radiographs (CR, DX)
            continue
        if uid in series:
            raise DataError(f"series {uid} is in two folders: {series[uid][0]} and {folder}")
        series[uid] = (folder, dcm)
    if not series:
        raise DataError(f"no CT series (folders of {lidc_dicom.DICOM_SUFFIX} files) under {root}")
    by_series: dict[str, list[lidc_xml.ReadMessage]] = {}
    problems = []
    for m in messages:
        if m.series_uid not in series:
            problems.append(f"{m.path}: annotates series {m.series_uid}, which is not under {root}")
        by_series.setdefault(m.series_uid, []).append(m)
    for uid, (folder, dcm) in series.items():
        if uid not in by_series:
            problems.append(f"{folder}: CT series {uid} ({dcm[0].name} ...) has no annotation XML")
    if problems:
        raise DataError(f"{len(problems)} problem(s) pairing series and annotations:" + listing(problems))
    return [Job(folder, dcm, by_series[uid]) for uid, (folder, dcm) in sorted(
        series.items(), key=lambda item: str(item[1][0]))]


def markings(series: lidc_dicom.Series, messages: Sequence[lidc_xml.ReadMessage]) -> list[lidc_cluster.Marking]:
    """The rated annotations as (row, column, slice index) point matrices of this series."""
    out = []
    for message in messages:
        for a in message.annotations:
            points = []
            for roi in a.rois:
                k = lidc_dicom.slice_index(series, roi.sop_uid, roi.z, where=a.source)
                points.append(np.c_[roi.points[:, 1], roi.points[:, 0], np.full(len(roi.points), k)])
            out.append(lidc_cluster.Marking(np.concatenate(points), a.malignancy, a.source))
    return out


def crop(image: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    """The `size` x `size` window whose centre pixel (size // 2, size // 2) is (row, col); air outside."""
    half = size // 2
    padded = np.pad(image, size, constant_values=AIR_HU)
    top, left = row - half + size, col - half + size
    return padded[top:top + size, left:left + size]


def patient_of(series: lidc_dicom.Series, directory: pathlib.Path) -> str:
    """'LIDC-IDRI-NNNN': the DICOM PatientID, else the nearest folder so named, else an error."""
    for name in (series.patient_id, *reversed(directory.parts)):
        if re.fullmatch(r"LIDC-IDRI-\d{4}", name):
            return name
    raise DataError(f"{series.files[0]}: PatientID {series.patient_id!r} is not LIDC-IDRI-NNNN and no "
                    f"folder above it is so named")


def prepare_series(job: Job, out: pathlib.Path, size: int, min_readers: int) -> tuple[list[dict], int]:
    """Writes the crops of one series into out/crops; returns their table rows and the nodule count."""
    series = lidc_dicom.read_series(job.directory, job.files)
    nodules = lidc_cluster.cluster(markings(series, job.messages), series.slice_thickness)
    patient = patient_of(series, job.directory)
    rows, slices = [], {}
    for n, nodule in enumerate(nodules):
        if len(nodule.markings) < min_readers:
            continue
        r, c, k = nodule.centre
        if k not in slices:
            slices[k] = lidc_dicom.read_hu(series.files[k])
        hu = np.clip(np.rint(crop(slices[k], r, c, size)), -32768, 32767).astype(np.int16)
        name = f"crops/{patient}_s{series.series_uid[-6:]}_n{n}.npy"
        np.save(out / name, hu)
        rows.append(dict(path=name, patient_id=patient, malignancy=nodule.malignancy,
                         n_readers=len(nodule.markings), ratings=";".join(map(str, nodule.ratings)),
                         series_uid=series.series_uid, slice_file=series.files[k].name,
                         slice_index=k, row=r, col=c, z_mm=float(series.z[k]),
                         pixel_spacing_mm=series.pixel_spacing))
    return rows, len(nodules)


def prepare(lidc_root: str | os.PathLike, out: str | os.PathLike, *, size: int = DEFAULT_SIZE,
            min_readers: int = DEFAULT_MIN_READERS,
            progress: Callable[[str], None] = print) -> pd.DataFrame:
    """Writes `out`/nodules.csv and `out`/crops/ from the download at `lidc_root`; returns the table.

    Raises:
      DataError: bad input (see `index_download`, and a slice an annotation names that is not in
        its series), or no nodule marked by `min_readers` radiologists.
      FileExistsError: `out` exists.
    """
    if size < 8:
        raise ValueError(f"--size must be at least 8 px, got {size}")
    if not 1 <= min_readers <= lidc_cluster.MAX_READERS:
        raise ValueError(f"--min_readers must be 1..{lidc_cluster.MAX_READERS}, got {min_readers}")
    root, out = pathlib.Path(lidc_root), pathlib.Path(out).absolute()
    if out.exists():
        raise FileExistsError(f"--out {out} exists; remove it or choose a new directory")
    jobs = index_download(root)
    progress(f"prepare-lidc: {len(jobs)} annotated CT series under {root}")
    with atomic_files.new_directory(out) as tmp:
        (tmp / "crops").mkdir()
        rows, start = [], time.monotonic()
        for i, job in enumerate(jobs):
            new, n_nodules = prepare_series(job, tmp, size, min_readers)
            rows += new
            progress(f"[{i + 1}/{len(jobs)}] {job.directory.relative_to(root).parts[0]} series "
                     f"...{job.messages[0].series_uid[-12:]}: {n_nodules} nodule(s), {len(new)} marked by "
                     f">= {min_readers} readers ({time.monotonic() - start:.0f} s)")
        if not rows:
            raise DataError(f"{root}: no nodule is marked by at least {min_readers} radiologists")
        table = pd.DataFrame(rows)
        table.to_csv(tmp / lidc.TABLE, index=False)
    counts = table["malignancy"].map(lambda m: "benign" if m < 3 else "malignant" if m > 3 else "rated 3")
    progress(f"wrote {len(table)} crops to {out}: " + ", ".join(
        f"{n} {k}" for k, n in counts.value_counts().sort_index().items()))
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sourcematters prepare-lidc", description=__doc__.split("\n\n")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Then: sourcematters train --config=configs/ct_noise.py --config.manual_dir=OUT ...")
    parser.add_argument("--lidc_root", required=True, type=pathlib.Path,
                        help="the LIDC-IDRI download: a folder tree holding the CT series (.dcm) and "
                             "their annotation XML files, in any layout")
    parser.add_argument("--out", required=True, type=pathlib.Path,
                        help="the manual_dir to create for lidc_nodules (must not exist yet): "
                             "nodules.csv and crops/")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help=f"side of the square crops in pixels of the CT slice (default {DEFAULT_SIZE}, "
                             "about 45 mm at LIDC's typical 0.7 mm pixels)")
    parser.add_argument("--min_readers", type=int, default=DEFAULT_MIN_READERS,
                        help="keep nodules marked by at least this many of the 4 radiologists "
                             f"(default {DEFAULT_MIN_READERS}, the common recipe; 1 keeps every nodule)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        prepare(args.lidc_root, args.out, size=args.size, min_readers=args.min_readers,
                progress=lambda text: print(text, flush=True))
    except (DataError, FileExistsError, ValueError) as e:
        print(f"prepare-lidc: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
