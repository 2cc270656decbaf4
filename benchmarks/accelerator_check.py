r"""The accelerator check: one command, a few minutes on one GPU, JSON + markdown table.

    python -m benchmarks.accelerator_check --json benchmarks/results/DATE_h200_check.json \
        --table benchmarks/results/DATE_h200_check.md            # one H100/H200: <= 8 min
    python -m benchmarks.accelerator_check --tiny --platform cpu  # the same cells, tiny, on CPU

Cells, each its own subprocess with a deadline (the rest of --budget-s, at most --cell-timeout),
in order of importance, so a short budget still measures the essentials:

1. matmul peaks: bfloat16, float32 at the default precision (TF32 on Ampere and later NVIDIA
   GPUs), float32 'highest';
2. one 90-member tag-grid program (configs/tag.py defaults: strategy auto -> 'groups', G and
   remat from the memory estimate) on synthetic images at 224 px for 3 epochs, through
   `train_and_evaluate`: wall time, and the projected time of the full 30-epoch grid (its
   deadline is 1.5 x --cell-timeout);
3. one ResNet50 member at 224 px ('loop'), the study's full-set batch 225 and batch 32, float32
   and bfloat16: member-img/s, MFU against the chip's peak (`PEAK_TFLOPS`), compile time, peak
   memory (`device.memory_stats()`), XLA's memory analysis;
4. strategies at the paper's sizes (batch 225, bfloat16): 'groups' (8 members, G = 2, one
   program), vmap of G = 2/4/8 members, 'loop' over 8 members, plus float32 'highest' and
   bfloat16 with remat.

MFU = XLA's cost-analysis FLOPs of one member's step x members / step time / the chip's peak for
the step's precision (bf16; float32 default = TF32 on NVIDIA; 'highest' = fp32). On CPU, or a chip
missing from the table, the measured matmul peak of the same precision is the denominator.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import shlex
import sys
import time
from typing import Any, Sequence

from benchmarks.common import child_env, run_child

SCHEMA = "sourcematters-accelerator-check/1"
# The grid cell compiles init, step, epoch end and predict and trains 3 + 3 + 1 epochs.
GRID_TIMEOUT_FACTOR = 1.5
# Dense peak TFLOP/s per precision (vendor data sheets; None = no such mode). Keys are matched
# as substrings of jax's device_kind, first match wins.
PEAK_TFLOPS = {
    "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
    "TPU v5 lite": {"bf16": 197.0, "tf32": None, "fp32": None},
    "TPU v5e": {"bf16": 197.0, "tf32": None, "fp32": None},
    "TPU v5": {"bf16": 459.0, "tf32": None, "fp32": None},
    "TPU v4": {"bf16": 275.0, "tf32": None, "fp32": None},
}


def chip_peak(device_kind: str, precision: str) -> float | None:
    """The table's peak TFLOP/s of `device_kind` for 'bf16' | 'tf32' | 'fp32', or None."""
    for key, peaks in PEAK_TFLOPS.items():
        if key.lower() in (device_kind or "").lower():
            return peaks.get(precision)
    return None


def step_precision(cell: dict[str, Any], platform: str) -> str:
    """The precision a step's matmuls run at: bf16, tf32 (GPU float32 default) or fp32."""
    if cell.get("dtype") == "bfloat16":
        return "bf16"
    if cell.get("matmul_precision", "default") == "highest":
        return "fp32"
    return {"gpu": "tf32", "tpu": "bf16"}.get(platform, "fp32")


