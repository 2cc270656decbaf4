"""Pretraining input: a classification dataset as grain random-access sources, streamed in batches.

`open_dataset(config)` gives a `ClassificationData` for the three kinds of `config.dataset`
(pretrain/config.py): the built-in TFDS builders, any TFDS dataset by name (array_record,
`as_data_source()`: random access, nothing loaded into memory), or a folder of class
subfolders (images decoded with PIL when read). `train_batches` streams the training set with
grain: a seeded global shuffle, reshuffled every epoch; the shard of this process
(`ds[process_index::process_count]`); per-example seeded augmentation; batches; read threads.
Every batch is a pure function of (seed, step), so a resumed run continues exactly where the
checkpoint left off by starting the stream at its step.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Any, Callable, Iterator, Sequence

import grain
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from sourcematters_jax.data.experiment import _build_lock
from sourcematters_jax.data.selection import rng_for
from sourcematters_jax.data.source_builders import SOURCE_BUILDERS
from sourcematters_jax.pretrain.config import is_folder

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
# The source name a built-in dataset's backbone gets by default.
BUILTIN_SOURCES = {"synthetic_natural": "natural", "synthetic_radiology": "radiology"}


@dataclasses.dataclass(frozen=True)
class ClassificationData:
    """A dataset's splits as random-access sources of raw records, and how to read one.

    `decode(record) -> (image uint8 [H, W] / [H, W, C], label int)`.
    """

    name: str  # what the metadata records: builder name/config, or the folder path
    kind: str  # 'builtin' | 'tfds' | 'folder'
    train: Sequence[Any]
    eval: Sequence[Any] | None
    classes: tuple[str, ...]
    decode: Callable[[Any], tuple[np.ndarray, int]]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def open_dataset(config: ml_collections.ConfigDict) -> ClassificationData:
    """The dataset `config.dataset` names, built first if it is a TFDS builder not yet prepared."""
    if is_folder(config.dataset):
        return _open_folder(config)
    return _open_tfds(config)


# ---------------------------------------------------------------------------------------------
# TFDS
# ---------------------------------------------------------------------------------------------

def _make_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
    data_dir = config.data_dir or None
    options = config.data_options.to_dict()
    cls = SOURCE_BUILDERS.get(config.dataset)
    if cls is not None:
        builder_config = cls.config(config.image_size, **options)
        if any(c.name == builder_config.name for c in cls.BUILDER_CONFIGS):
            builder_config = builder_config.name  # TFDS refuses an equal-named config object
        return cls(config=builder_config, data_dir=data_dir, file_format="array_record")
    if options:
        raise ValueError(f"config.data_options {sorted(options)}: only the built-in datasets "
                         f"{sorted(SOURCE_BUILDERS)} take options (use dataset 'NAME/CONFIG' "
                         "for a TFDS config)")
    try:
        return tfds.builder(config.dataset, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"config.dataset={config.dataset!r}: not a built-in dataset "
                         f"({sorted(SOURCE_BUILDERS)}), a folder (a path with '/') or a TFDS "
                         f"dataset ({str(e).splitlines()[0]})") from None


def _open_tfds(config: ml_collections.ConfigDict) -> ClassificationData:
    builder = _make_builder(config)
    with _build_lock(builder):
        builder.download_and_prepare()
    builder = _make_builder(config)  # read the info another process may have just written
    features = builder.info.features
    for key in (config.image_key, config.label_key):
        if key not in features:
            raise ValueError(f"{builder.name}: no feature {key!r} (config.image_key / label_key); "
                             f"it has {sorted(features.keys())}")
    label = features[config.label_key]
    if not isinstance(label, tfds.features.ClassLabel):
        raise ValueError(f"{builder.name}: feature {config.label_key!r} is not a ClassLabel")
    sources = builder.as_data_source()
    splits = {config.train_split, *([config.eval_split] if config.eval_split else [])}
    missing = sorted(splits - set(sources))
    if missing:
        raise ValueError(f"{builder.name}: no split(s) {missing} (config.train_split / "
                         f"eval_split); it has {sorted(sources)}")
    image_key, label_key = config.image_key, config.label_key
    kind = "builtin" if config.dataset in SOURCE_BUILDERS else "tfds"
    return ClassificationData(
        name=f"{builder.name}/{builder.builder_config.name}" if builder.builder_config
        else builder.name,
        kind=kind, train=sources[config.train_split],
        eval=sources[config.eval_split] if config.eval_split else None,
        classes=tuple(label.names),
        decode=lambda r: (np.asarray(r[image_key]), int(r[label_key])))


# ---------------------------------------------------------------------------------------------
# Folder of class subfolders
# ---------------------------------------------------------------------------------------------

def scan_folder(root: str | os.PathLike) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """(class names, [(file, label)]) of ROOT/<class>/**/<image>; sorted, so stable everywhere."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"config.dataset={str(root)!r}: no such directory")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if len(classes) < 2:
        raise ValueError(f"{root}: a folder dataset needs at least 2 class subfolders, found "
                         f"{list(classes)}")
    items = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise ValueError(f"{root / name}: class folder holds no images ({IMAGE_EXTENSIONS})")
        items += [(os.fspath(f), label) for f in files]
    return classes, items


