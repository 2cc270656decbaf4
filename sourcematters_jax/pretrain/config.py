"""The pretraining config schema: `base_config()` (a ResNet50 ImageNet-style recipe) and validation.

Like the fine-tuning schema (train/config.py) the ConfigDict is locked, so a misspelt key is an
error; `validate` names the field of any value the trainer cannot use. Imports no JAX, so the
config loads before the command has chosen the device count.

`dataset` selects the data:
  synthetic_natural, synthetic_radiology   the built-in procedural source datasets
  a path (contains '/')                    a folder of class subfolders of images (RadImageNet's
                                           layout); `val_fraction` of every class is held out
  any other name                           a TFDS dataset, `tfds.builder(name).as_data_source()`
                                           (prepared as array_record in `data_dir`)
"""

from __future__ import annotations

import json

import ml_collections

from sourcematters_jax.launch.config_io import config_to_dict
from sourcematters_jax.train.config import DTYPES

OPTIMIZERS = ("sgd", "adam")
# What a run does not depend on for its result: may change between a run and its resume.
RUNTIME_FIELDS = ("data_dir", "num_workers", "progress_every_secs", "log_every_steps",
                  "checkpoint_every_steps", "keep_checkpoints", "overwrite")


def base_config() -> ml_collections.ConfigDict:
    """ResNet50 at 224 px, SGD+Nesterov with warmup and cosine decay; change values, never add keys."""
    c = ml_collections.ConfigDict()
    c.dataset = "synthetic_natural"
    c.data_dir = ""  # TFDS data directory ('' = TFDS default)
    c.data_options = ml_collections.ConfigDict()  # options of a built-in builder (seed, *_per_class)
    c.train_split = "train"
    c.eval_split = "test"  # '' = no evaluation; a folder dataset uses val_fraction instead
    c.val_fraction = 0.05  # folder datasets: held-out share of every class (0 = none)
    c.image_key = "image"
    c.label_key = "label"
    c.source = ""  # name in the checkpoint metadata and config.sources ('' = from the dataset)
    c.preprocessing = "caffe"  # preprocessing.MODES: what the fine-tuning trainer will apply
    c.image_size = 224

    c.model = ml_collections.ConfigDict()
    c.model.stage_sizes = (3, 4, 6, 3)
    c.model.width = 64
    c.model.dtype = "float32"
    c.dropout_rate = 0.0  # before the linear classifier

    c.batch_size = 256  # global: split over every device of every process
    c.num_epochs = 90.0
    c.optimizer = "sgd"  # 'sgd' (momentum 0.9, Nesterov) | 'adam'
    c.learning_rate = 0.1  # peak, for batch_size; scaled by nothing else
    c.warmup_epochs = 5.0
    c.weight_decay = 1e-4  # decoupled, on kernels only
    c.label_smoothing = 0.0
    c.augment = ml_collections.ConfigDict()
    c.augment.flip = True  # random horizontal flip
    c.augment.crop_padding = 0.125  # random crop of a zero-padded image (fraction of the side)
    c.seed = 0
    c.eval_batch_size = 256

    c.num_workers = 4  # grain read threads per process
    c.log_every_steps = 50
    c.progress_every_secs = 30.0
    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 2
    c.overwrite = False  # True: delete a workdir of another config's run
    c.lock()
    return c


def is_folder(dataset: str) -> bool:
    """A dataset that names a directory path (contains '/') is a folder of class subfolders."""
    return "/" in dataset


def validate(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the field for any value pretraining cannot run with."""
    from sourcematters_jax.preprocessing import MODES

    def need(ok: bool, field: str, msg: str) -> None:
        if not ok:
            value = config
            for part in field.split("."):
                value = value[part]
            raise ValueError(f"config.{field}: {msg} (got {value!r})")

    need(bool(config.dataset), "dataset", "name a dataset or a folder")
    need(config.image_size >= 16, "image_size", "must be at least 16")
    need(len(config.model.stage_sizes) >= 1 and all(s >= 1 for s in config.model.stage_sizes),
         "model.stage_sizes", "needs positive block counts")
    need(config.model.width >= 1, "model.width", "must be positive")
    need(config.model.dtype in DTYPES, "model.dtype", f"expected one of {DTYPES}")
    need(config.preprocessing in MODES, "preprocessing", f"expected one of {MODES}")
    need(config.optimizer in OPTIMIZERS, "optimizer", f"expected one of {OPTIMIZERS}")
    need(config.batch_size >= 1, "batch_size", "must be positive")
    need(config.eval_batch_size >= 1, "eval_batch_size", "must be positive")
    need(config.num_epochs > 0, "num_epochs", "must be positive")
    need(config.learning_rate > 0, "learning_rate", "must be positive")
    need(config.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")
    need(config.weight_decay >= 0, "weight_decay", "must be >= 0")
    need(0 <= config.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
    need(0 <= config.dropout_rate < 1, "dropout_rate", "must be in [0, 1)")
    need(0 <= config.val_fraction < 1, "val_fraction", "must be in [0, 1)")
    need(0 <= config.augment.crop_padding < 1, "augment.crop_padding", "must be in [0, 1)")
    need(config.num_workers >= 0, "num_workers", "must be >= 0")
    for field in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
        need(config[field] >= 1, field, "must be >= 1")


def identity_json(config: ml_collections.ConfigDict) -> str:
    """The config as canonical JSON without RUNTIME_FIELDS: equal strings = the same run."""
    d = config_to_dict(config)
    for field in RUNTIME_FIELDS:
        d.pop(field, None)
    return json.dumps(d, sort_keys=True, indent=1)