def plan_cells(tiny: bool) -> list[dict[str, Any]]:
    """Every cell, in run order."""
    if tiny:
        model, size, small, full, members, steps = "tiny", 32, 8, 16, (2, 4), (1, 2)
        grid = {"kind": "grid", "image_size": 32, "epochs": 2, "arg": ":p_art=0+1,fold=1",
                "overrides": ["model.stage_sizes=(1,1)", "model.width=4"], "pool_images": 120}
        matmul = {"kind": "matmul", "n": 128, "repeats": 3}
    else:
        model, size, small, full, members, steps = "resnet50", 224, 32, 225, (2, 4, 8), (2, 5)
        grid = {"kind": "grid", "image_size": 224, "epochs": 3}
        matmul = {"kind": "matmul", "n": 8192, "repeats": 10}
    warmup, timed = steps

    def step(name: str, **kw: Any) -> dict[str, Any]:
        spec = {"kind": "step", "model": model, "image_size": size, "batch_size": full,
                "members": 1, "strategy": "loop", "devices": 1, "warmup": warmup,
                "steps": timed, "dtype": "float32", **kw}
        return {"name": name, **spec}

    big = members[-1]
    # The grid program first after the peaks: it is the claim, and it needs the most time.
    cells = [{"name": "matmul peaks", **matmul}, {"name": "tag grid program", **grid}]
    for batch in (full, small):
        for dtype in ("float32", "bfloat16"):
            cells.append(step(f"1 member, batch {batch}, {dtype}", batch_size=batch, dtype=dtype))
    cells.append(step(f"groups: {big} members, G=2, one program", members=big,
                      strategy="groups", group_size=2, dtype="bfloat16"))
    for g in members:
        cells.append(step(f"vmap: {g} members", members=g, strategy="vmap", dtype="bfloat16"))
    cells.append(step(f"loop: {big} members", members=big, strategy="loop", dtype="bfloat16"))
    cells.append(step("1 member, float32 highest", matmul_precision="highest"))
    cells.append(step("1 member, bfloat16, remat", dtype="bfloat16", remat=True))
    return cells


def derive(report: dict[str, Any]) -> None:
    """Add MFU and per-member throughput to step cells (in place)."""
    platform = report.get("platform")
    peaks = next((c for c in report["cells"] if c.get("kind") == "matmul" and "error" not in c), {})
    measured = {"bf16": peaks.get("bf16_tflops"), "tf32": peaks.get("f32_default_tflops"),
                "fp32": peaks.get("f32_highest_tflops")}
    for cell in report["cells"]:
        if cell.get("kind") != "step" or "error" in cell:
            continue
        precision = step_precision(cell, platform)
        peak = chip_peak(cell.get("device_kind", ""), precision)
        source = "chip table"
        if peak is None:
            peak, source = measured.get(precision), "measured matmul"
        flops = cell.get("flops_member_step")
        cell["precision"] = precision
        if flops and peak:
            achieved = cell["members"] * flops / cell["step_median_s"] / 1e12
            cell["tflops"] = round(achieved, 3)
            cell["mfu"] = round(achieved / peak, 4)
            cell["mfu_peak"] = f"{peak} TFLOP/s ({source}, {precision})"