def _read_image(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L") if im.mode in ("L", "I", "I;16", "F", "1")
                              else im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None


def _open_folder(config: ml_collections.ConfigDict) -> ClassificationData:
    root = pathlib.Path(config.dataset).absolute()
    classes, items = scan_folder(root)
    labels = np.asarray([label for _, label in items])
    held = np.zeros(len(items), bool)
    if config.val_fraction > 0:
        for label in range(len(classes)):
            where = np.flatnonzero(labels == label)
            n = int(round(config.val_fraction * len(where)))
            held[rng_for("pretrain_val", config.seed, label).permutation(where)[:n]] = True
    train = [items[i] for i in np.flatnonzero(~held)]
    val = [items[i] for i in np.flatnonzero(held)]
    return ClassificationData(name=os.fspath(root), kind="folder", train=train,
                              eval=val or None, classes=classes,
                              decode=lambda r: (_read_image(r[0]), int(r[1])))


# ---------------------------------------------------------------------------------------------
# Examples and batches
# ---------------------------------------------------------------------------------------------

def to_model_image(image: np.ndarray, size: int) -> np.ndarray:
    """Any decoded image -> uint8 RGB [size, size, 3]: grey replicated, alpha dropped, resized
    (bilinear, the whole image, as Keras' flow_from_directory(target_size) does)."""
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 3 and x.shape[-1] == 4:
        x = x[..., :3]
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[-1] != 3):
        raise ValueError(f"image of shape {x.shape}: expected [H, W], [H, W, 1|3|4]")
    if x.dtype != np.uint8:
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.shape[:2] != (size, size):
        x = np.asarray(Image.fromarray(x).resize((size, size), Image.BILINEAR))
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    return x


def augment(image: np.ndarray, rng: np.random.Generator, *, flip: bool,
            crop_padding: float) -> np.ndarray:
    """Random horizontal flip and a random crop of the zero-padded image (same size)."""
    if flip and rng.random() < 0.5:
        image = image[:, ::-1]
    pad = int(round(crop_padding * image.shape[0]))
    if pad:
        padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
        dy, dx = rng.integers(0, 2 * pad + 1, 2)
        image = padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
    return np.ascontiguousarray(image)


def steps_per_epoch(num_examples: int, global_batch: int) -> int:
    if num_examples < global_batch:
        raise ValueError(f"config.batch_size={global_batch} is larger than the training set "
                         f"({num_examples} examples)")
    return num_examples // global_batch


def train_batches(data: ClassificationData, config: ml_collections.ConfigDict, *, start_step: int,
                  total_steps: int, process_index: int, process_count: int
                  ) -> Iterator[dict[str, np.ndarray]]:
    """This process's share of training batches `start_step`..`total_steps - 1`.

    Global batch b holds examples [b * B, (b + 1) * B) of the shuffled, repeated stream; each
    process reads every process_count-th of them, so the processes' shares make the global batch.
    """
    if config.batch_size % process_count:
        raise ValueError(f"config.batch_size={config.batch_size} must be a multiple of the "
                         f"process count {process_count}")
    local_batch = config.batch_size // process_count
    epochs = math.ceil(total_steps * config.batch_size / len(data.train)) + 1
    size, decode = config.image_size, data.decode
    flip, crop = bool(config.augment.flip), float(config.augment.crop_padding)

    def example(record: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
        image, label = decode(record)
        image = augment(to_model_image(image, size), rng, flip=flip, crop_padding=crop)
        return {"image": image, "label": np.int32(label)}

    ds = (grain.MapDataset.source(data.train).shuffle(seed=config.seed).repeat(epochs)
          [process_index::process_count]
          .random_map(example, seed=config.seed)
          .batch(local_batch, drop_remainder=True))
    ds = ds[start_step:total_steps]
    options = grain.ReadOptions(num_threads=config.num_workers,
                                prefetch_buffer_size=max(2 * config.num_workers, 1))
    return iter(ds.to_iter_dataset(options))


def eval_batches(source: Sequence[Any], data: ClassificationData, config: ml_collections.ConfigDict,
                 *, local_batch: int, process_index: int, process_count: int
                 ) -> Iterator[dict[str, np.ndarray]]:
    """Every example of `source` once (this process's share), in batches padded with mask False."""
    size, decode = config.image_size, data.decode

    def example(record: Any) -> dict[str, np.ndarray]:
        image, label = decode(record)
        return {"image": to_model_image(image, size), "label": np.int32(label)}

    ds = grain.MapDataset.source(source)[process_index::process_count].map(example)
    n_batches = max(math.ceil(len(source) / (local_batch * process_count)), 1)
    options = grain.ReadOptions(num_threads=config.num_workers,
                                prefetch_buffer_size=max(2 * config.num_workers, 1))
    it = iter(ds.batch(local_batch).to_iter_dataset(options))
    for _ in range(n_batches):  # every process yields the same number of batches
        batch = next(it, None)
        n = 0 if batch is None else len(batch["label"])
        out = {"image": np.zeros((local_batch, size, size, 3), np.uint8),
               "label": np.zeros(local_batch, np.int32), "mask": np.zeros(local_batch, bool)}
        if n:
            out["image"][:n], out["label"][:n], out["mask"][:n] = batch["image"], batch["label"], True
        yield out
