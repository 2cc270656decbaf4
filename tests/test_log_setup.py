"""log_setup: the one filter for Orbax's and TFDS's INFO lines, and giving logger levels back."""

import logging

from absl import logging as absl_logging

from sourcematters_jax import log_setup


def _record(pathname: str, level: int) -> logging.LogRecord:
    return logging.LogRecord("absl", level, pathname, 1, "message", None, None)


def test_drops_orbax_and_tfds_info_but_keeps_their_warnings_and_other_info():
    drop = log_setup.DropLibraryInfo()
    orbax = "/site-packages/orbax/checkpoint/_src/checkpointers/async_checkpointer.py"
    tfds = "/site-packages/tensorflow_datasets/core/dataset_builder.py"
    ours = "/work/sourcematters_jax/train/loop.py"
    assert not drop.filter(_record(orbax, logging.INFO))
    assert not drop.filter(_record(tfds, logging.DEBUG))
    assert drop.filter(_record(orbax, logging.WARNING)) and drop.filter(_record(tfds, logging.ERROR))
    assert drop.filter(_record(ours, logging.INFO))


def test_drop_library_info_adds_one_filter_per_library_set():
    handler = logging.NullHandler()
    log_setup.drop_library_info(handler)
    log_setup.drop_library_info(handler)  # set-up run twice in one process (the demo, tests)
    assert len(handler.filters) == 1
    log_setup.drop_library_info(handler, ("clu",))
    assert [f.libraries for f in handler.filters] == [log_setup.LIBRARIES, ("clu",)]


def test_restoring_levels_gives_back_levels_verbosity_and_filters():
    root, absl, other = logging.getLogger(), logging.getLogger("absl"), logging.getLogger("PIL")
    before = root.level, absl.level, other.level, list(absl.filters), absl_logging.get_verbosity()
    with log_setup.restoring_levels("PIL"):
        absl_logging.set_verbosity(absl_logging.WARNING)
        root.setLevel(logging.ERROR)
        other.setLevel(logging.CRITICAL)
        log_setup.drop_library_info(absl, ("something",))
    assert (root.level, absl.level, other.level, list(absl.filters),
            absl_logging.get_verbosity()) == before
