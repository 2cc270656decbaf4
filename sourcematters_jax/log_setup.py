"""Console logging shared by the training entry points: libraries' INFO chatter filtered out.

Orbax (one INFO line per checkpoint save and restore) and TensorFlow Datasets (dataset-build and
configuration notes) log through absl; in a training job's console they bury the epoch lines.
`drop_library_info` filters their records below WARNING, so warnings and errors still show. Used
by `python -m sourcematters_jax.main` (on absl's handler) and `launch.program.setup_job` (on the
absl logger: the launcher's programs, in their own processes or in the demo's).
`restoring_levels` gives loggers back their levels and filters, for a command run in-process
(`demo.main`, whose --quiet lowers absl's and the root logger's levels).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Sequence

# Path fragments of the libraries whose INFO records a training console does not show.
LIBRARIES = ("orbax", "tensorflow_datasets")


class DropLibraryInfo(logging.Filter):
    """Drops records below WARNING logged from a file whose path contains one of `libraries`."""

    def __init__(self, libraries: Sequence[str] = LIBRARIES):
        super().__init__()
        self.libraries = tuple(libraries)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not any(
            lib in record.pathname for lib in self.libraries)


def drop_library_info(target: logging.Logger | logging.Handler,
                      libraries: Sequence[str] = LIBRARIES) -> None:
    """Adds a `DropLibraryInfo(libraries)` to `target` unless an equal one is there already."""
    libraries = tuple(libraries)
    if not any(isinstance(f, DropLibraryInfo) and f.libraries == libraries for f in target.filters):
        target.addFilter(DropLibraryInfo(libraries))


@contextlib.contextmanager
def restoring_levels(*names: str) -> Iterator[None]:
    """Restores the root logger's, absl's (with its verbosity flag) and the `names` loggers'
    levels, and removes the filters added to them, when the block ends."""
    from absl import logging as absl_logging

    loggers = [logging.getLogger(), logging.getLogger("absl"), *map(logging.getLogger, names)]
    saved = [(lg, lg.level, list(lg.filters)) for lg in loggers]
    verbosity = absl_logging.get_verbosity()
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)  # sets levels itself: the saved ones go back after
        for lg, level, filters in saved:
            lg.setLevel(level)
            lg.filters[:] = filters
