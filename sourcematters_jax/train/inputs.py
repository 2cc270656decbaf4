"""A program's inputs, loaded and checked before the workdir is claimed.

Sources (random init or converted checkpoints, strictly merged into the backbone), the
experiment's data, clear errors for a pool or split the trainer cannot use, and the sweep-wide
split lengths that give every program of a sweep the same shapes (`config.pad_to_sweep`).
"""

from __future__ import annotations

from typing import Any, Sequence

import ml_collections
import numpy as np

from sourcematters_jax import pretrained as pretrained_lib
from sourcematters_jax.data.types import SPLITS, ExperimentData, MemberData
from sourcematters_jax.members import Member, expand_sweep
from sourcematters_jax.train import config as config_lib, packing, state as state_lib


def sweep_members(config: ml_collections.ConfigDict) -> list[Member]:
    """Every member of config.sweep (a program trains config.member_indices of them)."""
    return expand_sweep({k: config.sweep[k] for k in config.sweep.keys()})


def resolve_sources(config: ml_collections.ConfigDict, members: Sequence[Member],
                    model: Any) -> tuple[dict[str, tuple[int, str]], Any]:
    """({source: (slot, preprocessing mode)}, stacked pretrained backbones or None).

    Random sources get slot -1; each checkpoint source is loaded once, checked against the model
    architecture and merged strictly into the backbone's variable tree.
    """
    info, stacked = {}, []
    target = state_lib.backbone_shapes(model, config.image_size)
    for name in sorted({m.source for m in members}):
        kind, value = config_lib.source_spec(config, name)
        if kind == "random":
            info[name] = (-1, value)
            continue
        variables, meta = pretrained_lib.load(value)
        where = f"config.sources.{name}={value}"
        pretrained_lib.check_architecture(meta, model.backbone, where=where)
        stacked.append(pretrained_lib.merge_into(target, variables, what=where))
        info[name] = (len(stacked) - 1, meta["preprocessing"])
    return info, (packing.stack_trees(stacked) if stacked else None)


def load_data(config: ml_collections.ConfigDict) -> ExperimentData:
    from sourcematters_jax.data import load_experiment

    return load_experiment(config.experiment, dataset=config.dataset,
                           data_dir=config.data_dir or None, manual_dir=config.manual_dir or None,
                           image_size=config.image_size, **config.data_options.to_dict())


def check_data(data: ExperimentData, members: Sequence[Member], members_data: Sequence[MemberData],
               image_size: int) -> None:
    """Clear errors for a pool or split the trainer cannot use."""
    experiment = getattr(data, "experiment", None)
    if experiment is not None and experiment != members[0].experiment:
        raise ValueError(f"data is for experiment {experiment!r}, the members for "
                         f"{members[0].experiment!r}")
    images = data.pool.images
    if images.shape[2:] != (image_size, image_size):
        raise ValueError(f"pool images are {images.shape[2:]}, config.image_size is {image_size}")
    labels = np.asarray(data.pool.labels)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("pool labels must be 0 or 1")
    for member, md in zip(members, members_data):
        for split in SPLITS:
            s = getattr(md, split)
            if len(s.indices) and (s.indices.min() < 0 or s.indices.max() >= len(labels)):
                raise ValueError(f"{member.member_id}: {split} indexes outside the pool")
            if images.shape[1] < 2 and s.confounded.any():
                raise ValueError(f"{member.member_id}: {split} marks confounded images, but the "
                                 "pool has a single variant")


def sweep_lengths(config: ml_collections.ConfigDict, data: ExperimentData) -> dict[str, int]:
    """{split: longest} over every member of config.sweep, so all its programs pad alike."""
    keys = sorted({(m.p_art, m.fold, m.seed) for m in sweep_members(config)})
    return packing.longest_splits([data.member_data(*k) for k in keys])
