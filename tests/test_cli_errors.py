"""User errors are one clear line (no traceback) in every command, and nothing is written first:
bad config values and keys, missing inputs, a root that is a file, a locked directory, a workdir
of another config, Ctrl-C; the lock module itself; convert's order of checks."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sourcematters_jax.launch import config_io, plan as plan_lib, sweep
from sourcematters_jax import cli, cli_errors, workdir_lock
from sourcematters_jax.train import config as config_lib, loop, summaries

REPO = pathlib.Path(__file__).resolve().parent.parent
TAG = str(REPO / "configs" / "tag.py")
SMOKE = str(REPO / "configs" / "smoke.py")
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

HOLDER = textwrap.dedent("""
    import sys, time
    from sourcematters_jax import workdir_lock
    with workdir_lock.hold(sys.argv[1], what="sweep root"):
        print("held", flush=True)
        time.sleep(600)
""")


@pytest.fixture
def holder(tmp_path):
    """A separate process holding the lock of tmp_path/'root'."""
    root = tmp_path / "root"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE,
                            text=True, env=ENV)
    assert proc.stdout.readline().strip() == "held"
    yield root, proc
    proc.kill()
    proc.wait()


def test_lock_refuses_a_second_process_naming_the_holder_and_frees_on_death(holder):
    root, proc = holder
    with pytest.raises(workdir_lock.LockHeld, match=f"sweep root {root} is in use by pid {proc.pid} on "):
        with workdir_lock.hold(root, what="sweep root"):
            pass
    start = time.monotonic()
    with pytest.raises(workdir_lock.LockHeld):
        with workdir_lock.hold(root, wait_s=1.0, poll_s=0.1):
            pass
    assert time.monotonic() - start >= 1.0  # waited, then refused
    proc.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
    proc.wait()
    with workdir_lock.hold(root, what="sweep root"):
        info = json.loads((root / workdir_lock.LOCK_FILE).read_text())
        assert info["pid"] == os.getpid() and info["host"] and info["since"]


def test_lock_removes_a_directory_it_created_and_refuses_a_file(tmp_path):
    with workdir_lock.hold(tmp_path / "a" / "b") as d:
        assert d.is_dir()
    assert not (tmp_path / "a").exists()  # nothing but the lock was there
    with workdir_lock.hold(tmp_path / "c") as d:
        (d / "kept").write_text("x")
    assert (tmp_path / "c" / "kept").is_file()
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        with workdir_lock.hold(tmp_path / "f"):
            pass


def test_train_and_evaluate_refuses_a_workdir_another_process_trains(tmp_path):
    config = config_io.load_config(SMOKE, [f"data_dir={tmp_path / 'tfds'}"])
    with workdir_lock.hold(tmp_path / "w", what="workdir"):  # a second open file: flock conflicts
        with pytest.raises(workdir_lock.LockHeld, match=f"workdir {tmp_path / 'w'} is in use by pid {os.getpid()}"):
            loop.train_and_evaluate(config, tmp_path / "w")
    assert not (tmp_path / "tfds").exists()  # refused before any data was built


def test_workdir_of_another_config_names_the_differing_keys(tmp_path):
    config = config_io.load_config(SMOKE)
    other = config_io.load_config(SMOKE, ["batch_size=8", "model.width=2"])
    (tmp_path / loop.CONFIG_FILE).write_text(config_lib.identity_json(other))
    with pytest.raises(ValueError, match=r"config keys differ: batch_size, model.width\); use another"):
        loop.check_workdir(config, tmp_path)


@pytest.mark.parametrize("override, message", [
    ("num_epochs=-1", "config.num_epochs: must be at least 1 (got -1)"),
    ("batch_size=0", "config.batch_size: must be at least 1 (got 0)"),
    ("execution.strategy=fast", "config.execution.strategy: expected one of"),
    ("batchsize=8", "unknown config key 'batchsize' in override --config.batchsize=8; did you mean batch_size"),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_sweep_validates_config_values_before_writing(tmp_path, capsys, override, message, dry_run):
    root = tmp_path / "root"
    argv = [f"--config={SMOKE}", f"--root={root}", f"--config.{override}", "--members_per_program=1"]
    assert sweep.main(argv + (["--dry_run"] if dry_run else [])) == 2
    err = capsys.readouterr().err
    assert f"sourcematters sweep: error: {message}" in err and "Traceback" not in err
    assert not root.exists()


def test_sweep_reports_missing_inputs_in_dry_run_and_refuses_before_writing(tmp_path, capsys):
    root = tmp_path / "root"
    argv = [f"--config={TAG}:weights={tmp_path / 'w'}", f"--root={root}", "--members_per_program=30",
            f"--config.manual_dir={tmp_path / 'raw'}", f"--config.data_dir={tmp_path / 'tfds'}"]
    assert sweep.main(argv + ["--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "missing inputs (3); a real run refuses to start" in out
    assert f"config.sources.imagenet: {tmp_path / 'w' / 'imagenet'}: no metadata.json" in out
    assert f"config.manual_dir={tmp_path / 'raw'} is not a directory" in out
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert "error: missing inputs, nothing was written" in err and "radimagenet" in err
    assert not root.exists()


def test_root_that_is_a_file_and_a_locked_root_are_one_line(tmp_path, capsys, holder):
    file_root = tmp_path / "file"
    file_root.write_text("x")
    base = [f"--config={SMOKE}", "--members_per_program=1"]
    for extra in ([], ["--dry_run"]):
        assert sweep.main(base + [f"--root={file_root}"] + extra) == 2
        assert f"{file_root} is a file, not a directory" in capsys.readouterr().err
    root, proc = holder
    assert sweep.main(base + [f"--root={root}"]) == 2
    err = capsys.readouterr().err
    assert f"error: sweep root {root} is in use by pid {proc.pid}" in err and err.count("\n") == 1


def test_a_manifest_no_program_used_is_replaced_by_the_corrected_command(tmp_path, capsys):
    root = tmp_path / "root"
    first = config_io.load_config(SMOKE, ["batch_size=16"])  # e.g. a start that then failed
    plan_lib.write_manifest(plan_lib.make_plan(root, first, 1, config_spec=SMOKE))
    fixed = config_io.load_config(SMOKE)
    assert "batch_size differ), but no program has started under it" in sweep.replaceable_manifest(root, fixed)
    assert sweep.main([f"--config={SMOKE}", f"--root={root}", "--members_per_program=1", "--dry_run"]) == 0
    assert "a real run replaces it" in capsys.readouterr().out
    # Once a program has claimed its workdir, the manifest binds, and the keys are named.
    (root / "program_000").mkdir()
    (root / "program_000" / loop.CONFIG_FILE).write_text("{}")
    assert sweep.replaceable_manifest(root, fixed) == ""
    assert sweep.main([f"--config={SMOKE}", f"--root={root}", "--members_per_program=1", "--dry_run"]) == 2
    assert "config keys differ: batch_size" in capsys.readouterr().err


def test_fresh_deletes_only_the_launchers_outputs(tmp_path, capsys):
    root = tmp_path / "root"
    for d in ("program_000", "program_001", "logs", "tfds", "notes"):
        (root / d).mkdir(parents=True)
    (root / "sweep.json").write_text("{}")  # even an unreadable manifest: --fresh starts over
    (root / "results.csv").write_text("x")
    assert sweep.main([f"--config={SMOKE}", f"--root={root}", "--members_per_program=1", "--dry_run",
                       "--fresh"]) == 0
    out = capsys.readouterr().out
    assert "--fresh would delete 5 entries" in out and "4 members in 4 programs (capacity 1; 4 to run)" in out
    assert (root / "sweep.json").exists()  # a dry run deletes nothing
    sweep.delete_runs(root)
    assert sorted(p.name for p in root.iterdir()) == ["notes", "tfds"]


def test_budget_error_suggests_device_memory_gib(capsys):
    assert sweep.main([f"--config={SMOKE}", "--root=/nonexistent/r", "--dry_run",
                       "--device_memory_gib=0.0001"]) == 2
    err = capsys.readouterr().err
    assert "lower batch_size" in err and "pass its memory with --device_memory_gib=GIB" in err


def test_guard_turns_user_errors_and_ctrl_c_into_one_line(capsys):
    def fail(error):
        raise error

    assert cli_errors.guard("x", fail, PermissionError(13, "Permission denied", "/r/sweep.json")) == 2
    assert capsys.readouterr().err == "x: error: [Errno 13] Permission denied: '/r/sweep.json'\n"
    assert cli_errors.guard("x", fail, KeyError("unknown config key 'a'")) == 2
    assert capsys.readouterr().err == "x: error: unknown config key 'a'\n"
    assert cli_errors.guard("x", fail, KeyboardInterrupt()) == 130
    assert capsys.readouterr().err.strip() == "x: interrupted"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        cli_errors.guard("x", fail, ZeroDivisionError())


def test_train_command_errors_are_one_line(tmp_path, capsys):
    # Checked before absl parses the flags (config_flags would show a traceback).
    assert cli.main(["train", f"--config={SMOKE}", "--config.batchsize=8", f"--workdir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "sourcematters train: error: unknown config key 'batchsize'" in err and "did you mean batch_size" in err
    assert cli.main(["train", f"--config={SMOKE}", "--config.num_epochs=-1", f"--workdir={tmp_path}"]) == 2
    assert "config.num_epochs: must be at least 1" in capsys.readouterr().err
    assert cli.main(["train", "--config=configs/nope.py", f"--workdir={tmp_path}"]) == 2
    assert "config file 'configs/nope.py'" in capsys.readouterr().err


def test_train_in_a_workdir_of_another_config_is_one_line(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / loop.CONFIG_FILE).write_text(config_io.load_config(SMOKE, ["batch_size=8"]).to_json())
    proc = subprocess.run([sys.executable, "-m", "sourcematters_jax.main", f"--config={SMOKE}",
                           f"--workdir={workdir}", f"--config.data_dir={tmp_path / 'tfds'}"],
                          capture_output=True, text=True, timeout=300, env=ENV, cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "holds the outputs of a different config" in proc.stderr and "config keys differ: batch_size" in proc.stderr


def test_ctrl_c_in_a_command_is_exit_130_and_one_line(tmp_path):
    # A real SIGINT while `sourcematters sweep` works: sent once the launcher has written its
    # manifest (it is then running the program, which takes far longer than the wait).
    root = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "sourcematters_jax.cli", "sweep", f"--config={SMOKE}",
                             f"--root={root}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    deadline = time.monotonic() + 120
    while not (root / "sweep.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith("interrupted")


def test_convert_names_a_missing_or_corrupt_input_before_guessing_the_source(tmp_path, capsys):
    from sourcematters_jax.convert_weights import cli as convert_cli

    missing = tmp_path / "nodir" / "weights.h5"
    assert convert_cli.main(["--input", str(missing), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"--input {missing}: no such file (directory {missing.parent} does not exist)" in err
    assert "cannot tell the source" not in err
    assert convert_cli.main(["--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "is a directory; pass the .h5 weight file" in capsys.readouterr().err
    corrupt = tmp_path / "mystery.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # an HDF5 signature, then garbage
    assert convert_cli.main(["--input", str(corrupt), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(corrupt) in err and "cannot tell the source" not in err
    assert not (tmp_path / "o").exists()


def test_progress_line_has_no_work_unit_prefix_and_eta_in_seconds(caplog):
    assert summaries.format_eta(42.4) == "42 s" and summaries.format_eta(185) == "3 min 05 s"
    assert summaries.format_eta(7620) == "2 h 07 min" and summaries.format_eta(float("inf")) == "?"

    class Writer:
        scalars = []

        def write_scalars(self, step, values):
            self.scalars.append((step, dict(values)))

    progress = summaries.make_progress(100, Writer(), every_secs=1.0)
    with caplog.at_level("INFO"):
        progress(0, t=0.0)
        progress(10, t=2.0)  # 5 steps/s: 90 steps left -> 18 s
    (line,) = [r.getMessage() for r in caplog.records if "progress" in r.getMessage()]
    assert line == "progress: 5.0 steps/s, 10.0% (10/100), ETA 18 s"
    assert "work unit" not in caplog.text
    assert Writer.scalars[0][0] == 10 and Writer.scalars[0][1]["steps_per_sec"] == 5.0


def test_train_with_missing_raw_images_is_one_line(tmp_path):
    # The study dataset, not built, with a manual_dir that does not exist: one line naming it.
    # (A subprocess: config_flags registers --config.KEY flags from the process's own argv.)
    argv = ["train", f"--config={TAG}:source=random,p_art=0,fold=1", f"--workdir={tmp_path / 'w'}",
            f"--config.data_dir={tmp_path / 'tfds'}", f"--config.manual_dir={tmp_path / 'raw'}",
            "--config.image_size=16", "--config.model.stage_sizes=(1,)", "--config.model.width=2"]
    proc = subprocess.run([sys.executable, "-m", "sourcematters_jax.cli", *argv], capture_output=True,
                          text=True, timeout=300, env=ENV, cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "sourcematters train: error:" in proc.stderr and str(tmp_path / "raw") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "w" / "config.json").exists()