def table(report: dict[str, Any]) -> str:
    lines = [f"# Accelerator check: {report['platform']} ({report.get('device_kind', '?')})", "",
             f"`{report['command']}`, started {report['started']}, {report['wall_s']} s.", ""]
    for cell in report["cells"]:
        if cell.get("kind") == "matmul" and "error" not in cell:
            lines.append(f"Matmul peaks (n = {cell['n']}): bf16 {cell['bf16_tflops']}, float32 "
                         f"default {cell['f32_default_tflops']}, float32 highest "
                         f"{cell['f32_highest_tflops']} TFLOP/s.")
            lines.append("")
    lines += ["| cell | M | batch | precision | member-img/s | MFU | compile s | peak GiB | XLA temp GiB |",
              "|---|---|---|---|---|---|---|---|---|"]
    gib = 2**30
    for cell in report["cells"]:
        if cell.get("kind") != "step":
            continue
        if "error" in cell:
            lines.append(f"| {cell['name']} | {cell['members']} | {cell['batch_size']} | - | "
                         f"error: {cell['error'][:80]} | | | | |")
            continue
        peak = cell.get("peak_bytes_in_use")
        temp = (cell.get("xla_memory_bytes") or {}).get("temp_size_in_bytes")
        mfu = "-" if "mfu" not in cell else f"{cell['mfu']:.1%}"
        lines.append(
            f"| {cell['name']} | {cell['members']} | {cell['batch_size']} | "
            f"{cell.get('precision', '-')} | {cell.get('member_images_per_s', '-')} | "
            f"{mfu} | "
            f"{cell.get('compile_s', '-')} | {'-' if peak is None else round(peak / gib, 2)} | "
            f"{'-' if temp is None else round(temp / gib, 2)} |")
    for cell in report["cells"]:
        if cell.get("kind") == "grid":
            lines.append("")
            if "error" in cell:
                lines.append(f"Tag grid program: error: {cell['error']}")
                continue
            lines.append(
                f"Tag grid program: {cell['members']} members, {cell['epochs']} epochs in "
                f"{cell['wall_s']} s (compile {cell['compile_s']} s, fixed {cell['fixed_s']} s, "
                f"{cell['per_epoch_s']} s/epoch; {cell['program']}); projected full grid "
                f"({cell['full_epochs']} epochs): {cell['projected_full_grid_s']} s.")
    skipped = [c["name"] for c in report["cells"] if c.get("skipped")]
    if skipped:
        lines += ["", "Not run (budget): " + ", ".join(skipped)]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true",
                   help="tiny ResNet at 32 px, a 6-member grid: the same cells in about a minute")
    p.add_argument("--platform", choices=("auto", "cpu", "gpu", "tpu"), default="auto",
                   help="JAX_PLATFORMS of the children (auto = JAX's choice)")
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="stop starting cells after this many seconds (cells in importance order)")
    p.add_argument("--cell-timeout", type=float, default=240.0, help="deadline of one cell")
    p.add_argument("--cells", default="all",
                   help="comma-separated cell numbers to run (0 = matmul peaks; see the list "
                        "printed at the start), or 'all'")
    p.add_argument("--json", type=pathlib.Path, help="write the report here")
    p.add_argument("--table", type=pathlib.Path, help="write the markdown table here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, run=run_child) -> dict[str, Any]:
    args = parse_args(argv)
    env = child_env("", platform=args.platform)
    start = time.monotonic()
    report: dict[str, Any] = {
        "schema": SCHEMA, "tiny": args.tiny,
        "command": "python -m benchmarks.accelerator_check " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cells": []}
    cells = plan_cells(args.tiny)
    chosen = set(range(len(cells))) if args.cells == "all" else {
        int(x) for x in args.cells.split(",") if x.strip()}
    for i, cell in enumerate(cells):
        print(f"cell {i}: {cell['name']}{'' if i in chosen else ' (not chosen)'}", flush=True)
    for i, cell in enumerate(cells):
        left = args.budget_s - (time.monotonic() - start)
        if i not in chosen:
            continue
        if left < 10:
            report["cells"].append({**cell, "skipped": True})
            continue
        spec = {k: v for k, v in cell.items() if k != "name"}
        timeout = args.cell_timeout * (GRID_TIMEOUT_FACTOR if cell["kind"] == "grid" else 1)
        result = run("accel_cells", spec, env, min(timeout, left))
        report["cells"].append({**cell, **result})
        print(f"{cell['name']}: {json.dumps(result)[:300]}", flush=True)
    ran = [c for c in report["cells"] if "platform" in c]
    report["platform"] = ran[0]["platform"] if ran else args.platform
    report["device_kind"] = ran[0].get("device_kind") if ran else None
    report["wall_s"] = round(time.monotonic() - start, 1)
    derive(report)
    text = table(report)
    print(text)
    print(f"ran on platform: {report['platform']} ({report['device_kind']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text)
    return report


if __name__ == "__main__":
    main()
