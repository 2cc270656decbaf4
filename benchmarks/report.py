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


COLUMNS = ("strategy", "devices", "M", "member-img/s", "img/s per member", "x one-by-one",
           "x Keras", "compile s", "step s", "CPU s/step", "GFLOP/s", "util", "peak RSS MiB",
           "others' cores")
LEGEND = ("member-img/s = M x batch / median step time; x one-by-one: vs 'loop' on 1 device with "
          "the same M; x Keras: vs the one-model Keras row; CPU s/step: CPU time of all the "
          "process's threads per step (the work done; less sensitive to other load than wall "
          "time); GFLOP/s: useful (M x one member's step FLOPs) per second; util: GFLOP/s / "
          "matmul peak; others' cores: cores kept busy by OTHER processes while the cell ran "
          "(machine busy time minus the cell's own CPU time, averaged over its life).")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _measured_row(name: str, c: Mapping[str, Any], vs_one: Any, vs_keras: Any) -> str:
    return _row([
        name, str(c.get("devices", 1)), str(c.get("members", 1)),
        f"{c['member_images_per_s']:.2f}", f"{c['images_per_s_per_member']:.2f}",
        _fmt(vs_one), _fmt(vs_keras), _fmt(c.get("compile_s"), ".1f"),
        f"{c['step_median_s']:.3f}", _fmt(c.get("step_cpu_median_s"), ".3f"),
        _fmt(c.get("useful_gflops_per_s"), ".1f"), _fmt(c.get("utilisation"), ".1%"),
        _fmt(c.get("peak_rss_mib"), ".0f"), _fmt(c.get("others_busy_cores")),
    ])


def _note_row(name: str, devices: Any, members: Any, note: str) -> str:
    return _row([name, str(devices), str(members), note] + [""] * (len(COLUMNS) - 4))


def table(report: Mapping[str, Any]) -> str:
    """A markdown table of every cell plus the peer row, with a header naming the conditions."""
    cfg, load, host = report["config"], report["load"], report["host"]
    peak = report.get("matmul_peak") or {}
    flops = (report["summary"].get("flops_member_step") or 0) / 1e9
    others = [c.get("others_busy_cores") for c in report["cells"] + [report.get("keras") or {}]]
    others = [x for x in others if x is not None]
    busy = ("" if load.get("quiet") else
            f" - BUSY MACHINE (above the {load['max_load']} asked for): absolute numbers are "
            "lower bounds; compare rows by their ratios and CPU s/step")
    lines = [
        f"## member throughput: {cfg['model']}, {cfg['image_size']} px, batch "
        f"{cfg['batch_size']}, {cfg['steps']} timed steps after {cfg['warmup']} warm-up "
        f"({host['cpu']}, {host['cores']} cores)",
        "",
        f"Load average (1/5/15 min) at start {load['at_start']}, at end {load['at_end']}, "
        f"highest before a cell {load['max_1min_before_cell']}; other processes kept "
        f"{min(others, default=0):.2f}-{max(others, default=0):.2f} cores busy during the "
        f"cells{busy}.",
        f"float32 matmul peak ({peak.get('size', '?')}^2): numpy "
        f"{peak.get('numpy_gflops_per_s')} GFLOP/s, XLA {peak.get('jax_gflops_per_s')} GFLOP/s; "
        f"useful FLOPs per member step (XLA cost analysis): {flops:.4g} G.",
        "",
        _row(COLUMNS),
        _row(["---"] * len(COLUMNS)),
    ]
    for peer in [report.get("keras")] + list(report.get("keras_extra") or []):
        if not peer:
            continue
        name = f"{peer.get('strategy', 'keras')} (peer)"
        if "error" in peer:
            lines.append(_note_row(name, 1, 1, "error: " + peer["error"][:100]))
        else:
            vs_keras = 1.0 if peer is report.get("keras") else None
            lines.append(_measured_row(name, peer, None, vs_keras))
    for c in report["cells"]:
        if "error" in c:
            lines.append(_note_row(c["strategy"], c["devices"], c["members"],
                                   "error: " + c["error"][:100]))
        else:
            lines.append(_measured_row(c["strategy"], c, c.get("vs_one_by_one"),
                                       c.get("vs_keras")))
    for s in report.get("skipped", []):
        lines.append(_note_row(s["strategy"], s["devices"], s["members"],
                               "skipped: " + s["reason"]))
    best = report["summary"].get("best")
    if best:
        lines += ["", f"Fastest: {best['strategy']} over {best['devices']} device(s), "
                      f"M={best['members']}: {best['member_images_per_s']:.2f} member-img/s "
                      f"({_fmt(best.get('vs_one_by_one'))}x one-by-one, "
                      f"{_fmt(best.get('vs_keras'))}x Keras)."]
    lines += ["", LEGEND]
    return "\n".join(lines)
