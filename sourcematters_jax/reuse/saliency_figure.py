"""The saliency grid a person reads: one row per member, each test image clean | confounded."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from sourcematters_jax.reuse.members import LoadedMember  # noqa: E402

METHOD_TITLES = {"gradcam": "Grad-CAM (last conv stage)",
                 "integrated_gradients": "integrated gradients (|attribution|, black baseline)"}


def grid(result: dict[str, Any], members: Sequence[LoadedMember], method: str,
         cell_inches: float = 1.25) -> plt.Figure:
    """A figure of every member's maps over the images (each map scaled to its own maximum).

    The tag's box (when the confounder has one) is outlined; each row's label gives the member
    and its mean attribution inside the box on confounded images (or the clean-vs-confounded
    change for global confounders).
    """
    images, maps, region = result["images"], result["maps"], result["region"]
    variants, indices = result["variants"], result["indices"]
    n_var, n_img = images.shape[:2]
    summary = result["table"].groupby(["member_id", "variant"])
    fig, axes = plt.subplots(len(members), n_var * n_img, squeeze=False,
                             figsize=(cell_inches * n_var * n_img,
                                      cell_inches * len(members) + 0.6))
    labels = result["table"].drop_duplicates("pool_index").set_index("pool_index")["label"]
    for m, lm in enumerate(members):
        for k in range(n_img):
            for v in range(n_var):
                ax = axes[m, k * n_var + v]
                ax.imshow(images[v, k], cmap="gray", vmin=0, vmax=255)
                heat = maps[m, v, k]
                top = heat.max()
                ax.imshow(heat / top if top > 0 else heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
                if region is not None:
                    ys, xs = np.nonzero(region)
                    ax.add_patch(Rectangle((xs.min() - 0.5, ys.min() - 0.5), np.ptp(xs) + 1,
                                           np.ptp(ys) + 1, fill=False, edgecolor="white",
                                           linestyle="--", linewidth=0.8))
                ax.set_xticks([])
                ax.set_yticks([])
                if m == 0:
                    label = "pos" if labels[int(indices[k])] == 1 else "neg"
                    ax.set_title(f"#{int(indices[k])} {label}\n{variants[v]}", fontsize=7)
        conf = variants[-1]
        col = "inside_fraction" if region is not None else "change_vs_clean"
        value = summary.get_group((lm.member_id, conf))[col].mean()
        name = "in tag box" if region is not None else "change vs clean"
        axes[m, 0].set_ylabel(f"{lm.member_id}\n{name} {value:.2f}", fontsize=6, rotation=0,
                              ha="right", va="center")
    fig.suptitle(f"{METHOD_TITLES[method]}: where the members look", fontsize=9)
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, path_stem) -> None:
    """PNG (150 dpi) and PDF next to each other; closes the figure."""
    try:
        fig.savefig(f"{path_stem}.png", dpi=150)
        fig.savefig(f"{path_stem}.pdf")
    finally:
        plt.close(fig)
