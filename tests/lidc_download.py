"""A small LIDC-IDRI download for tests: real annotation XML (tests/data/lidc) + synthesised DICOM.

The XML files are real LIDC annotations (scripts/lidc_test_fixtures.py says where from). Each
patient's CT series is synthesised with pydicom at the scan's real geometry (tests/data/lidc/
geometry.json: slice z positions, slice thickness, pixel spacing, 512 x 512 slices) over the
slices the annotations touch, laid out as the classic download:

    ROOT/LIDC-IDRI-0966/<StudyInstanceUID>/<SeriesInstanceUID>/000001.dcm ... + 069.xml

The image: air outside a body ellipse of soft tissue (40 HU) holding two lungs (-850 HU); every
annotated outline is filled with NODULE_HU on its slice (ImageDraw, from the XML read here with
ElementTree, independently of the reader under test), so a crop centred where the radiologists
marked a nodule has nodule tissue at its centre. Patients take turns with different stored
representations (RescaleSlope / RescaleIntercept, signed or unsigned pixels) that all decode to
the same HU. One patient also gets a chest radiograph series (Modality CR) with its X-ray read
XML, as some LIDC patients have, which the preparation must skip.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import xml.etree.ElementTree as ET

import numpy as np
import pydicom
from PIL import Image, ImageDraw
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ComputedRadiographyImageStorage, ExplicitVRLittleEndian

FIXTURES = pathlib.Path(__file__).resolve().parent / "data" / "lidc"
GEOMETRY = json.loads((FIXTURES / "geometry.json").read_text())
PATIENTS = tuple(GEOMETRY)
SIDE = 512
NODULE_HU, BODY_HU, LUNG_HU, AIR_HU = 60, 40, -850, -1000
# (RescaleSlope, RescaleIntercept, PixelRepresentation) in turn per patient
ENCODINGS = ((1.0, -1024.0, 0), (1.0, 0.0, 1), (2.0, -2048.0, 1))
NS = "{http://www.nih.gov}"


def uid(*parts: str) -> str:
    """A deterministic UID under 2.25 (as scripts/lidc_test_fixtures.py makes them)."""
    return "2.25." + str(int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:32], 16))


def outlines(xml_path: pathlib.Path) -> dict[str, list[tuple[bool, list[tuple[int, int]]]]]:
    """SOP UID -> [(inclusion, [(x, y), ...])] of every rated nodule outline in the file."""
    out: dict[str, list] = {}
    for nodule in ET.parse(xml_path).getroot().iter(f"{NS}unblindedReadNodule"):
        if nodule.find(f"{NS}characteristics") is None:
            continue
        for roi in nodule.iter(f"{NS}roi"):
            xy = [(int(e.find(f"{NS}xCoord").text), int(e.find(f"{NS}yCoord").text))
                  for e in roi.iter(f"{NS}edgeMap")]
            out.setdefault(roi.find(f"{NS}imageSOP_UID").text.strip(), []).append(
                (roi.find(f"{NS}inclusion").text.strip() == "TRUE", xy))
    return out


def phantom(marks: list[tuple[bool, list[tuple[int, int]]]]) -> np.ndarray:
    """One axial slice in HU: body, lungs, and the nodule outlines filled (holes cut back out)."""
    canvas = Image.new("F", (SIDE, SIDE), AIR_HU)
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((20, 60, SIDE - 20, SIDE - 60), fill=BODY_HU)
    draw.ellipse((50, 100, 245, 420), fill=LUNG_HU)
    draw.ellipse((267, 100, 462, 420), fill=LUNG_HU)
    for inclusion, xy in sorted(marks, key=lambda m: not m[0]):  # outlines first, then holes
        draw.polygon(xy if len(xy) > 2 else xy * 3, fill=NODULE_HU if inclusion else LUNG_HU)
    return np.asarray(canvas, np.float64)


def _dataset(sop: str, sop_class: str, modality: str) -> pydicom.Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, sop, modality
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    return ds


def write_ct_slice(path: pathlib.Path, hu: np.ndarray, *, patient: str, geometry: dict, z: float,
                   sop: str, number: int, encoding: tuple[float, float, int]) -> None:
    slope, intercept, signed = encoding
    ds = _dataset(sop, CTImageStorage, "CT")
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, geometry["study_uid"], geometry["series_uid"]
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [-175.0, -175.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [geometry["pixel_spacing"]] * 2
    ds.SliceThickness = geometry["slice_thickness"]
    ds.Rows = ds.Columns = SIDE
    ds.PixelRepresentation = signed
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    stored = np.rint((hu - intercept) / slope).astype(np.int16 if signed else np.uint16)
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_patient(root: pathlib.Path, patient: str, *, encoding=ENCODINGS[0]) -> pathlib.Path:
    """Writes one patient's CT series and its XML; returns the series folder."""
    g = GEOMETRY[patient]
    folder = root / patient / g["study_uid"] / g["series_uid"]
    folder.mkdir(parents=True)
    xml = FIXTURES / f"{patient}.xml"
    marks = outlines(xml)
    for i, (z, sop) in enumerate(g["slices"]):
        write_ct_slice(folder / f"{i + 1:06d}.dcm", phantom(marks.get(sop, [])), patient=patient,
                       geometry=g, z=z, sop=sop, number=i + 1, encoding=encoding)
    (folder / "069.xml").write_bytes(xml.read_bytes())
    return folder


def write_radiograph(root: pathlib.Path, patient: str) -> pathlib.Path:
    """A CR series with an IdriReadMessage XML (the collection's chest X-ray reads)."""
    series = uid(patient, "CR")
    folder = root / patient / uid(patient, "CR study") / series
    folder.mkdir(parents=True)
    ds = _dataset(uid(series, "1"), ComputedRadiographyImageStorage, "CR")
    ds.PatientID, ds.SeriesInstanceUID, ds.StudyInstanceUID = patient, series, "1.2.3"
    ds.Rows = ds.Columns = 32
    ds.PixelRepresentation = 0
    ds.PixelData = np.full((32, 32), 1000, np.uint16).tobytes()
    ds.save_as(folder / "000001.dcm", enforce_file_format=True)
    (folder / "071.xml").write_text('<?xml version="1.0" encoding="UTF-8"?>\n<IdriReadMessage xmlns='
                                    '"http://www.nih.gov/idri"><ResponseHeader><SeriesInstanceUid>'
                                    f"{series}</SeriesInstanceUid></ResponseHeader><CXRreadingSession/>"
                                    "</IdriReadMessage>\n")
    return folder


def write_download(root: pathlib.Path, patients=PATIENTS) -> pathlib.Path:
    """The download of `patients` under root; the first also has a chest radiograph series."""
    for i, patient in enumerate(patients):
        write_patient(root, patient, encoding=ENCODINGS[i % len(ENCODINGS)])
    write_radiograph(root, patients[0])
    return root
