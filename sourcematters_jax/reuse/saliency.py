"""Where finished members look: Grad-CAM and integrated gradients, scored against the confounder.

Both maps explain the score s = logit(positive) - logit(negative) (the softmax probability the
AUC ranks is increasing in s), on the same test images in their clean and confounded variants.

  gradcam               Grad-CAM (Selvaraju et al. 2017) on the last conv stage: the block
                        output the backbone sows as 'last_stage' (models/resnet.py), for the
                        predicted class (+s or -s), weights = spatial mean of its gradient per
                        channel, map = relu(sum_k w_k A_k), bilinearly upsampled to the input
                        (a 2x2 map at 64 px input, 7x7 at 224 px: coarse by construction).
                        The backbone ends in global average pooling, so s is the head applied
                        to mean(A): ds/dA is exact through that path.
  integrated_gradients  Sundararajan et al. 2017, w.r.t. the grayscale input pixels, black
                        baseline (grey level 0, before the source's preprocessing), midpoint
                        Riemann sum over `steps`; the map is |attribution| per pixel.

Scores per member and image variant: for the tag confounder, `inside_fraction` = the map's mass
inside the tag's box (`confounders.tag_box` scaled to the image, `tag_region`) over its total,
with `area_fraction` = the box's share of the image (what a uniform map would give). Global
confounders (denoising low-pass, X-ray and CT noise) have no region: for them, and for every
experiment, `change_vs_clean` = total-variation distance between the normalised maps of the
confounded and the clean variant (0 = the confounder does not move the attribution, 1 =
disjoint).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd

from sourcematters_jax import experiments
from sourcematters_jax.data import confounders
from sourcematters_jax.data.types import CONFOUNDED, ExperimentData
from sourcematters_jax.models import Classifier
from sourcematters_jax.models.resnet import LAST_STAGE
from sourcematters_jax.reuse.members import LoadedMember, ReuseInputError
from sourcematters_jax.reuse.runner import MemberWeights, run_members
from sourcematters_jax.train.state import normalize
from sourcematters_jax.train.step import DevicePool, Examples, gather

METHODS = ("gradcam", "integrated_gradients")


def head_score(model: Classifier, params: Any, pooled: jnp.ndarray) -> jnp.ndarray:
    """s = logit 1 - logit 0 of the head (inference: no dropout) on pooled features [B, F]."""
    logits = nn.Dense(model.num_classes).apply({"params": params["head"]}, pooled)
    return logits[:, 1] - logits[:, 0]


def last_stage(model: Classifier, w: MemberWeights, x: jnp.ndarray) -> jnp.ndarray:
    """The last conv stage's activations [B, h, w, C] for preprocessed input x [B, H, W, 3]."""
    variables = {"params": w.params["backbone"], "batch_stats": w.batch_stats["backbone"]}
    _, state = model.backbone.apply(variables, x, train=False, mutable=["intermediates"])
    return state["intermediates"][LAST_STAGE][0]


