"""docs/figures/ct_noise_levels.png: the CT noise confounder on a real CT slice at each dose.

    python scripts/ct_noise_figure.py [--out docs/figures/ct_noise_levels.png]

The slice is pydicom's CT_small.dcm (a 128 px thoracic slice), windowed to the crops' uint8 grey
as `lidc.load_crop` does, then `confounders.ct_noise` with lidc_nodules' geometry defaults at
twice the base dose, the base (2e6 photons, every crop) and confounded (1e6) doses of
configs/ct_noise.py, and half the confounded dose. Each panel's title gives the noise SD in HU
on the paraspinal muscle region outlined in the clean panel (tests/test_prepare_lidc_real_ct.py
checks the same numbers).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from sourcematters_jax.data import confounders, lidc  # noqa: E402

MUSCLE = (slice(95, 118), slice(88, 120))  # as tests/test_prepare_lidc_real_ct.py
BASE, CONFOUNDED = lidc.LidcNodules.DEFAULTS["ct_photons_base"], lidc.LidcNodules.DEFAULTS["ct_photons_confounded"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "docs" / "figures" / "ct_noise_levels.png",
                        help="the PNG to write")
    args = parser.parse_args(argv)
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    lo, hi = confounders.DISP_WINDOW
    grey = lidc.window_hu(hu)  # what lidc.load_crop makes of a crop in HU
    geometry = {k: lidc.LidcNodules.DEFAULTS[k] for k in ("pixel_size_cm", "n_angles")}
    panels = [("clean", grey)]
    names = {2 * BASE: "", BASE: " (base)", CONFOUNDED: " (confounded)", CONFOUNDED / 2: ""}
    for i, (photons, label) in enumerate(names.items()):
        noisy = confounders.ct_noise(grey, photons, np.random.default_rng(i), **geometry)
        sd = (noisy[MUSCLE].astype(float) - grey[MUSCLE]).std() * (hi - lo) / 255.0
        panels.append((f"{photons:.0e} photons{label}\nnoise SD {sd:.0f} HU", noisy))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.6))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    r, c = MUSCLE
    axes[0].add_patch(plt.Rectangle((c.start - 0.5, r.start - 0.5), c.stop - c.start, r.stop - r.start,
                                    fill=False, edgecolor="tab:orange", linewidth=1))
    fig.suptitle("ct_noise on pydicom's CT_small.dcm (window -1200..800 HU)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
