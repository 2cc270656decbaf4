"""Helpers shared by the benchmark parent and its child processes.

Protocol: a child is `python -m benchmarks.<module> '<spec JSON>'`; it prints exactly one line
starting with RESULT_PREFIX followed by its result as JSON (anything else on stdout/stderr is
log). The parent sets the child's environment (XLA_FLAGS, KERAS_BACKEND, thread settings).
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Mapping

RESULT_PREFIX = "BENCHMARK_RESULT "
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (`uptime`), rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_busy_fraction(seconds: float = 2.0) -> float | None:
    """Fraction of all cores busy over the next `seconds` (Linux /proc/stat); None elsewhere.

    Unlike the load average (a 1-minute moving average, still high right after our own previous
    child exits), this tells whether other processes are using the CPU now.
    """
    try:
        total0, idle0 = _proc_stat()
        time.sleep(seconds)
        total1, idle1 = _proc_stat()
    except (OSError, ValueError, IndexError):
        return None
    return round(1.0 - (idle1 - idle0) / max(total1 - total0, 1), 3)


def _proc_stat() -> tuple[int, int]:
    """(total, idle) jiffies summed over all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait


def wait_until_idle(max_busy: float, timeout_s: float, log: Callable[[str], None] = print
                    ) -> dict[str, Any]:
    """Before a child: wait (up to timeout_s) until under `max_busy` of the cores are in use."""
    start = time.monotonic()
    while True:
        busy = cpu_busy_fraction()
        if busy is None or busy < max_busy or time.monotonic() - start >= timeout_s:
            return {"busy_before": busy, "waited_before_s": round(time.monotonic() - start, 1)}
        log(f"CPU {busy:.0%} busy (other processes); waiting before the next cell")
        time.sleep(10.0)


def wait_for_quiet(max_load: float, timeout_s: float, poll_s: float = 20.0,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Poll until the 1-minute load average is below `max_load` or `timeout_s` passes.

    Returns {'waited_s', 'load_at_start', 'quiet'}; `quiet` False means the timeout hit and the
    measurement runs on a busier machine than asked for (the table header says so).
    """
    start = time.monotonic()
    while True:
        load = load_average()
        if load[0] < max_load:
            return {"waited_s": round(time.monotonic() - start, 1), "load_at_start": load,
                    "quiet": True}
        if time.monotonic() - start >= timeout_s:
            return {"waited_s": round(time.monotonic() - start, 1), "load_at_start": load,
                    "quiet": False}
        log(f"load average {load} >= {max_load}; waiting ({time.monotonic() - start:.0f} s)")
        time.sleep(poll_s)


def emit(result: Mapping[str, Any]) -> None:
    """Print a child's result line (the parent reads the last such line)."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def parse_spec(argv: list[str] | None = None) -> dict[str, Any]:
    """The child's spec: the JSON object given as its single argument."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m benchmarks.<child> '<spec JSON>'")
    return json.loads(argv[0])


def run_child(module: str, spec: Mapping[str, Any], env: Mapping[str, str], timeout_s: float
              ) -> dict[str, Any]:
    """Run `python -m benchmarks.<module>` with `spec`; its result dict, or an 'error' entry.

    The child's wall time and the load average before and after it are added to the result.
    """
    load_before = load_average()
    start = time.monotonic()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        stat0 = _proc_stat()
    except (OSError, ValueError, IndexError):
        stat0 = None
    cmd = [sys.executable, "-m", f"benchmarks.{module}", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=dict(env), capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        result: dict[str, Any] = {"error": f"timed out after {timeout_s:.0f} s"}
    else:
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
        if proc.returncode == 0 and lines:
            result = json.loads(lines[-1][len(RESULT_PREFIX):])
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
            result = {"error": f"exit code {proc.returncode}: " + " | ".join(tail)}
    wall = time.monotonic() - start
    result["process_wall_s"] = round(wall, 1)
    result["load_before"] = load_before
    result["load_after"] = load_average()
    if stat0 is not None:
        # Cores busy with OTHER processes, averaged over the child's life: all busy CPU time
        # of the machine minus the child's own (the contention the child ran under).
        total1, idle1 = _proc_stat()
        ticks = os.sysconf("SC_CLK_TCK")
        busy_s = ((total1 - stat0[0]) - (idle1 - stat0[1])) / ticks
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        own_s = (children1.ru_utime - children0.ru_utime
                 + children1.ru_stime - children0.ru_stime)
        result["others_busy_cores"] = round(max(busy_s - own_s, 0.0) / max(wall, 1e-9), 2)
    return result


# --platform -> JAX_PLATFORMS of a child ('auto': unset, JAX picks its best backend).
JAX_PLATFORMS = {"cpu": "cpu", "gpu": "cuda", "tpu": "tpu", "auto": None}


def child_env(xla_flags: str = "", platform: str = "cpu", **extra: str) -> dict[str, str]:
    """The parent's environment with XLA_FLAGS replaced, quiet TensorFlow, JAX on `platform`.

    platform: 'cpu' (the default, as the CPU benchmarks want; BENCHMARK_JAX_PLATFORMS
    overrides it), 'gpu', 'tpu', or 'auto' (JAX_PLATFORMS unset). TensorFlow (the Keras peer)
    never sees an accelerator: CUDA_VISIBLE_DEVICES is for the caller to set.
    """
    if platform not in JAX_PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; expected one of {sorted(JAX_PLATFORMS)}")
    env = dict(os.environ)
    env["XLA_FLAGS"] = xla_flags
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if platform == "cpu":
        env["JAX_PLATFORMS"] = env.get("BENCHMARK_JAX_PLATFORMS", "cpu")
    elif JAX_PLATFORMS[platform] is None:
        env.pop("JAX_PLATFORMS", None)
    else:
        env["JAX_PLATFORMS"] = JAX_PLATFORMS[platform]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def time_calls(call: Callable[[], Any], warmup: int, steps: int) -> dict[str, Any]:
    """Call `call` warmup + steps times (each call must block); per-call seconds and summary."""
    first = None
    for i in range(warmup):
        t = time.perf_counter()
        call()
        if i == 0:
            first = time.perf_counter() - t
    times, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        call()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"first_call_s": None if first is None else round(first, 4),
            "step_s": [round(x, 4) for x in times],
            "step_median_s": round(statistics.median(times), 4),
            "step_min_s": round(min(times), 4),
            # CPU seconds of all this process's threads per step: the work a step costs,
            # less sensitive than wall time to other processes sharing the cores.
            "step_cpu_median_s": round(statistics.median(cpu), 4)}
