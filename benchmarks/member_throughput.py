r"""Training throughput of M members per execution strategy and device layout, with peers.

  python -m benchmarks.member_throughput --model resnet50 --image-size 128 --batch-size 16 \
      --members 1,2,4 --json /tmp/throughput.json
  python -m benchmarks.member_throughput --model tiny --image-size 64 --batch-size 8 \
      --members 1,2 --json /tmp/small.json            # the few-minute check

Measures, each in its own child process (fresh XLA device layout, thread pools and peak-RSS
counter):
  * the project's M-member training step (train.step.make_member_train_step lifted by
    train.packing.make_runner(strategy).lift) for every strategy ('vmap', 'lax_map', 'loop' =
    M single-member programs one after another) x member count x host-device layout
    (--devices 1,all: `--xla_force_host_platform_device_count`); steady-state member-images/s
    from the median of --steps timed steps after --warmup calls, compile time separately;
  * the peer row: the study's tf.keras ResNet50 + Dropout + Dense(softmax), Adam, one model;
  * a float32 matmul peak (numpy and XLA), so utilisation = achieved useful FLOP/s / peak, with
    FLOPs from XLA's cost analysis of one member's step.
Before measuring it waits (up to --wait-timeout s) for the 1-minute load average to drop below
--max-load, and records the load before and after every child. Prints a markdown table; --json
writes everything (schema SCHEMA). Results and their reading: docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import shlex
import sys
from typing import Any, Sequence

from benchmarks import report as report_lib
from benchmarks.common import (child_env, load_average, run_child, wait_for_quiet,
                               wait_until_idle)
from sourcematters_jax.host_devices import available_cores

SCHEMA = "sourcematters-jax/member_throughput/v1"
STRATEGIES = ("vmap", "lax_map", "loop")
MODELS = ("resnet50", "tiny")


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _device_layouts(text: str, platform: str = "cpu") -> list[int]:
    """'1,all' -> device counts; 'all' is every core on CPU (host devices), and 0 (= every
    device the child sees) on an accelerator."""
    cores = available_cores() if platform == "cpu" else 0
    out = []
    for item in text.split(","):
        n = cores if item.strip() == "all" else int(item)
        if n == 0 and item.strip() == "all":
            out.append(n)
            continue
        if n < 1:
            raise argparse.ArgumentTypeError(f"device count must be >= 1, got {item!r}")
        if n not in out:
            out.append(n)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="resnet50")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--members", type=_int_list, default=[1, 2, 4], help="e.g. 1,2,4")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help="comma-separated subset of vmap,lax_map,loop")
    p.add_argument("--platform", choices=("cpu", "gpu", "tpu"), default="cpu",
                   help="JAX platform of the children (the Keras peer runs on CPU only, so it is "
                        "skipped off CPU)")
    p.add_argument("--devices", default="1,all",
                   help="device layouts, e.g. '1,all' or '1,2' (all = host devices, one per core, "
                        "on CPU; every accelerator otherwise)")
    p.add_argument("--max-members", action="append", default=[], metavar="STRATEGY=N",
                   help="skip cells of STRATEGY with more than N members (repeatable), e.g. "
                        "lax_map=1: it is pathologically slow on XLA:CPU")
    p.add_argument("--steps", type=int, default=3, help="timed steps per cell")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (compile + 1)")
    p.add_argument("--keras", choices=("graph", "xla", "both", "none"), default="graph",
                   help="peer rows: tf.keras as the study ran it (graph), XLA-compiled, both")
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for every JAX child")
    p.add_argument("--max-load", type=float, default=1.5)
    p.add_argument("--wait-timeout", type=float, default=900.0,
                   help="seconds to wait for the load to drop (0 = do not wait)")
    p.add_argument("--max-busy", type=float, default=0.25,
                   help="before each cell, wait until under this fraction of the cores is busy")
    p.add_argument("--cell-wait", type=float, default=300.0,
                   help="seconds to wait for that before each cell (0 = do not wait)")
    p.add_argument("--cell-timeout", type=float, default=1800.0)
    p.add_argument("--json", type=pathlib.Path, help="write the full results here")
    p.add_argument("--table", type=pathlib.Path, help="also write the markdown table here")
    args = p.parse_args(argv)
    try:
        args.devices = _device_layouts(args.devices, args.platform)
    except (ValueError, argparse.ArgumentTypeError) as e:
        p.error(f"--devices: {e}")
    if args.platform != "cpu":
        args.keras = "none"
    args.strategies = [s for s in args.strategies.split(",") if s]
    bad = sorted(set(args.strategies) - set(STRATEGIES))
    if bad:
        p.error(f"unknown strategies {bad}; choose from {STRATEGIES}")
    if args.warmup < 1 or args.steps < 1 or min(args.members) < 1:
        p.error("--warmup, --steps and every member count must be >= 1")
    try:
        args.max_members = {k: int(v) for k, v in (x.split("=") for x in args.max_members)}
    except ValueError:
        p.error("--max-members takes STRATEGY=N")
    return args


def plan_cells(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cells to run, skipped cells with the reason); cells in run order: M, layout, strategy."""
    cells, skipped = [], []
    for devices in args.devices:
        for strategy in args.strategies:
            for m in args.members:
                spec = {"model": args.model, "image_size": args.image_size,
                        "batch_size": args.batch_size, "members": m, "strategy": strategy,
                        "devices": devices, "warmup": args.warmup, "steps": args.steps}
                limit = args.max_members.get(strategy)
                if limit is not None and m > limit:
                    skipped.append({**spec, "reason": f"--max-members {strategy}={limit}"})
                elif devices > 1 and m < devices:  # 0 = all accelerators: not known here
                    reason = ("same as 1 device" if strategy == "loop"
                              else f"fewer members than devices (pads to {devices})")
                    skipped.append({**spec, "reason": reason})
                else:
                    cells.append(spec)
    # Competing strategies for the same M run back to back (less drift between them).
    order = {s: i for i, s in enumerate(args.strategies)}
    cells.sort(key=lambda c: (c["members"], c["devices"], order[c["strategy"]]))
    return cells, skipped


