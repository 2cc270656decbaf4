"""Child process: measured float32 matmul peak of this machine (numpy and jitted jnp).

Spec (JSON): size (n of the n x n matrices), repeats. FLOPs of one product: 2 n^3. The best of
`repeats` runs is the peak; it is the denominator of the benchmark's utilisation column.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from benchmarks.common import emit, parse_spec


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest of `repeats` timed calls after one warm-up call (each call must block)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """GFLOP/s of numpy and of XLA (jit(jnp.matmul)) float32 n x n products."""
    import jax
    import jax.numpy as jnp

    n, repeats = int(spec["size"]), int(spec["repeats"])
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n**3
    numpy_s = best_seconds(lambda: a @ b, repeats)
    matmul = jax.jit(jnp.matmul)
    ja, jb = jax.device_put(a), jax.device_put(b)
    jax_s = best_seconds(lambda: matmul(ja, jb).block_until_ready(), repeats)
    return {"size": n, "repeats": repeats, "flops": flops,
            "numpy_gflops_per_s": round(flops / numpy_s / 1e9, 1),
            "jax_gflops_per_s": round(flops / jax_s / 1e9, 1),
            "peak_gflops_per_s": round(flops / min(numpy_s, jax_s) / 1e9, 1),
            "jax_platform": jax.devices()[0].platform}


if __name__ == "__main__":
    emit(run(parse_spec()))
