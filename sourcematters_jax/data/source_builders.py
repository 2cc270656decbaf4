"""TFDS builders of the two built-in source datasets: `synthetic_natural`, `synthetic_radiology`.

Procedural stand-ins for ImageNet (colour scenes of objects and textures) and RadImageNet (grey
images of several modalities and anatomies), drawn by source_images.py; no download or manual
data. They are classification datasets with `train` and `test` splits, features `image` (uint8,
[S, S, 3] natural, [S, S] radiology, zlib tensors: no image codec), `label` (ClassLabel) and
`name`, written as array_record and read with `as_data_source()` like the project's other
builders. Options (part of the config name): seed, train_per_class, test_per_class.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from sourcematters_jax.data import source_images, tfds_common
from sourcematters_jax.data.selection import rng_for

SPLIT_SIZES = {"train": "train_per_class", "test": "test_per_class"}


class _SourceBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared generation: `per_class` images of every class per split, seeded by (seed, split)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Procedural images, train and test splits."}
    DEFAULTS = dict(source_images.BUILDER_OPTIONS)
    BUILDER_CONFIGS = [tfds_common.make_config(64, DEFAULTS)]
    CLASSES: tuple[str, ...] = ()
    CHANNELS = 0  # 0: grey [S, S]; 3: colour [S, S, 3]
    draw: Callable[[int, int, np.random.Generator], np.ndarray]

    @classmethod
    def config(cls, image_size: int, **options) -> tfds_common.PoolConfig:
        return tfds_common.make_config(image_size, cls.DEFAULTS, **options)

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        shape = (size, size, self.CHANNELS) if self.CHANNELS else (size, size)
        features = tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=shape, dtype=np.uint8,
                                          encoding=tfds.features.Encoding.ZLIB),
            "label": tfds.features.ClassLabel(names=list(self.CLASSES)),
            "name": tfds.features.Text(),
        })
        return tfds_common.dataset_info(self, description=self.__doc__.strip(), homepage="",
                                        citation="", features=features)

    def _split_generators(self, dl_manager):
        o = self.builder_config.options
        for key in SPLIT_SIZES.values():
            if int(o[key]) < 1:
                raise ValueError(f"{self.name}: option {key} must be >= 1, got {o[key]!r}")
        return {split: self._generate_examples(split, int(o[key])) for split, key in SPLIT_SIZES.items()}

    def _generate_examples(self, split: str, per_class: int) -> Iterator:
        size, seed = self.builder_config.image_size, int(self.builder_config.options["seed"])
        draw = type(self).draw
        for label, cls_name in enumerate(self.CLASSES):
            for i in range(per_class):
                name = f"{split}/{cls_name}/{i:05d}"
                rng = rng_for(self.name, seed, split, label, i)
                yield name, {"image": draw(label, size, rng), "label": label, "name": name}


class SyntheticNatural(_SourceBuilder):
    """Natural-image stand-in: colour scenes of one object (disc, square, triangle, cross, ring) or a
    texture (stripes, checkerboard, dots) on cluttered colour backgrounds; 8 classes."""

    CLASSES = source_images.NATURAL_CLASSES
    CHANNELS = 3
    draw = staticmethod(source_images.draw_natural)


class SyntheticRadiology(_SourceBuilder):
    """Radiology stand-in: grey images of 6 modality/anatomy classes (chest and knee X-ray, head and
    abdomen CT, brain MR, abdominal ultrasound) with per-image anatomy, exposure and noise."""

    CLASSES = source_images.RADIOLOGY_CLASSES
    CHANNELS = 0
    draw = staticmethod(source_images.draw_radiology)


SOURCE_BUILDERS = dict(zip(source_images.SOURCE_DATASETS, (SyntheticNatural, SyntheticRadiology)))
