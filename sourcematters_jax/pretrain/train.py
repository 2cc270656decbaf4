"""`pretrain(config, workdir)`: a Keras-topology ResNet + linear classifier on a classification set.

Data-parallel over every device of every process: one global 1-D mesh ('data'), the state
replicated (NamedSharding P()), each global batch sharded over the mesh (P('data')) and assembled
from the processes' shares with `jax.make_array_from_process_local_data`. BatchNorm statistics
are those of the global batch (XLA all-reduces them), as a synchronised BN would compute.

WORKDIR/config.json      the run's identity; a workdir of another config is refused (or, with
                         config.overwrite, cleared)
WORKDIR/checkpoints/     Orbax CheckpointManager of the train state, every
                         checkpoint_every_steps and at the end; a rerun resumes from the last
WORKDIR/tensorboard/     clu summaries: train loss/accuracy, learning rate, steps/s, eval accuracy
WORKDIR/backbone/        the result: `pretrained.save` of the ResNet's variables, the format
                         `convert_weights` writes, for `config.sources.NAME=WORKDIR/backbone`
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import struct, traverse_util
from jax.sharding import NamedSharding, PartitionSpec as P

from sourcematters_jax.convert_weights.convert import resolve_source
from sourcematters_jax.convert_weights.errors import ConversionError
from sourcematters_jax import __version__, atomic_files, preprocessing, pretrained
from sourcematters_jax.pretrain import config as config_lib, data as data_lib
from sourcematters_jax.train import state as state_lib

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
SUMMARY_DIR = "tensorboard"
BACKBONE_DIR = "backbone"
DATA_AXIS = "data"


@struct.dataclass
class PretrainState:
    step: jnp.ndarray
    params: Any
    batch_stats: Any
    opt_state: Any


def source_name(config: ml_collections.ConfigDict) -> str:
    """The source the backbone is recorded as: config.source, or one derived from the dataset."""
    name = config.source
    if not name:
        base = pathlib.Path(config.dataset.rstrip("/")).name if config_lib.is_folder(
            config.dataset) else config.dataset.split("/")[0]
        name = data_lib.BUILTIN_SOURCES.get(config.dataset) or "".join(
            c if c.isalnum() else "_" for c in base.lower()).strip("_")
    try:
        return resolve_source(pathlib.Path(config.dataset), name, config.preprocessing)[0]
    except ConversionError as e:
        raise ValueError(f"config.source: {e}".replace("--source", "source")) from None


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """SGD (momentum 0.9, Nesterov, L2 on kernels) or AdamW, linear warmup then cosine to 0."""
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total_steps - 1)
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, total_steps)
    kernels = lambda params: traverse_util.unflatten_dict(  # noqa: E731
        {k: k[-1] == "kernel" for k in traverse_util.flatten_dict(params)})
    if config.optimizer == "adam":
        return optax.adamw(schedule, weight_decay=config.weight_decay, mask=kernels), schedule
    return optax.chain(optax.add_decayed_weights(config.weight_decay, mask=kernels),
                       optax.sgd(schedule, momentum=0.9, nesterov=True)), schedule


def _host(tree: Any) -> Any:
    """Host numpy copy of a replicated tree (this process's first shard: multi-host safe)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def _claim_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
    identity = json.loads(config_lib.identity_json(config))
    path = workdir / CONFIG_FILE
    if path.exists():
        try:
            same = json.loads(path.read_text()) == identity
        except ValueError:
            same = False
        if not same:
            if not config.overwrite:
                raise ValueError(f"{workdir} holds a pretraining run of another config ({path}); "
                                 "use another workdir, or set config.overwrite=True to delete it")
            if jax.process_index() == 0:
                logging.warning("overwriting %s: deleting the previous config's run", workdir)
                for name in (CHECKPOINT_DIR, SUMMARY_DIR, BACKBONE_DIR):
                    shutil.rmtree(workdir / name, ignore_errors=True)
                path.unlink()
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        atomic_files.write_json(path, identity)


def is_finished(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> bool:
    """True if WORKDIR holds this config's finished run (its backbone is written)."""
    workdir = pathlib.Path(workdir)
    try:
        same = json.loads((workdir / CONFIG_FILE).read_text()) == json.loads(
            config_lib.identity_json(config))
    except (OSError, ValueError):
        return False
    return same and pretrained.is_checkpoint(workdir / BACKBONE_DIR)


def pretrain(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> pathlib.Path:
    """Pretrain (or resume, or find finished) into WORKDIR; returns WORKDIR/backbone."""
    config_lib.validate(config)
    workdir = pathlib.Path(workdir).absolute()
    backbone_dir = workdir / BACKBONE_DIR
    if is_finished(config, workdir):
        logging.info("%s is finished; nothing to do", backbone_dir)
        return backbone_dir
    source = source_name(config)
    data = data_lib.open_dataset(config)  # every input is checked before the workdir is claimed
    devices = jax.devices()
    if config.batch_size % len(devices):
        raise ValueError(f"config.batch_size={config.batch_size} must be a multiple of the "
                         f"device count {len(devices)}")
    steps_per_epoch = data_lib.steps_per_epoch(len(data.train), config.batch_size)
    total_steps = max(int(math.ceil(config.num_epochs * steps_per_epoch)), 1)
    _claim_workdir(config, workdir)

    mesh = jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices)
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(DATA_AXIS))
    model = state_lib.build_model(config.model.to_dict(), config.dropout_rate,
                                  num_classes=data.num_classes)
    tx, schedule = make_optimizer(config, steps_per_epoch, total_steps)
    size, mode, classes = config.image_size, config.preprocessing, data.num_classes

    def init(key):
        variables = model.init(key, jnp.zeros((1, size, size, 3)), train=False)
        return PretrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                             batch_stats=variables["batch_stats"],
                             opt_state=tx.init(variables["params"]))

    def train_step(state, images, labels):
        x = preprocessing.preprocess(images, mode)
        rng = jax.random.fold_in(jax.random.key(config.seed), state.step)

        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                          x, train=True, mutable=["batch_stats"],
                                          rngs={"dropout": rng})
            targets = optax.smooth_labels(jax.nn.one_hot(labels, classes), config.label_smoothing)
            return optax.softmax_cross_entropy(logits, targets).mean(), (logits, updates)

        (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        deltas, opt_state = tx.update(grads, state.opt_state, state.params)
        new = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, deltas),
                            batch_stats=updates["batch_stats"], opt_state=opt_state)
        metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
                   "learning_rate": schedule(state.step)}
        return new, metrics

    def eval_step(state, images, labels, mask):
        logits = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                             preprocessing.preprocess(images, mode), train=False)
        return jnp.sum((jnp.argmax(logits, -1) == labels) & mask), jnp.sum(mask)

    init_fn = jax.jit(init, out_shardings=replicated)
    step_fn = jax.jit(train_step, in_shardings=(replicated, sharded, sharded),
                      out_shardings=(replicated, replicated), donate_argnums=(0,))
    eval_fn = jax.jit(eval_step, in_shardings=(replicated, sharded, sharded, sharded),
                      out_shardings=replicated)
    to_global = lambda x: jax.make_array_from_process_local_data(sharded, x)  # noqa: E731

    manager = ocp.CheckpointManager(
        workdir / CHECKPOINT_DIR, item_names=("state",),
        options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True,
                                             enable_async_checkpointing=False))
    from sourcematters_jax.train import summaries  # clu's writers import TensorFlow
    summaries.hide_accelerators_from_tensorflow()
    from clu import metric_writers, periodic_actions

    writer = metric_writers.create_default_writer(
        os.fspath(workdir / SUMMARY_DIR), just_logging=jax.process_index() > 0, asynchronous=False)
    try:
        abstract = jax.eval_shape(init, jax.random.key(config.seed))
        start = manager.latest_step() or 0
        if start:
            target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                                 sharding=replicated), abstract)
            state = manager.restore(start, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target)))["state"]
            logging.info("resumed from step %d of %s", start, manager.directory)
        else:
            state = init_fn(jax.random.key(config.seed))
        logging.info("pretraining %s on %s (%d classes, %d train examples): %d steps of global "
                     "batch %d over %d device(s), %d process(es)", source, data.name,
                     data.num_classes, len(data.train), total_steps, config.batch_size,
                     len(devices), jax.process_count())
        progress = periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                                   every_secs=config.progress_every_secs)
        batches = data_lib.train_batches(data, config, start_step=start, total_steps=total_steps,
                                         process_index=jax.process_index(),
                                         process_count=jax.process_count())
        window, last_loss = [], math.nan
        for step in range(start, total_steps):
            batch = next(batches)
            state, metrics = step_fn(state, to_global(batch["image"]), to_global(batch["label"]))
            window.append(metrics)
            done = step + 1
            progress(done)
            if done % config.log_every_steps == 0 or done == total_steps:
                means = {k: float(np.mean([_host(m[k]) for m in window])) for k in window[0]}
                if not math.isfinite(means["loss"]):
                    raise FloatingPointError(f"non-finite training loss at step {done}; lower "
                                             "config.learning_rate")
                last_loss = means["loss"]
                writer.write_scalars(done, {f"train_{k}" if k != "learning_rate" else k: v
                                            for k, v in means.items()})
                window = []
            if done % config.checkpoint_every_steps == 0 or done == total_steps:
                manager.save(done, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                             force=True)
                manager.wait_until_finished()
        eval_accuracy = _evaluate(state, data, config, eval_fn, to_global)
        if eval_accuracy is not None:
            writer.write_scalars(total_steps, {"eval_accuracy": eval_accuracy})
        writer.flush()
    finally:
        manager.close()
        writer.close()
    if jax.process_index() == 0:
        metadata = {
            "source": source, "preprocessing": config.preprocessing,
            "architecture": pretrained.architecture_of(model.backbone),
            "num_features": model.backbone.num_features,
            "dataset": {"name": data.name, "kind": data.kind, "classes": list(data.classes),
                        "train_examples": len(data.train),
                        "eval_examples": len(data.eval) if data.eval is not None else 0},
            "pretraining": {"image_size": size, "steps": total_steps,
                            "batch_size": config.batch_size, "epochs": config.num_epochs,
                            "optimizer": config.optimizer, "learning_rate": config.learning_rate,
                            "final_train_loss": last_loss, "eval_accuracy": eval_accuracy,
                            "devices": len(devices), "processes": jax.process_count(),
                            "config": json.loads(config_lib.identity_json(config))},
            "converter": f"sourcematters pretrain (sourcematters_jax {__version__})",
        }
        # Only the backbone crosses to the host (not the head or the optimizer state).
        variables = _host({"params": state.params["backbone"],
                           "batch_stats": state.batch_stats["backbone"]})
        pretrained.save(backbone_dir, variables, metadata, overwrite=True)
        logging.info("wrote %s (source %r, eval accuracy %s)", backbone_dir, source, eval_accuracy)
    return backbone_dir


def _evaluate(state, data, config, eval_fn, to_global) -> float | None:
    """Top-1 accuracy on the eval split (None without one)."""
    if data.eval is None or not len(data.eval):
        return None
    per_process = math.ceil(config.eval_batch_size / jax.process_count())
    local_devices = jax.local_device_count()
    local_batch = math.ceil(per_process / local_devices) * local_devices
    correct = count = 0
    for batch in data_lib.eval_batches(data.eval, data, config, local_batch=local_batch,
                                       process_index=jax.process_index(),
                                       process_count=jax.process_count()):
        c, n = eval_fn(state, *(to_global(batch[k]) for k in ("image", "label", "mask")))
        correct, count = correct + int(_host(c)), count + int(_host(n))
    return correct / max(count, 1)
