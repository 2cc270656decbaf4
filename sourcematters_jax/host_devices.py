"""The CPU device layout: one XLA host device per available core, set before JAX starts.

On CPU the trainer shards members over XLA host devices, and several devices running members
concurrently train faster than one device running them in turn (docs/performance.md). XLA reads
`--xla_force_host_platform_device_count` from XLA_FLAGS once, when its CPU backend starts, so
this must run before the first JAX computation. This module imports nothing from JAX.
"""

from __future__ import annotations

import os

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
