"""Load a config exactly as `--config=FILE.py:ARG --config.key=value` would, outside absl's app.run.

The launcher, the CLI and the demo all need the config a training program will see, without
owning the process's global flags. `load_config` parses a private `absl.flags.FlagValues` with
`ml_collections.config_flags`, so `:arg` strings, override syntax, type checks and the lock are
exactly those of `python -m sourcematters_jax.main`. Overrides naming a key the config does not
have are rejected up front with the key and its nearest valid names (config_flags itself would
raise a bare `AttributeError`), and the loaded config's values are checked with the trainer's
own `validate`, so every command refuses `num_epochs=-1` before it writes anything.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Callable, Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from sourcematters_jax import cli_errors
from sourcematters_jax.train.config import RUNTIME_FIELDS, differing_keys, validate


def normalize_override(override: str) -> str:
    """'key=value', 'config.key=value' or '--config.key=value' -> '--config.key=value'."""
    text = override.strip()
    if text.startswith("--"):
        text = text[2:]
    if not text.startswith("config."):
        text = "config." + text
    if "=" not in text:
        raise ValueError(f"config override {override!r} must look like --config.KEY=VALUE")
    return "--" + text


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """All dotted field paths of a ConfigDict (nested dicts and their leaves)."""
    keys = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(flat_keys(value, prefix=path + "."))
    return keys


def _parse(spec: str, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    argv = ["load_config", f"--config={spec}", *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config file", flag_values=values,
                                    lock_config=True, sys_argv=argv)
    try:
        values(argv)
    except flags.Error as e:
        # config_flags wraps errors raised by get_config with a traceback: keep the last line,
        # which is the error itself (e.g. "ValueError: unknown config argument 'pa' ...").
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise ValueError(f"--config={spec} {' '.join(overrides)}: {lines[-1].strip()}") from None
    config = values.config
    config.keys()  # Raises the delayed IOError of a config file that failed to load.
    return config


def check_schema(config: ml_collections.ConfigDict) -> None:
    """The value check of the config's own schema: the trainer's (`train.config.validate`) for
    experiment configs, the pretraining one (`pretrain.config.validate`) for configs without an
    `experiment` field (configs/pretrain.py)."""
    if "experiment" in config:
        validate(config)
        return
    from sourcematters_jax.pretrain import config as pretrain_config  # imports this module

    pretrain_config.validate(config)


def load_config(spec: str, overrides: Sequence[str] = (),
                check: Callable[[ml_collections.ConfigDict], None] = check_schema
                ) -> ml_collections.ConfigDict:
    """The locked config of `spec` ('configs/tag.py' or 'configs/tag.py:p_art=0.5') with overrides.

    Args:
      spec: a config file path, optionally followed by ':' and the argument of its get_config.
      overrides: 'key=value' or '--config.key=value' strings, applied in order.
      check: the value check run on the result (default: `check_schema`).
    Raises:
      FileNotFoundError: the config file does not exist.
      KeyError: an override names a key the config does not have (the message names it).
      ValueError: an override is malformed, its value does not parse for the field's type, or
        a value is one the trainer cannot run with (`train.config.validate`, e.g. batch_size=0).
    """
    path = spec.split(":", 1)[0]
    try:
        open(path).close()
    except OSError as e:
        raise FileNotFoundError(f"config file {path!r} (from --config={spec}) cannot be read: {e}") from None
    overrides = [normalize_override(o) for o in overrides]
    if overrides:
        known = set(flat_keys(_parse(spec, [])))
        for override in overrides:
            key = override[len("--config."):].split("=", 1)[0]
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise KeyError(f"unknown config key {key!r} in override {override}{hint}")
    config = _parse(spec, overrides)
    check(config)
    return config


LOAD_ERRORS = (FileNotFoundError, KeyError, ValueError)  # what load_config raises for bad input


def error_message(error: Exception) -> str:
    """The text of a `load_config` error for a command line (a KeyError's repr adds quotes)."""
    return cli_errors.message(error)


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """A JSON-safe dict of the config (tuples become lists), for manifests and comparisons."""
    return json.loads(config.to_json_best_effort(sort_keys=True))


def diff_configs(a: dict[str, Any], b: dict[str, Any],
                 ignore: Sequence[str] = RUNTIME_FIELDS) -> list[str]:
    """Dotted keys at which two config dicts (from `config_to_dict`) differ.

    Top-level `ignore` fields (by default the trainer's RUNTIME_FIELDS: progress interval,
    checkpoints kept, overwrite) change how a program runs, not what it computes, and are skipped.
    """
    return differing_keys(a, b, ignore=ignore)
