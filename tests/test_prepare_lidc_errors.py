"""prepare-lidc on bad downloads: each error names the file at fault and nothing is left behind.

Two small patients of the fixture download (5 and 6 slices) per test; every test checks that the
output directory does not exist afterwards and that no temporary directory is left next to it.
"""

import pathlib
import re
import shutil

import pytest

import lidc_download
from sourcematters_jax.data import prepare_lidc
from sourcematters_jax.data.rawdata import DataError

PATIENTS = ("LIDC-IDRI-0626", "LIDC-IDRI-0212")


@pytest.fixture
def download(tmp_path) -> pathlib.Path:
    root = tmp_path / "LIDC-IDRI"
    for patient in PATIENTS:
        lidc_download.write_patient(root, patient)
    return root


def series_dir(root: pathlib.Path, patient: str) -> pathlib.Path:
    g = lidc_download.GEOMETRY[patient]
    return root / patient / g["study_uid"] / g["series_uid"]


def fails(download: pathlib.Path, match: str, **kwargs) -> None:
    out = download.parent / "manual"
    with pytest.raises(DataError, match=match):
        prepare_lidc.prepare(download, out, progress=lambda _: None, **kwargs)
    assert sorted(p.name for p in download.parent.iterdir()) == ["LIDC-IDRI"]  # no output, no temp dir


def test_the_fixture_download_prepares(download):
    table = prepare_lidc.prepare(download, download.parent / "manual", progress=lambda _: None)
    assert sorted(table["patient_id"]) == sorted(PATIENTS)


def test_missing_series(download):
    # the XML stays, its DICOM series is gone (an incomplete download)
    series = series_dir(download, PATIENTS[0])
    for f in series.glob("*.dcm"):
        f.unlink()
    fails(download, re.escape(f"{series / '069.xml'}: annotates series "
                              f"{lidc_download.GEOMETRY[PATIENTS[0]]['series_uid']}, which is not under"))


def test_series_without_annotations(download):
    series = series_dir(download, PATIENTS[1])
    (series / "069.xml").unlink()
    fails(download, re.escape(f"{series}: CT series ") + ".* has no annotation XML")


def test_unreadable_dicom_header(download):
    bad = sorted(series_dir(download, PATIENTS[0]).glob("*.dcm"))[1]
    bad.write_bytes(b"not a DICOM file" * 10)
    fails(download, re.escape(f"unreadable DICOM file {bad}"))


def test_unreadable_pixels_of_the_cropped_slice_leave_nothing(download):
    # headers intact, pixel data cut short: found only while writing the crops, after the
    # temporary output directory exists
    series = series_dir(download, PATIENTS[1])
    table = prepare_lidc.prepare(download, download.parent / "first", progress=lambda _: None)
    name = table.set_index("patient_id").loc[PATIENTS[1], "slice_file"]
    data = (series / name).read_bytes()
    (series / name).write_bytes(data[:-1000])
    shutil.rmtree(download.parent / "first")
    fails(download, re.escape(f"unreadable DICOM pixel data in {series / name}"))


def test_unreadable_or_incomplete_xml(download):
    xml = series_dir(download, PATIENTS[0]) / "069.xml"
    text = xml.read_text()
    xml.write_text(text[: len(text) // 2])
    fails(download, re.escape(f"unreadable annotation XML {xml}"))
    xml.write_text(text.replace("<malignancy>2</malignancy>", "<malignancy>7</malignancy>", 1))
    fails(download, re.escape(f"{xml}: readingSession 2, nodule 'Nodule 001': malignancy 7 is outside 1..5"))


def test_annotated_slice_not_in_the_series(download):
    xml = series_dir(download, PATIENTS[0]) / "069.xml"
    sop = lidc_download.GEOMETRY[PATIENTS[0]]["slices"][2][1]
    xml.write_text(xml.read_text().replace(sop, "1.2.3.4").replace("-181.750000", "-300.000000"))
    fails(download, re.escape(f"{xml}: readingSession ") + r".*: slice 1\.2\.3\.4 \(z -300\.0\) is not in series")


def test_no_download_and_existing_output(tmp_path, download):
    fails(download, "no nodule is marked by at least 4 radiologists", min_readers=4)
    with pytest.raises(DataError, match=f"--lidc_root {tmp_path / 'nowhere'} is not a directory"):
        prepare_lidc.prepare(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no CT series"):
        prepare_lidc.prepare(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        prepare_lidc.prepare(download, tmp_path / "out")
