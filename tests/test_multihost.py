"""One program over two processes (jax.distributed on localhost, CPU, gloo): the real CLI.

`python -m sourcematters_jax.main --distributed ...` runs twice at once (process 0 and 1, 2 host
devices each: a 4-device global mesh) on configs/smoke.py (tiny ResNet, 32 px, synthetic data,
4 members, 2 epochs, strategy vmap). Checked: program.json puts members on both processes'
devices; one results.csv / predictions.csv with every member, and one set of summaries (process
0's); the results equal a 1-process run of the same config on 4 host devices exactly (measured
bitwise equal: each member's computation is the same per-device program either way); a rerun
without results.csv restores the epoch-2 checkpoint on both processes (Orbax's multi-process
path) and writes the same results, and one process reads every member back from that
checkpoint (`checkpoints.load_member`), equal to the 1-process run's; with the workdir locked by another process, both processes
fail with the lock's message instead of one of them waiting forever.

Every child has a timeout (a hang fails the test). Six CLI runs: 2.5-5 min on the 2-core CPU
shared with other test runs, most of it process start-up (TensorFlow, JAX) and compiling.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest

from sourcematters_jax import workdir_lock
from sourcematters_jax.train import checkpoints, packing, processes

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"--config={REPO / 'configs' / 'smoke.py'}:strategy=vmap,epochs=2"
TIMEOUT_S = 300


def _env(tmp: pathlib.Path, devices: int) -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_COMPILATION_CACHE_DIR=str(tmp / "jax_cache"))
    return env


def _command(tmp: pathlib.Path, workdir: pathlib.Path) -> list[str]:
    return [sys.executable, "-m", "sourcematters_jax.main", CONFIG, f"--workdir={workdir}",
            f"--config.data_dir={tmp / 'tfds'}", "--config.checkpoint_every_epochs=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_one(tmp: pathlib.Path, workdir: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(_command(tmp, workdir), env=_env(tmp, 4), capture_output=True,
                          text=True, timeout=TIMEOUT_S)


def run_two(tmp: pathlib.Path, workdir: pathlib.Path) -> list[tuple[int, str]]:
    """(exit status, stderr) of processes 0 and 1 of one distributed program."""
    flags = ["--distributed", f"--coordinator_address=localhost:{_free_port()}",
             "--num_processes=2"]
    children = [subprocess.Popen(_command(tmp, workdir) + flags + [f"--process_id={i}"],
                                 env=_env(tmp, 2), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for i in range(2)]
    out = []
    try:
        for child in children:
            _, err = child.communicate(timeout=TIMEOUT_S)
            out.append((child.returncode, err))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return out


def _events(workdir: pathlib.Path) -> dict[str, int]:
    root = workdir / "tensorboard"
    return {d.name: len(list(d.glob("events.out.tfevents.*"))) for d in root.iterdir()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multihost")
    single = run_one(tmp, tmp / "single")  # also builds the synthetic data the others read
    assert single.returncode == 0, single.stderr[-3000:]
    two = run_two(tmp, tmp / "two")
    for status, err in two:
        assert status == 0, err[-3000:]
    workdir = tmp / "two"
    out = {"tmp": tmp, "single": tmp / "single", "two": workdir, "stderr": [e for _, e in two],
           "events": _events(workdir), "results": pd.read_csv(workdir / "results.csv"),
           "predictions": pd.read_csv(workdir / "predictions.csv")}
    # Rerun without results: both processes restore epoch 2 and only evaluate.
    (workdir / "results.csv").unlink()
    (workdir / "predictions.csv").unlink()
    out["resumed"] = run_two(tmp, workdir)
    return out


def test_members_are_split_over_both_processes(runs):
    program = json.loads((runs["two"] / "program.json").read_text())
    assert program["processes"] == 2 and program["strategy"] == "vmap"
    assert len(program["devices"]) == 4
    assert sorted(program["member_processes"].values()) == [0, 0, 1, 1]
    assert set(program["member_devices"]) == set(program["member_processes"])
    assert len(set(program["member_devices"].values())) == 4  # one member per global device
    for err in runs["stderr"]:
        assert "4 members, strategy vmap on 4 cpu device(s)" in err
    assert "process 0 of 2" in runs["stderr"][0] and "process 1 of 2" in runs["stderr"][1]


def test_one_set_of_outputs(runs):
    workdir = runs["two"]
    assert len(runs["results"]) == 12  # 4 members x iid, ood, clean
    assert runs["results"]["member_index"].nunique() == 4
    assert set(runs["predictions"]["member_index"]) == {0, 1, 2, 3}
    assert sorted(p.name for p in workdir.glob("*.csv")) == ["predictions.csv", "results.csv"]
    # Summaries once: one event file per member stream and for the program (process 0's).
    assert runs["events"] == {"program": 1, **{m: 1 for m in runs["results"]["member_id"]}}
    assert "wrote" in runs["stderr"][0] and "results.csv" in runs["stderr"][0]
    assert f"wrote {workdir / 'results.csv'}" not in runs["stderr"][1]  # process 1 writes none


def test_results_equal_a_one_process_run(runs):
    """Bitwise: each member runs the same per-device program on 1 or 2 processes."""
    for name, two in (("results.csv", runs["results"]), ("predictions.csv", runs["predictions"])):
        single = pd.read_csv(runs["single"] / name)
        pd.testing.assert_frame_equal(two, single, check_exact=True)


def test_rerun_restores_the_checkpoint_on_both_processes(runs):
    for status, err in runs["resumed"]:
        assert status == 0, err[-3000:]
        assert "resumed from epoch 2" in err
    pd.testing.assert_frame_equal(pd.read_csv(runs["two"] / "results.csv"), runs["results"],
                                  check_exact=True)


def test_the_checkpoint_reads_back_in_one_process(runs):
    """Orbax wrote one checkpoint from both processes' shards: one process reads every member."""
    for member in range(4):
        (two, meta), (one, _) = (checkpoints.load_member(runs[w], member)
                                 for w in ("two", "single"))
        assert meta["member"]["member_index"] == member
        for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(one), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_locked_workdir_fails_every_process(runs):
    """Process 0 cannot take the lock: both processes exit 2 with its message, none hangs."""
    workdir = runs["tmp"] / "locked"
    with workdir_lock.hold(workdir, what="workdir"):
        outcome = run_two(runs["tmp"], workdir)
    for i, (status, err) in enumerate(outcome):
        assert status == 2, err[-3000:]
        assert f"workdir {workdir} is in use by pid {os.getpid()}" in err
    assert "(on process 0)" in outcome[1][1]


# Without the subprocesses: what several processes change, with jax.process_count() patched.

def test_loop_is_refused_with_several_processes(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ValueError, match=r"config.execution.strategy='loop'.*'vmap', 'groups'"):
        packing.resolve_strategy("loop", "cpu", model_width=8, num_members=4, num_devices=4)
    # 'auto' picks 'vmap' where one process would pick 'loop' (wide model, few members).
    assert packing.resolve_strategy("auto", "cpu", model_width=64, num_members=1,
                                    num_devices=4) == "vmap"
    with pytest.raises(ValueError, match="'loop' strategy runs on one process"):
        packing.make_runner("loop", 2, jax.local_devices())
    with pytest.raises(ValueError, match=r"execution.num_devices=1: a program of 2 processes"):
        packing.select_devices(1)


def test_one_process_agree_is_the_plain_call():
    assert processes.count() == 1 and processes.is_writer()
    assert processes.agree(lambda x: x + 1, 1) == 2
    assert processes.writer_first(lambda: [3]) == [3]
    with pytest.raises(KeyError):
        processes.on_writer(lambda: {}["missing"])
