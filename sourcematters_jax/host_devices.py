"""Host device set-up: one XLA host device per core on CPU, and a check that GPUs are used.

On CPU the trainer shards members over XLA host devices, and several devices running members
concurrently train faster than one device running them in turn (docs/performance.md). XLA reads
`--xla_force_host_platform_device_count` from XLA_FLAGS once, when its CPU backend starts, so
this must run before the first JAX computation. This module imports nothing from JAX.

`check_platform` is the start-up check that a GPU machine does not silently train on CPU.
"""

from __future__ import annotations

import logging
import os
import shutil

FLAG = "xla_force_host_platform_device_count"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def use_one_host_device_per_core() -> None:
    """Add the host-device count to XLA_FLAGS unless it already names one (which is kept).

    Also quiets TensorFlow's C++ logging (TFDS and clu import it) unless the user set a level.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{FLAG}={available_cores()}".strip()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


NVIDIA_DRIVER = "/proc/driver/nvidia"


def nvidia_gpu_visible() -> bool:
    """True if this machine shows an NVIDIA GPU (its driver in /proc, or nvidia-smi on PATH)."""
    return os.path.exists(NVIDIA_DRIVER) or shutil.which("nvidia-smi") is not None


def check_platform(platform: str, *, require_accelerator: bool = False) -> None:
    """Warn (or raise) when a program is about to train on CPU although it should not.

    Args:
      platform: the platform of the devices the program will use ('cpu', 'gpu', 'tpu').
      require_accelerator: raise on CPU, whether or not a GPU is visible.
    Raises:
      RuntimeError: the platform is CPU and `require_accelerator` is set.
    A visible NVIDIA GPU with a CPU platform almost always means a CPU-only jaxlib (a plain
    `pip install -e .`): training would silently run orders of magnitude slower. It is a
    warning, or an info line when JAX_PLATFORMS=cpu says CPU was chosen on purpose.
    """
    if platform != "cpu":
        return
    gpu = nvidia_gpu_visible()
    if not (gpu or require_accelerator):
        return
    forced = os.environ.get("JAX_PLATFORMS", "")
    why = (f"JAX_PLATFORMS={forced!r} restricts JAX to CPU" if forced else
           "the installed jaxlib has no GPU support; install it with pip install -e '.[cuda12]'")
    seen = "an NVIDIA GPU is visible" if gpu else "config.execution.require_accelerator is set"
    message = f"JAX is training on CPU although {seen} ({why})"
    if require_accelerator:
        raise RuntimeError(message)
    log = logging.getLogger(__name__)
    if forced == "cpu":
        log.info(message)
    else:
        log.warning("%s; set config.execution.require_accelerator=True to make this an error",
                    message)
