r"""Where one training step spends its time: a jax.profiler trace summed by XLA op kind.

  JAX_PLATFORMS=cpu python -m benchmarks.profile_step --model resnet50 --image-size 128 \
      --batch-size 16 --steps 2 --table /tmp/profile.md

Builds the same cell as `benchmarks.jax_cell` (the product's member step lifted by a runner;
default one member, 'loop', one device), warms it up, traces `--steps` steps with
`jax.profiler.trace` and reads the trace back with `jax.profiler.ProfileData`. Every executed
XLA op (thunk) is an event on some thread; their durations are summed per op kind (the op name
without its numeric suffix: `ynn_fusion.12` -> `ynn_fusion`, the convolutions and dots XLA:CPU
hands to YNNPACK). Op time / (wall time x cores) is how busy the cores were with ops; the rest is
scheduling and waiting between ops (threads that spin while waiting still count as CPU time in
the throughput benchmark's 'CPU s/step'). Results and their reading: docs/performance.md.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
import time
from typing import Sequence

from benchmarks.jax_cell import MODELS, build
from sourcematters_jax.host_devices import available_cores

# Events that are not ops: executor bookkeeping and the Python thread.
_NOT_OPS = re.compile(r"^(ThunkExecutor|end: )")


def op_kind(name: str) -> str:
    """'ynn_fusion.12' -> 'ynn_fusion'; 'wrapped_iota.2' -> 'wrapped_iota'."""
    return re.sub(r"(\.\d+)+$", "", name)


def summarise(events: Sequence[tuple[str, str, float]]) -> dict[str, float]:
    """{op kind: seconds} from (thread name, event name, seconds) events of the XLA threads."""
    totals: dict[str, float] = collections.Counter()
    for thread, name, seconds in events:
        if thread == "python" or _NOT_OPS.match(name):
            continue
        totals[op_kind(name)] += seconds
    return dict(totals)


def trace_events(trace_dir: str) -> list[tuple[str, str, float]]:
    """(thread name, event name, seconds) of every event in the trace under `trace_dir`."""
    from jax.profiler import ProfileData

    files = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    if not files:
        raise FileNotFoundError(f"no .xplane.pb trace under {trace_dir}")
    data = ProfileData.from_file(files[0])
    return [(line.name, event.name, event.duration_ns / 1e9)
            for plane in data.planes for line in plane.lines for event in line.events]


def markdown(totals: dict[str, float], *, steps: int, step_s: float, cores: int, title: str,
             top: int = 12) -> str:
    """A table of op kinds by share of the op time, with the cores' busy fraction."""
    op_s = sum(totals.values())
    rows = sorted(totals.items(), key=lambda kv: -kv[1])
    lines = [f"## {title}", "",
             f"{steps} traced steps, {step_s:.3f} s per step (wall); op time {op_s / steps:.3f} "
             f"core-s per step = {op_s / (steps * step_s * cores):.0%} of {cores} cores.", "",
             "| op kind | core-s per step | share of op time |", "| --- | --- | --- |"]
    for kind, seconds in rows[:top]:
        lines.append(f"| {kind} | {seconds / steps:.3f} | {seconds / op_s:.1%} |")
    rest = sum(s for _, s in rows[top:])
    if rest:
        lines.append(f"| (other {len(rows) - top} kinds) | {rest / steps:.3f} | {rest / op_s:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="resnet50")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--members", type=int, default=1)
    p.add_argument("--strategy", choices=("vmap", "lax_map", "loop"), default="loop")
    p.add_argument("--steps", type=int, default=2, help="traced steps (after 2 warm-up calls)")
    p.add_argument("--table", help="also write the markdown table here")
    args = p.parse_args(argv)

    import jax

    cell = build({"model": args.model, "image_size": args.image_size,
                  "batch_size": args.batch_size, "members": args.members,
                  "strategy": args.strategy, "devices": 1})
    holder = {"state": cell.state}

    def step() -> None:
        holder["state"], metrics = cell.step(holder["state"], cell.data, cell.pool)
        jax.block_until_ready((holder["state"], metrics))

    for _ in range(2):
        step()
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            step_s = (time.perf_counter() - start) / args.steps
        totals = summarise(trace_events(trace_dir))
    title = (f"step profile: {args.model}, {args.image_size} px, batch {args.batch_size}, "
             f"M={args.members}, {args.strategy}, 1 device ({jax.devices()[0].platform})")
    table = markdown(totals, steps=args.steps, step_s=step_s, cores=available_cores(), title=title)
    print(table)
    if args.table:
        with open(args.table, "w") as f:
            f.write(table)
    return table


if __name__ == "__main__":
    main()
