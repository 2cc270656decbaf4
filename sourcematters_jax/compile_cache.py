"""JAX's persistent compilation cache, on by default for training jobs.

Every program of a sweep has the same shapes (`config.pad_to_sweep`), so with the cache on the
first program compiles and every later one, in any process on a machine that shares the
directory, loads the executables from disk instead (seconds instead of minutes for ResNet50).
`python -m sourcematters_jax.launch.program` (every executor) uses ROOT/jax_cache under the sweep root;
`python -m sourcematters_jax.main` uses the user cache directory. JAX_COMPILATION_CACHE_DIR, when
set, is always kept.
"""

from __future__ import annotations

import os
import pathlib

from absl import logging

ENV = "JAX_COMPILATION_CACHE_DIR"
SWEEP_SUBDIR = "jax_cache"


def user_cache_dir() -> pathlib.Path:
    """$XDG_CACHE_HOME/sourcematters_jax/jax (default ~/.cache/sourcematters_jax/jax)."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "sourcematters_jax" / "jax"


def enable(directory: str | os.PathLike | None = None, *,
           min_compile_secs: float | None = None) -> pathlib.Path:
    """Turn on the persistent cache in `directory` (default `user_cache_dir()`); returns it.

    JAX_COMPILATION_CACHE_DIR, when set, wins over `directory`; without `directory`, a cache
    directory already set in `jax.config` is kept. `min_compile_secs` lowers
    the compile time below which JAX does not cache (its default is 1 s; tests use 0).
    Safe to call after JAX has compiled: the cache is reset so the new directory takes effect.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    chosen = (os.environ.get(ENV) or directory or jax.config.jax_compilation_cache_dir
              or user_cache_dir())
    path = pathlib.Path(chosen).absolute()
    if min_compile_secs is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_secs))
    if jax.config.jax_compilation_cache_dir != str(path):
        path.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(path))
        cc.reset_cache()  # a cache checked before this call would stay off otherwise
        logging.info("persistent compilation cache: %s", path)
    return path
