"""Inputs a sweep needs before it can train: pretrained weights and the raw data (manual_dir).

`missing_inputs(config)` lists, one message each, what is not there yet, without building or
loading anything heavy:

- every checkpoint source of `config.sweep.source` must be a converted checkpoint directory
  (its metadata.json readable and valid; `sourcematters convert` makes one);
- a dataset that is not yet built in `config.data_dir` needs its raw files: `config.manual_dir`
  (or TFDS's default DATA_DIR/downloads/manual) must be a directory. The built-in synthetic_cxr
  dataset needs none.

The launcher prints the list in `--dry_run` and refuses to start a local run while it is not
empty, so a run never fails minutes in, after writing its manifest, for a missing input.
"""

from __future__ import annotations

import os
import pathlib

import ml_collections

from sourcematters_jax.train import config as config_lib

NO_RAW_DATA = ("synthetic_cxr",)  # datasets generated in code: no manual_dir


def missing_weights(config: ml_collections.ConfigDict) -> list[str]:
    """One message per sweep source whose weights are not a readable converted checkpoint."""
    from sourcematters_jax import pretrained

    problems = []
    for name in sorted(set(config.sweep.source)):
        try:
            kind, value = config_lib.source_spec(config, name)
        except (KeyError, ValueError) as e:
            problems.append(str(e.args[0]) if isinstance(e, KeyError) else str(e))
            continue
        if kind != "checkpoint":
            continue
        try:
            pretrained.read_metadata(value)
        except (OSError, ValueError) as e:
            problems.append(f"config.sources.{name}: {e}")
    return problems


def missing_raw_data(config: ml_collections.ConfigDict) -> list[str]:
    """A message if the dataset is not built and its manual_dir is not a directory (else [])."""
    if config.dataset in NO_RAW_DATA:
        return []
    from sourcematters_jax.data import split_options
    from sourcematters_jax.data.experiment import make_builder

    try:
        # The split options (extra_ood, p0_protocol, confound_draw) choose member splits, not
        # the build: strip them as load_experiment does.
        _, builder_options = split_options.split_options(
            config.experiment, config.dataset, config.data_options.to_dict())
        builder = make_builder(config.experiment, dataset=config.dataset,
                               data_dir=config.data_dir or None, image_size=config.image_size,
                               **builder_options)
    except (ValueError, KeyError, TypeError) as e:
        return [f"config.dataset={config.dataset!r}: {e}"]
    if builder.is_prepared():
        return []
    manual = pathlib.Path(config.manual_dir or os.fspath(builder.data_dir_root / "downloads" / "manual"))
    if manual.is_dir():
        return []
    where = f"config.manual_dir={config.manual_dir}" if config.manual_dir else (
        f"config.manual_dir is empty and TFDS's default {manual}")
    return [f"{where} is not a directory: {config.dataset} is not built in "
            f"{builder.data_dir_root}, and building it needs the raw files there "
            "(see docs/datasets.md); pass --config.manual_dir=DIR"]


def missing_inputs(config: ml_collections.ConfigDict) -> list[str]:
    """Everything `missing_weights` and `missing_raw_data` report, weights first."""
    return missing_weights(config) + missing_raw_data(config)