def gradcam(model: Classifier, w: MemberWeights, images: jnp.ndarray
            ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(Grad-CAM maps [B, H, W], scores s [B]) for float images [B, H, W] in 0..255.

    The map explains the predicted class: s where s >= 0 (positive), -s otherwise, so a
    confidently negative image gets its own evidence map instead of an all-zero one.
    """
    acts = last_stage(model, w, normalize(images, w.pixel_mean, w.pixel_scale))

    def score_of(a):
        return head_score(model, w.params, jnp.mean(a, axis=(1, 2)).astype(jnp.float32))

    scores, vjp = jax.vjp(score_of, acts)
    (grads,) = vjp(jnp.where(scores >= 0, 1.0, -1.0))  # d(score of the predicted class)/dA
    weights = jnp.mean(grads, axis=(1, 2), keepdims=True)
    cam = jax.nn.relu(jnp.sum(weights * acts, axis=-1)).astype(jnp.float32)
    return jax.image.resize(cam, images.shape, "bilinear"), scores


def classifier_score(model: Classifier, w: MemberWeights, images: jnp.ndarray) -> jnp.ndarray:
    """s for float images [B, H, W] in 0..255, through the whole classifier (inference mode)."""
    logits = model.apply({"params": w.params, "batch_stats": w.batch_stats},
                         normalize(images, w.pixel_mean, w.pixel_scale), train=False)
    logits = logits.astype(jnp.float32)
    return logits[:, 1] - logits[:, 0]


def integrated_gradients(model: Classifier, w: MemberWeights, images: jnp.ndarray, steps: int
                         ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """(signed attributions [B, H, W], s(images) [B], s(black) [B]); black baseline.

    Completeness: attributions sum to about s(images) - s(black) (closer with more steps).
    """
    grad = jax.grad(lambda im: jnp.sum(classifier_score(model, w, im)))
    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps
    mean_grad = jnp.mean(jax.lax.map(lambda a: grad(a * images), alphas), axis=0)
    return (images * mean_grad, classifier_score(model, w, images),
            classifier_score(model, w, jnp.zeros_like(images)))


def make_saliency(model: Classifier, method: str, steps: int = 32
                  ) -> Callable[[MemberWeights, Examples, DevicePool], dict[str, jnp.ndarray]]:
    """Per-member fn(weights, examples, pool) -> {'maps' [B, H, W] >= 0, 'score' [B]}."""
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; expected one of {METHODS}")

    def saliency(w: MemberWeights, ex: Examples, pool: DevicePool):
        images, _ = gather(pool, ex)
        if method == "gradcam":
            maps, score = gradcam(model, w, images)
        else:
            attr, score, _ = integrated_gradients(model, w, images, steps)
            maps = jnp.abs(attr)
        return {"maps": maps, "score": score}

    return saliency


def tag_region(config: ml_collections.ConfigDict, image_size: int) -> np.ndarray | None:
    """bool [S, S]: the pixels of the tag's box at the model's image size; None if no tag.

    The box of `confounders.tag_box` (the study's letter, position and the dataset's tag_scale:
    config.data_options.tag_scale, else the dataset builder's default) at the 1024 px reference,
    scaled to `image_size`; a pixel is inside when it overlaps the box.
    """
    if not experiments.get(config.experiment).tag_box:
        return None
    from sourcematters_jax.data.experiment import BUILDERS

    options = config.data_options.to_dict()
    scale = float(options.get("tag_scale", BUILDERS[config.dataset].DEFAULTS.get("tag_scale", 1.0)))
    ref = confounders.REFERENCE_SIZE
    left, top, right, bottom = (v * image_size / ref for v in confounders.tag_box((ref, ref),
                                                                                 scale=scale))
    mask = np.zeros((image_size, image_size), bool)
    mask[int(np.floor(top)):int(np.ceil(bottom)), int(np.floor(left)):int(np.ceil(right))] = True
    return mask


def common_test_images(test_indices: Sequence[np.ndarray], labels: np.ndarray, n: int
                       ) -> np.ndarray:
    """n pool indices in every member's clean test set, positives and negatives alternating."""
    common = np.asarray(sorted(set.intersection(*(set(map(int, t)) for t in test_indices))), int)
    if len(common) == 0:
        raise ReuseInputError("the chosen members share no test image (different folds and "
                              "datasets?); choose members with a common fold")
    pos, neg = common[labels[common] == 1], common[labels[common] == 0]
    order = [x for pair in zip(pos, neg) for x in pair]
    order += [x for x in common if x not in set(order)]
    return np.asarray(order[:n], np.int32)


def examples_for(indices: np.ndarray, num_variants: int, num_members: int) -> Examples:
    """Every image clean, then (if the pool has one) confounded; the same for every member."""
    conf = np.repeat(np.arange(min(num_variants, 2)) == CONFOUNDED, len(indices))
    idx = np.tile(indices, min(num_variants, 2))
    one = Examples(indices=idx.astype(np.int32), confounded=conf, mask=np.ones(len(idx), bool))
    return jax.tree.map(lambda a: np.repeat(a[None], num_members, axis=0), one)


def compute(members: Sequence[LoadedMember], config: ml_collections.ConfigDict,
            data: ExperimentData, model: Classifier, *, n_images: int, method: str,
            steps: int) -> dict[str, Any]:
    """Maps and scores of every member on shared test images (nothing is written).

    Returns {'indices' [N], 'variants' (names), 'images' uint8 [V, N, H, W], 'maps' [M, V, N, H, W],
    'score' [M, V, N], 'region' (bool [H, W] or None), 'table' (a row per member, variant, image)}.
    """
    labels = np.asarray(data.pool.labels)
    tests = [data.member_data(lm.member.p_art, lm.member.fold, lm.member.seed).test_clean.indices
             for lm in members]
    indices = common_test_images(tests, labels, n_images)
    num_variants = min(data.pool.images.shape[1], 2)
    ex = examples_for(indices, num_variants, len(members))
    out = run_members(make_saliency(model, method, steps), members, ex, data, config)
    n, size = len(indices), data.pool.images.shape[-1]
    maps = np.asarray(out["maps"], np.float64).reshape(len(members), num_variants, n, size, size)
    score = np.asarray(out["score"]).reshape(len(members), num_variants, n)
    region = tag_region(config, size)
    variants = ("clean", "confounded")[:num_variants]
    images = np.stack([data.pool.images[indices, v] for v in range(num_variants)])
    table = score_table(members, indices, labels, variants, maps, score, region, data.pool.names)
    return {"indices": indices, "variants": variants, "images": images, "maps": maps,
            "score": score, "region": region, "table": table}


def _normalised(m: np.ndarray) -> np.ndarray:
    total = m.sum(axis=(-2, -1), keepdims=True)
    return np.where(total > 0, m / np.where(total > 0, total, 1), np.nan)


def score_table(members, indices, labels, variants, maps, score, region, names) -> pd.DataFrame:
    """One row per member, variant and image: inside_fraction, area_fraction, change_vs_clean."""
    norm = _normalised(maps)  # [M, V, N, H, W]
    change = (0.5 * np.abs(norm[:, 1] - norm[:, 0]).sum(axis=(-2, -1)) if len(variants) > 1
              else np.full(norm.shape[:1] + norm.shape[2:3], np.nan))
    inside = (norm * region).sum(axis=(-2, -1)) if region is not None else None
    rows = []
    for m, lm in enumerate(members):
        for v, variant in enumerate(variants):
            for k, idx in enumerate(indices):
                rows.append({
                    "member_id": lm.member_id, "trained_on": lm.trained_on,
                    **{f: lm.row[f] for f in ("experiment", "source", "p_art", "fold", "seed")},
                    "pool_index": int(idx), "name": names[idx], "label": int(labels[idx]),
                    "variant": variant, "score": float(score[m, v, k]),
                    "region": "tag_box" if region is not None else "none",
                    "inside_fraction": float(inside[m, v, k]) if inside is not None else np.nan,
                    "area_fraction": float(region.mean()) if region is not None else np.nan,
                    "change_vs_clean": float(change[m, k]),
                })
    return pd.DataFrame(rows)


def member_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per member: mean inside_fraction on clean and confounded images, area, change_vs_clean."""
    keys = ["member_id", "trained_on", "experiment", "source", "p_art", "fold", "seed", "region"]
    wide = table.pivot_table(index=keys, columns="variant", values="inside_fraction",
                             aggfunc="mean", dropna=False)
    out = table.groupby(keys, sort=False).agg(area_fraction=("area_fraction", "first"),
                                              change_vs_clean=("change_vs_clean", "mean"),
                                              n_images=("pool_index", "nunique"))
    for variant in ("clean", "confounded"):
        out[f"inside_{variant}"] = wide[variant] if variant in wide else np.nan
    return out.reset_index()[keys + ["n_images", "inside_clean", "inside_confounded",
                                     "area_fraction", "change_vs_clean"]]


def write(result: dict[str, Any], summary: pd.DataFrame, members: Sequence[LoadedMember],
          method: str, tmp) -> None:
    """saliency_grid.{png,pdf}, scores.csv, scores/<member_id>.csv, summary.csv, maps.npz."""
    from sourcematters_jax.reuse import saliency_figure

    saliency_figure.save(saliency_figure.grid(result, members, method), tmp / "saliency_grid")
    result["table"].to_csv(tmp / "scores.csv", index=False)
    summary.to_csv(tmp / "summary.csv", index=False)
    (tmp / "scores").mkdir()
    for member_id, rows in result["table"].groupby("member_id", sort=False):
        rows.to_csv(tmp / "scores" / f"{member_id}.csv", index=False)
    np.savez_compressed(tmp / "maps.npz", maps=result["maps"].astype(np.float32),
                        images=result["images"], pool_index=result["indices"],
                        member_id=np.asarray([lm.member_id for lm in members]))
