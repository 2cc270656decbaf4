"""Derived numbers (ratios, utilisation) and the readable table of a member_throughput run."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def _fmt(value: Any, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def one_by_one_rate(cells: Sequence[Mapping[str, Any]], members: int) -> float | None:
    """member-images/s of M members one after another on one device ('loop', 1 device)."""
    loops = [c for c in cells if c.get("strategy") == "loop" and c.get("devices") == 1
             and "error" not in c]
    same = [c for c in loops if c["members"] == members]
    if same:
        return same[0]["member_images_per_s"]
    # A loop's per-member rate does not depend on M: fall back to any member count.
    return loops[0]["images_per_s_per_member"] * members if loops else None


def derive(report: dict[str, Any]) -> None:
    """Add ratios and utilisation to every cell of `report` (in place), and a summary."""
    cells = report["cells"]
    keras = report.get("keras") or {}
    keras_rate = keras.get("member_images_per_s") if "error" not in keras else None
    peak = (report.get("matmul_peak") or {}).get("peak_gflops_per_s")
    member_flops = next((c["flops_member_step"] for c in cells
                         if c.get("flops_member_step") and "error" not in c), None)
    for c in cells:
        if "error" in c:
            continue
        base = one_by_one_rate(cells, c["members"])
        c["vs_one_by_one"] = round(c["member_images_per_s"] / base, 3) if base else None
        c["vs_keras"] = round(c["member_images_per_s"] / keras_rate, 3) if keras_rate else None
        gflops = (c.get("useful_flops_per_s") or 0) / 1e9
        c["useful_gflops_per_s"] = round(gflops, 2) if gflops else None
        c["utilisation"] = round(gflops / peak, 4) if gflops and peak else None
    if keras_rate and member_flops:
        # Same network, input size and batch: the JAX single-member step's FLOPs.
        keras["useful_gflops_per_s"] = round(member_flops / keras["step_median_s"] / 1e9, 2)
        keras["utilisation"] = round(keras["useful_gflops_per_s"] / peak, 4) if peak else None
    ok = [c for c in cells if "error" not in c]
    best = max(ok, key=lambda c: c["member_images_per_s"], default=None)
    by_members = {}
    for c in ok:
        m = str(c["members"])
        if m not in by_members or c["member_images_per_s"] > by_members[m]["member_images_per_s"]:
            by_members[m] = {k: c[k] for k in ("strategy", "devices", "member_images_per_s",
                                                "vs_one_by_one", "vs_keras")}
    report["summary"] = {
        "best": None if best is None else {k: best.get(k) for k in (
            "strategy", "devices", "members", "member_images_per_s", "vs_one_by_one",
            "vs_keras", "utilisation")},
        "best_per_member_count": by_members,
        "keras_images_per_s": keras_rate,
        "flops_member_step": member_flops,
        "matmul_peak_gflops_per_s": peak,
    }


def table(report: Mapping[str, Any]) -> str:
    """A markdown table of every cell plus the peer row, with a header naming the conditions."""
    cfg, load = report["config"], report["load"]
    peak = report.get("matmul_peak") or {}
    lines = [
        f"## member throughput: {cfg['model']}, {cfg['image_size']} px, batch "
        f"{cfg['batch_size']}, {cfg['steps']} timed steps after {cfg['warmup']} warm-up "
        f"({report['host']['cpu']}, {report['host']['cores']} cores)",
        "",
        f"Load average (1/5/15 min) at start {load['at_start']}, at end {load['at_end']}, "
        f"highest before a cell {load['max_1min_before_cell']}"
        + ("" if load.get("quiet") else f" - BUSY MACHINE: above the {load['max_load']} asked "
           "for; numbers are lower bounds, ratios measured side by side"),
        f"float32 matmul peak ({peak.get('size', '?')}^2): numpy {peak.get('numpy_gflops_per_s')}"
        f" GFLOP/s, XLA {peak.get('jax_gflops_per_s')} GFLOP/s; useful FLOPs per member step "
        f"(XLA cost analysis): {_fmt((report['summary'].get('flops_member_step') or 0) / 1e9, '.4g')} G",
        "",
        "| strategy | devices | M | member-img/s | img/s per member | x one-by-one | x Keras "
        "| compile s | step s | CPU s/step | GFLOP/s | util | peak RSS MiB | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keras = report.get("keras")
    if keras:
        if "error" in keras:
            lines.append(f"| keras (peer) | 1 | 1 | error: {keras['error'][:80]} ||||||||||")
        else:
            lines.append(
                f"| {keras['strategy']} (peer) | 1 | 1 | {keras['member_images_per_s']:.2f} | "
                f"{keras['images_per_s_per_member']:.2f} | - | 1.00 | {keras['compile_s']:.1f} | "
                f"{keras['step_median_s']:.3f} | {_fmt(keras.get('step_cpu_median_s'), '.3f')} | {_fmt(keras.get('useful_gflops_per_s'), '.1f')} | "
                f"{_fmt(keras.get('utilisation'), '.1%')} | {keras['peak_rss_mib']:.0f} | "
                f"{keras['load_before'][0]:.2f} |")
    for c in report["cells"]:
        head = f"| {c['strategy']} | {c['devices']} | {c['members']} |"
        if "error" in c:
            lines.append(f"{head} error: {c['error'][:100]} |||||||||||")
            continue
        lines.append(
            f"{head} {c['member_images_per_s']:.2f} | {c['images_per_s_per_member']:.2f} | "
            f"{_fmt(c.get('vs_one_by_one'))} | {_fmt(c.get('vs_keras'))} | {c['compile_s']:.1f} | "
            f"{c['step_median_s']:.3f} | {_fmt(c.get('step_cpu_median_s'), '.3f')} | {_fmt(c.get('useful_gflops_per_s'), '.1f')} | "
            f"{_fmt(c.get('utilisation'), '.1%')} | {c['peak_rss_mib']:.0f} | "
            f"{c['load_before'][0]:.2f} |")
    for s in report.get("skipped", []):
        lines.append(f"| {s['strategy']} | {s['devices']} | {s['members']} | skipped: "
                     f"{s['reason']} |||||||||||")
    best = report["summary"].get("best")
    if best:
        lines += ["", f"Fastest: {best['strategy']} over {best['devices']} device(s), "
                      f"M={best['members']}: {best['member_images_per_s']:.2f} member-img/s "
                      f"({_fmt(best.get('vs_one_by_one'))}x one-by-one, "
                      f"{_fmt(best.get('vs_keras'))}x Keras)."]
    lines += ["", "member-img/s = M x batch / median step time; x one-by-one: vs 'loop' on 1 "
              "device with the same M; x Keras: vs the one-model Keras row; CPU s/step: CPU time of "
              "all the process's threads per step (the work, less sensitive to other load); GFLOP/s: useful "
              "(M x one member's step FLOPs) per second; util: GFLOP/s / matmul peak."]
    return "\n".join(lines)
