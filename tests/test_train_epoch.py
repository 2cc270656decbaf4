"""The epoch loop on the host: no transfers during an epoch's steps, stopped members skipped by
'loop', one compile set per sweep (splits padded to the whole sweep), the persistent cache.

Tiny programs on the in-memory fake experiment (16 px, a one-block-per-stage ResNet of width 4).
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sourcematters_jax.configs import smoke
from fake_experiment import make_experiment
from sourcematters_jax import pretrained
from sourcematters_jax.models import ResNet
from sourcematters_jax.train import loop, packing

REPO = pathlib.Path(__file__).resolve().parents[1]
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def tiny_config(strategy, *, pretrained_dir="", epochs=2):
    config = smoke.get_config(f"strategy={strategy},epochs={epochs},pretrained={pretrained_dir}")
    config.image_size = 16
    config.batch_size = 16
    config.eval_batch_size = 16
    config.sweep.p_art = (0.5,)
    return config


@pytest.fixture(scope="module")
def data():
    return make_experiment(num_images=64, size=16)


@pytest.fixture
def guarded_epochs(monkeypatch):
    """Runs every epoch's steps under transfer_guard('disallow_explicit'); records the members'
    step counters after each epoch's steps (before end_epoch donates the state)."""
    seen = []
    original = loop.train_epoch

    def guarded(*args, **kwargs):
        with jax.transfer_guard("disallow_explicit"):  # any host<->device copy raises
            train, summed = original(*args, **kwargs)
        seen.append(np.asarray(args[0].runner.to_host(train.step)))
        return train, summed

    monkeypatch.setattr(loop, "train_epoch", guarded)
    return seen


def test_stopped_members_are_skipped_by_loop_and_steps_move_no_data(tmp_path, data, guarded_epochs):
    # The 'imagenet' source has NaN weights: its member stops in epoch 1 (on device, masked);
    # from epoch 2 on the loop strategy does not run it at all, so its step counter stays.
    module = ResNet(stage_sizes=(1, 1), width=4)
    variables = jax.device_get(module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
    kernel = variables["params"]["conv1_conv"]["kernel"]
    variables["params"]["conv1_conv"]["kernel"] = np.full_like(kernel, np.nan)
    broken = pretrained.save(tmp_path / "nan", variables, {
        "source": "nan", "preprocessing": "none", "architecture": pretrained.architecture_of(module)})
    config = tiny_config("loop", pretrained_dir=str(broken), epochs=2)
    config.sweep.fold = (1,)
    path = loop.train_and_evaluate(config, tmp_path / "work", data=data)
    program = json.loads((tmp_path / "work" / "program.json").read_text())
    steps = program["steps_per_epoch"]
    assert len(guarded_epochs) == 2 and program["strategy"] == "loop"
    assert list(config.sweep.source) == ["random", "imagenet"]  # member 0, member 1
    assert guarded_epochs[-1].tolist() == [2 * steps, steps]
    assert path.exists()


def test_vmap_epoch_steps_move_no_data(tmp_path, data, guarded_epochs):
    config = tiny_config("vmap", epochs=2)
    config.sweep.fold = (1,)
    config.sweep.seed = (1, 2)
    loop.train_and_evaluate(config, tmp_path / "work", data=data)
    assert len(guarded_epochs) == 2
    # vmap cannot skip inside the batched program: every member's step counter advances.
    assert guarded_epochs[-1].tolist() == [2 * 2] * 4


def test_programs_of_a_sweep_share_shapes_and_compile_once(tmp_path, data):
    # Folds 1 and 2 of the fake experiment have 29/26 training and 11/14 validation images.
    def program(indices, pad):
        config = tiny_config("vmap", epochs=1)
        config.sweep.fold = (1, 2)
        config.sweep.seed = (1,)
        config.member_indices = indices
        config.pad_to_sweep = pad
        compiles = []
        listener = lambda name, secs, **kw: compiles.append(name) if name == COMPILE_EVENT else None  # noqa: E731
        jax.monitoring.register_event_duration_secs_listener(listener)
        try:
            loop.train_and_evaluate(config, tmp_path / f"{indices}-{pad}".replace(":", "_"),
                                    data=data)
        finally:
            jax.monitoring.unregister_event_duration_listener(listener)
        return len(compiles)

    members = [data.member_data(0.5, f, 1) for f in (1, 2)]
    assert [len(m.val.indices) for m in members] == [11, 14]
    assert program("0:1", True) > 0
    assert program("1:2", True) == 0  # fold 2 reuses fold 1's compiled programs
    assert program("0:1", False) > 0  # unpadded, fold 1's validation split has another shape
    pad_to = packing.longest_splits(members)
    own = packing.pack_member_arrays(members[:1], batch_size=16, eval_batch_size=16)
    padded = packing.pack_member_arrays(members[:1], batch_size=16, eval_batch_size=16,
                                        pad_to=pad_to)
    assert own.val.mask.shape == (1, 11) and padded.val.mask.shape == (1, 14)
    assert padded.val.mask.sum() == 11


CACHE_CHILD = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp
    from sourcematters_jax import compile_cache
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    compile_cache.enable(sys.argv[1], min_compile_secs=0)
    jax.jit(lambda x: jnp.tanh(x) @ x.T + 3)(jnp.ones((8, 8))).block_until_ready()
    print(sum(e.endswith("cache_hits") for e in events), sum(e.endswith("cache_misses") for e in events))
""")


def test_persistent_cache_serves_the_second_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])

    def child():
        out = subprocess.run([sys.executable, "-c", CACHE_CHILD, str(tmp_path / "cache")],
                             env=env, capture_output=True, text=True, timeout=120, check=True)
        return tuple(int(n) for n in out.stdout.split()[-2:])

    hits, misses = child()
    assert hits == 0 and misses > 0 and any((tmp_path / "cache").iterdir())
    hits, misses = child()
    assert hits > 0 and misses == 0
