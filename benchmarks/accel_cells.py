"""Child process of `benchmarks.accelerator_check`: one cell (matmul peaks, a step, the grid).

Spec (JSON) 'kind':
  'matmul'  n, repeats: TFLOP/s of an n x n matmul in bfloat16, float32 at the default precision
            (TF32 on recent NVIDIA GPUs) and float32 at 'highest'.
  'step'    a `benchmarks.jax_cell` spec (model, image_size, batch_size, members, strategy,
            group_size, dtype, remat, matmul_precision, devices, warmup, steps): the product's
            M-member training step, timed; plus the device kind and its peak memory in use.
  'grid'    a tag-grid program through `train.train_and_evaluate` on synthetic images: members
            (sources x p_art x folds of configs/tag.py), image_size, epochs, model: run cold for
            `epochs`, then warm (compiled programs cached) for `epochs` and for 1 epoch, which
            splits the wall time into compile, fixed cost and time per epoch.
"""

from __future__ import annotations

import pathlib
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import emit, parse_spec


def device_info() -> dict[str, Any]:
    """Platform, device kind and count, and the first device's memory statistics."""
    import jax

    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return {"platform": device.platform, "device_kind": device.device_kind,
            "device_count": jax.device_count(),
            "peak_bytes_in_use": (stats or {}).get("peak_bytes_in_use"),
            "bytes_limit": (stats or {}).get("bytes_limit")}


def matmul(spec: dict[str, Any]) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    n, repeats = int(spec["n"]), int(spec["repeats"])
    out = {}
    for name, dtype, precision in (("bf16", jnp.bfloat16, None), ("f32_default", jnp.float32, None),
                                   ("f32_highest", jnp.float32, "highest")):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        f = jax.jit(lambda x, y, p=precision: jnp.matmul(x, y, precision=p))
        f(a, a).block_until_ready()
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            f(a, a).block_until_ready()
            best = min(best, time.perf_counter() - t)
        out[f"{name}_tflops"] = round(2.0 * n**3 / best / 1e12, 3)
    return {"n": n, **out, **device_info()}


def step(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks import jax_cell

    result = jax_cell.run(spec)
    return {**result, **device_info()}


class SyntheticExperiment:
    """ExperimentData stand-in: random uint8 images, the study's split sizes per fold."""

    TRAIN = {1: 223, 2: 217, 3: 225, 4: 220, 5: 223}  # rows of train_fold{k}.csv
    VAL, TEST = 26, 83

    def __init__(self, num_images: int, size: int, seed: int = 0):
        from sourcematters_jax.data.types import ImagePool

        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (num_images, 2, size, size), dtype=np.uint8)
        self.pool = ImagePool(images=images, variants=("clean", "tag"),
                              labels=(np.arange(num_images) % 2).astype(np.int32),
                              patient_ids=np.arange(num_images, dtype=np.int64),
                              names=tuple(f"img{i:05d}.png" for i in range(num_images)))
        self.experiment = "tag"

    def member_data(self, p_art: float, fold: int, seed: int):
        from sourcematters_jax.data.types import MemberData, SplitIndex

        rng = np.random.default_rng([int(seed), int(fold), int(round(100 * p_art))])
        n = len(self.pool.labels)

        def split(k: int) -> SplitIndex:
            return SplitIndex(indices=rng.choice(n, k, replace=k > n).astype(np.int32),
                              confounded=rng.random(k) < p_art)

        return MemberData(train=split(self.TRAIN[int(fold)]), val=split(self.VAL),
                          test_iid=split(self.TEST), test_ood=split(self.TEST),
                          test_clean=split(self.TEST))


def grid(spec: dict[str, Any]) -> dict[str, Any]:
    import json

    from sourcematters_jax.launch import config_io
    from sourcematters_jax.train.loop import train_and_evaluate

    repo = pathlib.Path(__file__).resolve().parents[1]
    overrides = [f"image_size={int(spec['image_size'])}", "sources.imagenet=random",
                 "sources.radimagenet=random", f"progress_every_secs={1e6}",
                 *spec.get("overrides", [])]
    data = SyntheticExperiment(int(spec.get("pool_images", 1200)), int(spec["image_size"]))
    times, program = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for run, epochs in (("cold", spec["epochs"]), ("warm", spec["epochs"]), ("warm_1", 1)):
            config = config_io.load_config(str(repo / "configs" / "tag.py") + spec.get("arg", ""),
                                           overrides + [f"num_epochs={epochs}"])
            config.patience = 10**6
            workdir = pathlib.Path(tmp) / run
            t = time.perf_counter()
            train_and_evaluate(config, workdir, data=data)
            times[run] = time.perf_counter() - t
            program = json.loads((workdir / "program.json").read_text())
            members = len(program["member_devices"])
    epochs = int(spec["epochs"])
    per_epoch = max(times["warm"] - times["warm_1"], 0.0) / max(epochs - 1, 1)
    fixed = max(times["warm_1"] - per_epoch, 0.0)
    compile_s = max(times["cold"] - times["warm"], 0.0)
    full_epochs = int(spec.get("full_epochs", 30))
    return {"members": members, "epochs": epochs, "wall_s": round(times["cold"], 1),
            "warm_s": round(times["warm"], 1), "warm_1_epoch_s": round(times["warm_1"], 1),
            "compile_s": round(compile_s, 1), "fixed_s": round(fixed, 1),
            "per_epoch_s": round(per_epoch, 2), "full_epochs": full_epochs,
            "projected_full_grid_s": round(compile_s + fixed + full_epochs * per_epoch, 1),
            "program": {k: program.get(k) for k in ("strategy", "group_size", "remat",
                                                    "batch_size", "steps_per_epoch")},
            **device_info()}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    return {"matmul": matmul, "step": step, "grid": grid}[spec["kind"]](spec)


if __name__ == "__main__":
    emit(run(parse_spec()))
