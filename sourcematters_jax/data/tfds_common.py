"""What the project's TFDS builders share: resolution configs, TF-free dataset info, variants.

Every builder stores, per image, each variant an experiment needs at the configured model
resolution (uint8 [S, S], zlib-compressed tensors, no image codec needed), writes array_record
files and is read with `as_data_source()`; neither building nor reading imports TensorFlow.
Options that change the content (image size, split files, tag scale, noise seed, ...) are part of
the config name, so two different builds never share a directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow_datasets as tfds

from sourcematters_jax.data import confounders
from sourcematters_jax.data.selection import seed_sequence

CITATION_SOURCE_MATTERS = """@inproceedings{juodelyte2024source,
  title={Source Matters: Source Dataset Impact on Model Robustness in Medical Imaging},
  author={Juodelyte, Dovile and Lu, Yucheng and Jim{\\'e}nez-S{\\'a}nchez, Amelia and Bottazzi, Sabrina
          and Ferrante, Enzo and Cheplygina, Veronika},
  booktitle={Applications of Medical Artificial Intelligence (AMAI), MICCAI workshop},
  year={2024}, eprint={2403.04484}, archivePrefix={arXiv}
}"""
CITATION_NIH = """@inproceedings{wang2017chestx,
  title={ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks},
  author={Wang, Xiaosong and Peng, Yifan and Lu, Le and Lu, Zhiyong and Bagheri, Mohammadhadi and Summers, Ronald M},
  booktitle={CVPR}, year={2017}
}"""


@dataclasses.dataclass(eq=False)
class PoolConfig(tfds.core.BuilderConfig):
    """A builder config: the model resolution plus builder-specific options (JSON values)."""

    image_size: int = 224
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def make_config(image_size: int, defaults: Mapping[str, Any], **options: Any) -> PoolConfig:
    """A PoolConfig named '<size>px', plus a hash of the options that differ from `defaults`.

    Raises TypeError naming unknown options.
    """
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"unknown dataset option(s) {unknown}; expected some of {sorted(defaults)}")
    if int(image_size) < 8:
        raise ValueError(f"image_size must be at least 8, got {image_size}")
    # None and '' (an unset config string) both mean "the default"
    merged = {**defaults, **{k: v for k, v in options.items() if v is not None and v != ""}}
    changed = {k: merged[k] for k in sorted(merged) if merged[k] != defaults[k]}
    name = f"{int(image_size)}px"
    if changed:
        fingerprint = dict(changed)
        if "tag_font" in fingerprint:  # 'study_call' resolves per machine: name the file's content
            fingerprint["tag_font"] = confounders.font_record(fingerprint["tag_font"])["sha256"]
        text = json.dumps(fingerprint, sort_keys=True, default=str)
        name += "_" + hashlib.sha256(text.encode()).hexdigest()[:10]
    return PoolConfig(name=name, image_size=int(image_size), options=merged,
                      description=f"images at {image_size} px; options {merged}")


def dataset_info(builder: tfds.core.DatasetBuilder, *, description: str, features: tfds.features.FeaturesDict,
                 citation: str, homepage: str) -> tfds.core.DatasetInfo:
    """DatasetInfo built directly (TFDS's `dataset_info_from_configs` reads package files).

    Its metadata (written to metadata.json with the build, read back with it) holds the options
    and, for builders that draw the tag, `tag_font`: the resolved font file and its sha256.
    """
    options = dict(builder.builder_config.options)
    metadata = tfds.core.MetadataDict(options=options)
    if "tag_font" in options:
        metadata["tag_font"] = confounders.font_record(options["tag_font"])
    return tfds.core.DatasetInfo(builder=builder, description=description, features=features,
                                 citation=citation, homepage=homepage, metadata=metadata)


def image_feature(size: int) -> tfds.features.Tensor:
    return tfds.features.Tensor(shape=(size, size), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB)


def manual_dir_of(dl_manager: tfds.download.DownloadManager) -> pathlib.Path:
    """The builder's manual_dir, or a FileNotFoundError with the instructions when missing/empty."""
    try:
        return pathlib.Path(os.fspath(dl_manager.manual_dir))
    except AssertionError as e:
        raise FileNotFoundError(str(e)) from None


# Variants of a chest radiograph: name -> f(full-resolution image, image name, options).
XRayVariant = Callable[[np.ndarray, str, Mapping[str, Any]], np.ndarray]

XRAY_VARIANTS: dict[str, XRayVariant] = {
    "clean": lambda im, name, o: im,
    "tag": lambda im, name, o: confounders.add_tag(im, scale=o["tag_scale"],
                                                   font_path=confounders.resolve_font(o["tag_font"])),
    "lowpass": lambda im, name, o: confounders.low_pass(im),
    "noise_base": lambda im, name, o: confounders.xray_noise(
        im, o["photons_base"], seed_sequence("xray_noise", o["noise_seed"], name, "base")),
    "noise_confounded": lambda im, name, o: confounders.xray_noise(
        im, o["photons_confounded"], seed_sequence("xray_noise", o["noise_seed"], name, "confounded")),
}
# tag_font: 'bundled' (matplotlib's DejaVuSans.ttf), 'study_call' (the study's findfont call on
# this machine) or a TrueType path; see confounders.resolve_font and docs/datasets.md.
XRAY_OPTIONS = {"tag_scale": 1.0, "tag_font": "bundled", "photons_base": confounders.PHOTONS_BASE,
                "photons_confounded": confounders.PHOTONS_CONFOUNDED, "noise_seed": 0}


def xray_variants(image: np.ndarray, name: str, size: int, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every X-ray variant at model resolution: artifact at full resolution, then nearest resize."""
    return {k: confounders.resize_nearest(f(image, name, options), size) for k, f in XRAY_VARIANTS.items()}
