"""The training config schema: `base_config()` with the study's recipe, and its validation.

Every program is described by one locked `ml_collections.ConfigDict`, so a misspelt key is an
error rather than a silently ignored setting. Experiment configs (configs/*.py) start from
`base_config()` and change values; the trainer calls `validate(config)` before touching any data.
This module imports no JAX, so configs load before `main.py` has chosen the device count.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import ml_collections

from sourcematters_jax import experiments
from sourcematters_jax.members import P_ART_GRID, RANDOM_SOURCE, STUDY_SEED

STRATEGIES = ("auto", "vmap", "groups", "lax_map", "loop")
DTYPES = ("float32", "bfloat16")
REMAT = ("auto", "on", "off")
MATMUL_PRECISIONS = ("default", "high", "highest")
# Fields that say where and how a program runs, not what it computes: a workdir may be resumed
# with other values for these (e.g. a preempted job restarted on another machine type, whose
# strategy or data location differ).
RUNTIME_FIELDS = ("overwrite", "progress_every_secs", "keep_checkpoints", "checkpoint_every_epochs",
                  "checkpoint_every_secs", "execution", "data_dir", "manual_dir")


def base_config() -> ml_collections.ConfigDict:
    """The study's recipe (PROTOCOL.md) as a locked ConfigDict; change values, never add keys."""
    c = ml_collections.ConfigDict()
    c.experiment = "tag"
    c.dataset = "synthetic_cxr"
    c.data_dir = ""  # TFDS data directory ('' = TFDS default)
    c.manual_dir = ""  # raw files for builders that need them ('' = none)
    # Extra keyword arguments for data.load_experiment (unlock it to add keys).
    c.data_options = ml_collections.ConfigDict()
    c.image_size = 224

    c.model = ml_collections.ConfigDict()
    c.model.stage_sizes = (3, 4, 6, 3)  # ResNet50
    c.model.width = 64
    # 'float32' (Keras parity) or 'bfloat16': mixed precision (params, BN statistics, Adam state
    # and the loss in float32; convolutions and matmuls in bfloat16; the stem conv in float32).
    c.model.dtype = "float32"

    # source name -> 'random' (Keras-default init, caffe preprocessing), 'random:<mode>'
    # (the same with another preprocessing mode), or a checkpoint dir made by convert_weights.
    c.sources = ml_collections.ConfigDict()
    c.sources.imagenet = ""
    c.sources.radimagenet = ""
    c.sources.random = "random"

    c.sweep = ml_collections.ConfigDict()
    c.sweep.experiment = c.get_ref("experiment")  # one experiment (one image pool) per program
    c.sweep.source = ("imagenet", "radimagenet", "random")
    c.sweep.p_art = tuple(P_ART_GRID)
    c.sweep.fold = (1, 2, 3, 4, 5)
    c.sweep.seed = (STUDY_SEED,)
    c.member_indices = ""  # '' = every member of the sweep; 'start:stop' = a slice of it

    c.batch_size = 256
    c.num_epochs = 30
    c.learning_rate = 1e-3
    c.adam_b1 = 0.9
    c.adam_b2 = 0.999
    c.adam_eps = 1e-7
    c.patience = 30  # EarlyStopping(val_loss, patience)
    c.dropout_rate = 0.5

    # Keras ImageDataGenerator(rotation_range, width_shift_range, height_shift_range,
    # shear_range (degrees), zoom_range), fill_mode='nearest', bilinear interpolation.
    c.augment = ml_collections.ConfigDict()
    c.augment.enabled = True
    c.augment.rotation_deg = 10.0
    c.augment.width_shift = 0.1
    c.augment.height_shift = 0.1
    c.augment.shear_deg = 0.1
    c.augment.zoom = 0.1

    c.eval_batch_size = 128
    # Pad every split to the largest of *all* config.sweep members, not only this program's, so
    # every program of a sweep has the same shapes and compiles once (persistent cache).
    c.pad_to_sweep = True

    c.execution = ml_collections.ConfigDict()
    c.execution.strategy = "auto"  # 'vmap' | 'groups' | 'lax_map' | 'loop' | 'auto'
    c.execution.num_devices = 0  # 0 = every local device
    # True: training on CPU is an error (e.g. a CPU-only jaxlib on a GPU machine); else a warning.
    c.execution.require_accelerator = False
    # 'groups': members vectorised G at a time, groups one after another in one program;
    # 0 = the largest G whose activations fit the device (train.memory; set by the launcher).
    c.execution.group_size = 0
    # Rematerialise every residual block in the backward pass: 'on', 'off', or 'auto' (the
    # launcher: on where it gives fewer programs; a program started directly: on only where an
    # accelerator's members would not fit otherwise).
    c.execution.remat = "auto"
    # jax.default_matmul_precision of every step: 'default' (on recent NVIDIA GPUs float32
    # matmuls and convolutions then run as TF32; bfloat16 passes on TPU), 'high' or 'highest'
    # (full float32).
    c.execution.matmul_precision = "default"

    c.keep_checkpoints = 1
    # A checkpoint copies every member's state to host memory and writes it in the background.
    # Saved when checkpoint_every_secs have passed since the last one (0 = never by time), every
    # checkpoint_every_epochs epochs (0 = never by count), and always after the last epoch.
    c.checkpoint_every_secs = 600.0
    c.checkpoint_every_epochs = 0
    c.progress_every_secs = 30.0
    c.overwrite = False  # True: wipe a workdir that holds another config's outputs
    c.lock()
    return c


