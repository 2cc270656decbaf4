"""Datasets and confounders of the study, and the pool + member splits the trainer consumes.

  confounders   tag, low-pass, X-ray noise, CT noise: pure numpy on full-resolution images
  splits        the study's split CSVs (shipped under splits/) and the seeded sampling protocols
  synthetic     a generated NIH-layout download (procedural radiographs) for demos and tests
  chest14, lidc, synthetic_builder   TFDS builders (array_record, readable without TensorFlow)
  selection     which images of a member carry the confounder
  split_options extra_ood, p0_protocol, confound_draw: options of the member splits, not the build
  experiment    load_experiment(...) -> ExperimentData (types.py)
"""

from sourcematters_jax.data.types import (CLEAN, CONFOUNDED, SPLITS, TEST_SPLITS, ExperimentData, ImagePool,
                                          MemberData, SplitIndex)


def load_experiment(experiment, *, dataset, data_dir, manual_dir=None, image_size, **options):
    """See sourcematters_jax.data.experiment.load_experiment (imported lazily: TFDS is slow to import)."""
    from sourcematters_jax.data.experiment import load_experiment as _load
    return _load(experiment, dataset=dataset, data_dir=data_dir, manual_dir=manual_dir,
                 image_size=image_size, **options)


__all__ = ["CLEAN", "CONFOUNDED", "SPLITS", "TEST_SPLITS", "ExperimentData", "ImagePool", "MemberData",
           "SplitIndex", "load_experiment"]
