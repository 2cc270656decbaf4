"""The demo's pretrained sources: pretrained by `sourcematters pretrain` on first run, then cached.

The demo compares the study's three kinds of source on its synthetic chest X-rays: a natural-image
source (ImageNet's stand-in, the built-in `synthetic_natural`), a radiology source (RadImageNet's
stand-in, `synthetic_radiology`) and random init. A demo source whose `config.sources.NAME` is
empty is pretrained into ROOT/sources/NAME with configs/pretrain.py's `tiny` recipe, at the demo
model's architecture and image size; a finished one is found there and reused. Setting
`--config.sources.NAME=DIR` uses DIR (any converted or pretrained checkpoint) instead.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import time
from typing import Sequence

import ml_collections

# demo source name -> the built-in dataset it is pretrained on
DEMO_SOURCES = {"natural": "synthetic_natural", "radiology": "synthetic_radiology"}
SOURCES_DIR = "sources"


def pretrain_config_path() -> str:
    from sourcematters_jax import configs

    return str(pathlib.Path(configs.__file__).resolve().parent / "pretrain.py")


def to_pretrain(config: ml_collections.ConfigDict) -> list[str]:
    """Demo sources of the sweep that have no checkpoint yet (their config.sources field is '')."""
    return [name for name in DEMO_SOURCES
            if name in config.sweep.source and not config.sources.get(name)]


def pretrain_config(name: str, config: ml_collections.ConfigDict, data_dir: str | pathlib.Path,
                    extra: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """configs/pretrain.py's tiny recipe on the source's dataset, with the demo model's shape."""
    from sourcematters_jax.launch import config_io

    stages = ", ".join(str(int(s)) for s in config.model.stage_sizes)
    overrides = [f"--config.data_dir={data_dir}", f"--config.image_size={config.image_size}",
                 f"--config.model.stage_sizes=({stages},)", f"--config.model.width={config.model.width}",
                 f"--config.model.dtype={config.model.dtype}", *extra]
    spec = f"{pretrain_config_path()}:dataset={DEMO_SOURCES[name]},source={name},tiny"
    return config_io.load_config(spec, overrides)


def ensure_sources(config: ml_collections.ConfigDict, root: pathlib.Path, data_dir: str | pathlib.Path,
                   extra: Sequence[str] = (), quiet: bool = False) -> list[str]:
    """Pretrain (or find) every demo source the sweep needs; returns the config overrides
    `--config.sources.NAME=ROOT/sources/NAME/backbone` that point the demo at them.

    Prints one line per source step; `quiet` swallows what pretraining itself prints to stdout
    (TFDS's dataset-build notes, progress), as the demo's --quiet does for the sweep."""
    from sourcematters_jax import pretrained
    from sourcematters_jax.pretrain.train import is_finished, pretrain

    hush = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
    overrides = []
    for name in to_pretrain(config):
        workdir = root / SOURCES_DIR / name
        pconfig = pretrain_config(name, config, data_dir, extra)
        if is_finished(pconfig, workdir):
            print(f"  source {name}: pretrained before ({workdir})", flush=True)
            backbone = pretrain(pconfig, workdir)
        else:
            print(f"  source {name}: pretraining on {pconfig.dataset} into {workdir} ...", flush=True)
            start = time.time()
            with hush:
                backbone = pretrain(pconfig, workdir)
            print(f"  source {name}: pretrained in {time.time() - start:.0f} s", flush=True)
        meta = pretrained.read_metadata(backbone)
        accuracy = meta.get("pretraining", {}).get("eval_accuracy")
        if accuracy is not None:
            print(f"  source {name}: accuracy {accuracy:.3f} on its {meta['dataset']['eval_examples']} "
                  f"held-out images ({len(meta['dataset']['classes'])} classes)", flush=True)
        overrides.append(f"--config.sources.{name}={backbone}")
    return overrides