def parse_member_indices(spec: str, num_members: int) -> list[int] | None:
    """'' -> None (all members); 'a:b' -> list(range(a, b)) with Python slice semantics."""
    spec = spec.strip()
    if not spec:
        return None
    parts = spec.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else num_members
    except ValueError:
        raise ValueError(f"config.member_indices must be '' or 'start:stop', got {spec!r}") from None
    indices = list(range(num_members))[start:stop]
    if not indices:
        raise ValueError(f"config.member_indices={spec!r} selects no member of {num_members}")
    return indices


def source_spec(config: ml_collections.ConfigDict, name: str) -> tuple[str, str]:
    """('random', mode) or ('checkpoint', directory) for source `name` of `config.sources`."""
    spec = config.sources.get(name)
    if spec is None and name == RANDOM_SOURCE:
        spec = "random"
    if spec is None:
        raise KeyError(f"member source {name!r} is not in config.sources "
                       f"(known: {sorted(config.sources.keys())})")
    if not spec:
        raise ValueError(f"config.sources.{name} is empty: set it to a checkpoint directory "
                         "made by `python -m sourcematters_jax.convert_weights`")
    if spec == "random" or spec.startswith("random:"):
        mode = spec.partition(":")[2] or "caffe"
        return "random", mode
    return "checkpoint", spec


def validate(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the field for any value the trainer cannot run with."""
    from sourcematters_jax.preprocessing import MODES  # imported late: it imports JAX

    def need(ok: bool, field: str, msg: str) -> None:
        if not ok:
            raise ValueError(f"config.{field}: {msg} (got {_get(config, field)!r})")

    need(config.experiment in experiments.EXPERIMENTS, "experiment", f"expected one of {experiments.NAMES}")
    need(config.image_size >= 16, "image_size", "must be at least 16")
    need(len(config.model.stage_sizes) >= 1 and all(s >= 1 for s in config.model.stage_sizes),
         "model.stage_sizes", "needs positive block counts")
    need(config.model.width >= 1, "model.width", "must be positive")
    need(config.model.dtype in DTYPES, "model.dtype", f"expected one of {DTYPES}")
    for field in ("batch_size", "num_epochs", "eval_batch_size", "patience", "keep_checkpoints"):
        need(_get(config, field) >= 1, field, "must be at least 1")
    for field in ("checkpoint_every_epochs", "checkpoint_every_secs"):
        need(_get(config, field) >= 0, field, "must be >= 0 (0 = off)")
    need(0.0 <= config.dropout_rate < 1.0, "dropout_rate", "must lie in [0, 1)")
    need(config.learning_rate > 0, "learning_rate", "must be positive")
    need(0.0 <= config.adam_b1 < 1.0 and 0.0 <= config.adam_b2 < 1.0, "adam_b1",
         "Adam betas must lie in [0, 1)")
    need(config.adam_eps > 0, "adam_eps", "must be positive")
    for field in ("rotation_deg", "width_shift", "height_shift", "shear_deg", "zoom"):
        need(_get(config, f"augment.{field}") >= 0, f"augment.{field}", "must be non-negative")
    need(config.augment.zoom < 1.0, "augment.zoom", "Keras zoom_range z gives U[1-z, 1+z]; need z < 1")
    need(config.execution.strategy in STRATEGIES, "execution.strategy", f"expected one of {STRATEGIES}")
    need(config.execution.num_devices >= 0, "execution.num_devices", "must be >= 0 (0 = all)")
    need(config.execution.group_size >= 0, "execution.group_size", "must be >= 0 (0 = from memory)")
    need(config.execution.remat in REMAT, "execution.remat", f"expected one of {REMAT}")
    need(config.execution.matmul_precision in MATMUL_PRECISIONS, "execution.matmul_precision",
         f"expected one of {MATMUL_PRECISIONS}")
    for name, spec in config.sources.items():
        if spec.startswith("random:"):
            need(spec.partition(":")[2] in MODES, f"sources.{name}", f"random:<mode> with mode in {MODES}")


def identity_json(config: ml_collections.ConfigDict) -> str:
    """The config as canonical JSON without RUNTIME_FIELDS: equal strings = same results."""
    d = json.loads(config.to_json_best_effort(sort_keys=True))
    for field in RUNTIME_FIELDS:
        d.pop(field, None)
    return json.dumps(d, sort_keys=True, indent=1)


def differing_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "",
                   ignore: Sequence[str] = RUNTIME_FIELDS) -> list[str]:
    """Dotted keys at which two config dicts (JSON forms of configs) differ, sorted.

    Top-level `ignore` fields are skipped (by default RUNTIME_FIELDS, which do not change results).
    """
    keys = []
    for key in sorted(set(a) | set(b)):
        if not prefix and key in ignore:
            continue
        path = f"{prefix}{key}"
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            keys.extend(differing_keys(va, vb, prefix=path + ".", ignore=()))
        elif va != vb:
            keys.append(path)
    return keys


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
    value = config
    for part in dotted.split("."):
        value = value[part]
    return value
