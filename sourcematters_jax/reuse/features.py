"""Penultimate features of finished members: the pooled backbone output (2048-d for ResNet50).

For linear probes (e.g. of the confounder or the label): every split of the member's splits on
the config's data (train, val, test_iid, test_ood, test_clean, each image in the variant that
split gives the member), in inference mode, batched and packed on devices as the trainer's
evaluation. Written per member as OUT/<member_id>/features.npy (float32 [rows, features]) and
OUT/<member_id>/index.csv (row, split, pool_index, name, label, confounded), plus OUT/members.csv.
"""

from __future__ import annotations

import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd

from sourcematters_jax.data.types import SPLITS, ExperimentData
from sourcematters_jax.models import Classifier
from sourcematters_jax.reuse import evaluate
from sourcematters_jax.reuse.members import LoadedMember
from sourcematters_jax.reuse.runner import MemberWeights, pack_splits, run_members
from sourcematters_jax.train.evaluate import eval_batch_for
from sourcematters_jax.train.state import normalize
from sourcematters_jax.train.step import DevicePool, Examples, MemberArrays, gather


def backbone_features(model: Classifier, w: MemberWeights, examples: Examples, pool: DevicePool,
                      eval_batch_size: int) -> jnp.ndarray:
    """[n, F] pooled backbone features of a padded split, in eval batches."""
    n = examples.indices.shape[0]
    batch = eval_batch_for(n, eval_batch_size)
    batches = jax.tree.map(lambda a: a.reshape((n // batch, batch) + a.shape[1:]), examples)
    variables = {"params": w.params["backbone"], "batch_stats": w.batch_stats["backbone"]}

    def one(ex: Examples) -> jnp.ndarray:
        images, _ = gather(pool, ex)
        return model.backbone.apply(variables, normalize(images, w.pixel_mean, w.pixel_scale),
                                    train=False)

    feats = jax.lax.map(one, batches)
    return feats.reshape(n, feats.shape[-1])


def extract(members: Sequence[LoadedMember], config: ml_collections.ConfigDict,
            data: ExperimentData, model: Classifier) -> list[tuple[np.ndarray, pd.DataFrame]]:
    """Per member: (features [rows, F] float32, index table); nothing is written."""
    members_data = [data.member_data(lm.member.p_art, lm.member.fold, lm.member.seed)
                    for lm in members]
    arrays = pack_splits(members_data, config)

    def per_member(w: MemberWeights, a: MemberArrays, pool: DevicePool) -> dict[str, Any]:
        return {s: backbone_features(model, w, getattr(a, s), pool, config.eval_batch_size)
                for s in SPLITS}

    feats = run_members(per_member, members, arrays, data, config)
    labels, names = np.asarray(data.pool.labels), data.pool.names
    out = []
    for m in range(len(members)):
        blocks, index = [], []
        for split in SPLITS:
            ex = getattr(arrays, split)
            valid = np.asarray(ex.mask[m], bool)
            idx = np.asarray(ex.indices[m])[valid]
            blocks.append(np.asarray(feats[split][m])[valid].astype(np.float32))
            index.append(pd.DataFrame({"split": split, "pool_index": idx,
                                       "name": [names[i] for i in idx], "label": labels[idx],
                                       "confounded": np.asarray(ex.confounded[m])[valid]}))
        table = pd.concat(index, ignore_index=True)
        table.insert(0, "row", np.arange(len(table)))
        out.append((np.concatenate(blocks), table))
    return out


def write(members: Sequence[LoadedMember], extracted: Sequence[tuple[np.ndarray, pd.DataFrame]],
          config: ml_collections.ConfigDict, tmp: pathlib.Path) -> None:
    """The files of the module docstring, into `tmp` (see atomic_files.write_into)."""
    rows = []
    for lm, (feats, index) in zip(members, extracted):
        d = tmp / lm.member_id
        d.mkdir()
        np.save(d / "features.npy", feats)
        index.to_csv(d / "index.csv", index=False)
        rows.append({"member_id": lm.member_id, "trained_on": lm.trained_on,
                     "features_of": evaluate.evaluated_on(config),
                     "rows": feats.shape[0], "dim": feats.shape[1],
                     "features": f"{lm.member_id}/features.npy",
                     "index": f"{lm.member_id}/index.csv"})
    pd.DataFrame(rows).to_csv(tmp / "members.csv", index=False)