def host_info() -> dict[str, Any]:
    """CPU, cores, memory and package versions (without importing JAX in the parent)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "tensorflow-cpu", "tensorflow", "keras", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "cores": available_cores(), "memory_gib": mem,
            "python": platform.python_version(), "versions": versions, "hostname": platform.node()}


def _xla_flags(devices: int, extra: str) -> str:
    return f"--xla_force_host_platform_device_count={devices} {extra}".strip()


def run(args: argparse.Namespace, log=print) -> dict[str, Any]:
    """Run every child and return the report dict (schema SCHEMA)."""
    cells, skipped = plan_cells(args)
    wait = (wait_for_quiet(args.max_load, args.wait_timeout, log=log) if args.wait_timeout > 0
            else {"waited_s": 0.0, "load_at_start": load_average(),
                  "quiet": load_average()[0] < args.max_load})
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "command": "python -m benchmarks.member_throughput " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if args.argv is None else args.argv)),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": host_info(),
        "config": {k: getattr(args, k) for k in (
            "model", "image_size", "batch_size", "members", "strategies", "devices", "platform",
            "max_members",
            "steps", "warmup", "keras", "matmul_size", "xla_flags", "max_busy", "cell_wait")},
        "load": {"max_load": args.max_load, "waited_s": wait["waited_s"],
                 "quiet": wait["quiet"], "at_start": wait["load_at_start"]},
    }
    log(f"load {wait['load_at_start']} after waiting {wait['waited_s']} s; "
        f"{len(cells)} JAX cells, keras={args.keras}")

    report["matmul_peak"] = run_child("matmul_peak", {"size": args.matmul_size, "repeats": 10},
                                      child_env(_xla_flags(1, args.xla_flags), args.platform),
                                      args.cell_timeout)
    log(f"matmul peak: {report['matmul_peak']}")

    keras_modes = {"graph": [False], "xla": [True], "both": [False, True], "none": []}[args.keras]
    peers = []
    for jit in keras_modes:
        spec = {"model": args.model, "image_size": args.image_size,
                "batch_size": args.batch_size, "warmup": args.warmup, "steps": args.steps,
                "jit_compile": jit}
        peers.append(_measure(args, "keras_peer", spec, child_env(
            "", KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES=""), log))
        log(f"keras peer (jit_compile={jit}): {_brief(peers[-1])}")
    report["keras"] = peers[0] if peers else None
    report["keras_extra"] = peers[1:]

    results = []
    for spec in cells:
        env = child_env(_xla_flags(max(spec["devices"], 1), args.xla_flags), args.platform)
        result = _measure(args, "jax_cell", spec, env, log)
        results.append({**spec, **result})
        log(f"{spec['strategy']:>7} devices={spec['devices']} M={spec['members']}: "
            f"{_brief(results[-1])}")
    report["cells"] = results
    report["skipped"] = skipped
    loads = [c["load_before"][0] for c in results + peers if "load_before" in c]
    report["load"]["at_end"] = load_average()
    report["load"]["max_1min_before_cell"] = max(loads, default=None)
    others = [c.get("others_busy_cores") for c in results + peers]
    report["load"]["max_others_busy_cores"] = max((x for x in others if x is not None),
                                                  default=None)
    # Quiet: the load was low at the start and no cell ran next to a busy other process.
    report["load"]["quiet"] = bool(wait["quiet"] and all(
        x is None or x < args.max_busy * report["host"]["cores"] for x in others))
    report["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    report_lib.derive(report)
    return report


def _measure(args: argparse.Namespace, module: str, spec: dict[str, Any], env: dict[str, str],
             log) -> dict[str, Any]:
    """One child, after waiting (up to --cell-wait) for other processes to leave the CPU."""
    wait = (wait_until_idle(args.max_busy, args.cell_wait, log=log) if args.cell_wait > 0
            else {})
    return {**run_child(module, spec, env, args.cell_timeout), **wait}


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + result["error"]
    return (f"{result['member_images_per_s']:.2f} member-img/s, step {result['step_median_s']:.3f}"
            f" s, compile {result.get('compile_s')} s, load {result['load_before'][0]}, other "
            f"processes {result.get('others_busy_cores')} cores")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.argv = None if argv is None else list(argv)
    report = run(args, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    text = report_lib.table(report)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
