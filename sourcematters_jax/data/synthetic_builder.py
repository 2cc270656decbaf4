"""TFDS builder `synthetic_cxr`: the chest14 builders run on a generated NIH-layout download.

No manual data: `_split_generators` first generates the synthetic download (synthetic.py) into
`<download_dir>/synthetic_cxr_raw/<spec name>/` (by default `<data_dir>/downloads/...`),
deterministically from the spec's seed, then builds exactly what chest14_source_matters
(option kind='source_matters') or chest14_sex (kind='sex') build from a real download, with the
split CSVs the generator wrote in the study's format.

The one deliberate difference is the tag size: `tag_scale` defaults to 3, i.e. a 48 px letter on
the 256 px synthetic radiographs. Scaled like the study (16 px) the letter shrinks to 4 px and
3 changed pixels at the demo's 64 px input; at scale 3 it changes about 35 pixels at 64 px, about
as many as the study's letter changes at 224 px (44). See docs/datasets.md.
"""

from __future__ import annotations

import pathlib
from typing import Iterator

import pandas as pd
import tensorflow_datasets as tfds

from sourcematters_jax.data import chest14, rawdata, splits as splits_lib, synthetic, tfds_common

KINDS = ("source_matters", "sex")


class SyntheticCxr(tfds.core.GeneratorBasedBuilder):
    """Procedural chest radiographs in the study's layouts (no download needed)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Generated NIH-layout data; source_matters and sex kinds."}
    DEFAULTS = {**tfds_common.XRAY_OPTIONS, "tag_scale": 3.0, "kind": "source_matters", "seed": 0,
                "full_size": 256, "n_heldout": 25, "raw_dir": None}
    BUILDER_CONFIGS = [tfds_common.make_config(64, DEFAULTS)]

    @classmethod
    def config(cls, image_size: int, **options) -> tfds_common.PoolConfig:
        if options.get("kind", "source_matters") not in KINDS:
            raise ValueError(f"synthetic_cxr kind must be one of {KINDS}, got {options['kind']!r}")
        return tfds_common.make_config(image_size, cls.DEFAULTS, **options)

    @property
    def kind(self) -> str:
        return self.builder_config.options["kind"]

    def spec(self) -> synthetic.SyntheticSpec:
        o = self.builder_config.options
        return synthetic.SyntheticSpec(seed=int(o["seed"]), image_size=int(o["full_size"]))

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        features = (chest14.sex_features(size) if self.kind == "sex"
                    else chest14.source_matters_features(size))
        return tfds_common.dataset_info(self, description=__doc__.split("\n\n")[1], homepage="",
                                        citation=tfds_common.CITATION_SOURCE_MATTERS, features=features)

    def _split_generators(self, dl_manager):
        o, spec = self.builder_config.options, self.spec()
        raw = pathlib.Path(o["raw_dir"] or pathlib.Path(dl_manager.download_dir) / "synthetic_cxr_raw" / spec.name)
        synthetic.generate(raw, spec)
        split_dir = synthetic.splits_dir(raw)
        if self.kind == "sex":
            entry = rawdata.read_data_entry(rawdata.find_data_entry(raw))
            tables = chest14.sex_tables(split_dir, entry, resample=False, sample_seed=spec.seed,
                                        n_heldout=int(o["n_heldout"]), sizes=spec.sex_sizes,
                                        heldout_seed=spec.seed)
            return chest14.sex_split_generators(self, tables, raw)
        return chest14.source_matters_split_generators(self, splits_lib.load_chest14_splits(split_dir), raw)

    def _generate_examples(self, table: pd.DataFrame, files: list[pathlib.Path]) -> Iterator:
        size = self.builder_config.image_size
        if self.kind == "sex":
            return chest14.sex_examples(table, files, size)
        return chest14.source_matters_examples(table, files, size, self.builder_config.options)
