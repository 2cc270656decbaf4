"""Real launchers racing and being stopped: two sweeps on one root train every program once, and
a launcher with --processes=2 stopped by SIGTERM (or Ctrl-C) leaves no program running and
resumes cleanly when run again."""

import csv
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from sourcematters_jax.launch import plan as plan_lib, sweep
from sourcematters_jax import workdir_lock

REPO = pathlib.Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

# configs/smoke.py with one source (2 members: p_art 0 and 1), one ResNet stage, images generated
# at 64 px: two one-member programs that take seconds each once the data are built.
CONFIG = """
from sourcematters_jax.configs import smoke

def get_config(arg=None):
    config = smoke.get_config(arg)
    config.sweep.source = ("random",)
    config.model.stage_sizes = (1,)
    config.progress_every_secs = 1.0
    with config.data_options.unlocked():
        config.data_options.full_size = 64
    return config
"""
MEMBERS = ("tag-random-p0-f1-s812", "tag-random-p1-f1-s812")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability")
    (base / "tiny_smoke.py").write_text(CONFIG)
    return base


def command(base, root, *extra, epochs=1):
    return [sys.executable, "-m", "sourcematters_jax.launch", f"--config={base / 'tiny_smoke.py'}:epochs={epochs}",
            f"--root={root}", "--members_per_program=1", f"--config.data_dir={base / 'tfds'}",
            "--config.checkpoint_every_epochs=1", *extra]


def holder_pid(directory: pathlib.Path) -> int | None:
    """The pid recorded in a directory's lock file (None before anyone took it)."""
    try:
        return json.loads((directory / workdir_lock.LOCK_FILE).read_text()).get("pid")
    except (OSError, ValueError):
        return None


def wait_for(predicate, timeout_s: float, what: str, proc=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"launcher exited ({proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def events_per_member(root: pathlib.Path) -> dict[str, int]:
    return {m: len(list(root.glob(f"program_*/tensorboard/{m}/events.out.tfevents.*"))) for m in MEMBERS}


def test_two_launchers_on_one_root_train_each_program_once(setup):
    root = setup / "race root"  # a space: the printed TensorBoard command must quote it
    first = subprocess.Popen(command(setup, root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=ENV, cwd=REPO)
    try:
        wait_for(lambda: holder_pid(root) == first.pid, 300, "the first launcher's root lock", first)
        second = subprocess.run(command(setup, root), capture_output=True, text=True, env=ENV, cwd=REPO,
                                timeout=300)
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"error: sweep root {root} is in use by pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        out, _ = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, out[-3000:]
    assert "all 2 programs finished" in out
    assert f"TensorBoard: tensorboard --logdir {shlex.quote(str(root))}" in out and "'" in shlex.quote(str(root))
    assert events_per_member(root) == {m: 1 for m in MEMBERS}  # one training run per program
    # A launcher started after the first one finished finds nothing to do.
    again = subprocess.run(command(setup, root), capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert again.returncode == 0 and "(capacity 1; 0 to run)" in again.stdout
    assert events_per_member(root) == {m: 1 for m in MEMBERS}


def saved_an_epoch(workdir: pathlib.Path) -> bool:
    return any(p.name.isdigit() for p in (workdir / "checkpoints").glob("*"))


def test_sigterm_stops_the_launchers_programs_and_they_resume(setup, capsys):
    root = setup / "stopped"
    argv = command(setup, root, "--processes=2", epochs=12)  # ~1 s an epoch once compiled
    launcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=ENV, cwd=REPO, start_new_session=True)  # the signal reaches the launcher only
    try:
        workdirs = [root / "program_000", root / "program_001"]
        # Stop them mid-training: each holds its workdir's lock and has saved an epoch.
        wait_for(lambda: all(holder_pid(w) not in (None, launcher.pid) and saved_an_epoch(w) for w in workdirs),
                 400, "both programs to save an epoch", launcher)
        children = [holder_pid(w) for w in workdirs]
        launcher.send_signal(signal.SIGTERM)
        out, _ = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode == 143, out[-3000:]
    assert out.count("rerun the sweep to resume it") == 2 and "Traceback" not in out
    assert out.strip().splitlines()[-1] == "sourcematters sweep: terminated"
    for pid in children:
        with pytest.raises(ProcessLookupError):  # terminated and reaped: no orphan keeps training
            os.kill(pid, 0)
    assert not (root / "results.csv").exists()

    # The same command again (in this process) resumes both programs to complete results.
    assert sweep.main(argv[3:]) == 0
    out = capsys.readouterr().out
    assert "(capacity 1; 2 to run)" in out and "all 2 programs finished" in out
    with open(root / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["member_id"] for r in rows} == set(MEMBERS) and all(r["status"] == "ok" for r in rows)
    assert all(r["epochs_trained"] == "12" for r in rows)
    assert not plan_lib.load_plan(root).pending()
    for name in ("program_000", "program_001"):  # from their checkpoints, not from scratch
        assert "resumed from epoch" in (root / "logs" / f"{name}.log").read_text()


def test_ctrl_c_stops_every_subprocess(tmp_path, monkeypatch):
    # A real SIGINT to this process while run_processes waits on two programs (here stand-ins
    # that sleep): KeyboardInterrupt unwinds through its finally, which stops both.
    from sourcematters_jax.launch import local

    plan = plan_lib.Plan(tmp_path, None, [], [plan_lib.Program(i, i, i + 1, "tag") for i in range(3)],
                         config_spec="unused")
    monkeypatch.setattr(local, "program_command",
                        lambda plan, program: [sys.executable, "-c", "import time; time.sleep(600)"])
    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        started.append(proc)
        if len(started) == 2:
            threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        return proc

    monkeypatch.setattr(local.subprocess, "Popen", popen)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # e.g. under xdist
    try:
        with pytest.raises(KeyboardInterrupt):
            local.run_processes(plan, plan.programs, processes=2, poll_s=0.1)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(started) == 2  # the third never started
    assert all(proc.poll() is not None for proc in started)  # both stopped and reaped
    assert [proc.returncode for proc in started] == [-signal.SIGTERM] * 2


def test_the_launcher_does_not_preallocate_the_gpu_its_children_train_on(monkeypatch):
    # Planning compiles a step in the launcher: its JAX must not take 75% of a GPU, while the
    # program subprocesses keep JAX's default allocator (or the user's explicit choice).
    from sourcematters_jax.launch import local

    monkeypatch.delenv(local.PREALLOCATE, raising=False)
    monkeypatch.setattr(local, "_lazy_launcher", False)
    local.launcher_allocates_lazily()
    assert os.environ[local.PREALLOCATE] == "false"
    assert local.PREALLOCATE not in local.child_environment({"A": "1"})
    assert local.child_environment({"A": "1"})["A"] == "1"

    monkeypatch.setenv(local.PREALLOCATE, "true")  # the user's own setting is kept everywhere
    monkeypatch.setattr(local, "_lazy_launcher", False)
    local.launcher_allocates_lazily()
    assert os.environ[local.PREALLOCATE] == "true"
    assert local.child_environment()[local.PREALLOCATE] == "true"
