"""A real (tiny) sweep through submitit's local executor: two programs train, a relaunch skips both,
and the job entry point runs behind jax.distributed.initialize()."""

import csv
import socket
import subprocess
import sys

from sourcematters_jax.launch import plan as plan_lib, sweep

# configs/smoke.py with one source (2 members: p_art 0 and 1), one ResNet stage (quicker to
# compile), and the synthetic images generated at 64 px instead of 256 (seconds to build, not a minute).
CONFIG = """
from sourcematters_jax.configs import smoke

def get_config(arg=None):
    config = smoke.get_config(arg)
    config.sweep.source = ("random",)
    config.model.stage_sizes = (1,)
    with config.data_options.unlocked():
        config.data_options.full_size = 64
    return config
"""


def test_two_program_smoke_sweep_then_relaunch_skips_both(tmp_path, capsys):
    config_file = tmp_path / "tiny_smoke.py"
    config_file.write_text(CONFIG)
    root = tmp_path / "sweep"
    argv = [f"--config={config_file}:epochs=1", f"--root={root}", "--executor=submitit_local",
            "--members_per_program=1", f"--config.data_dir={tmp_path / 'tfds'}", "--timeout_min=10"]

    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 members in 2 programs" in out and "submitted 2 job(s)" in out
    with open(root / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted({(r["member_id"], r["test_set"]) for r in rows}) == sorted(
        (f"tag-random-p{p}-f1-s812", t) for p in (0, 1) for t in ("iid", "ood", "clean"))
    assert all(r["status"] == "ok" and 0.0 <= float(r["auc"]) <= 1.0 for r in rows)
    assert all(r["epochs_trained"] == "1" for r in rows)
    for name in ("program_000", "program_001"):
        assert (root / name / "checkpoints").is_dir()  # trained there, by the job

    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert "(capacity 1; 0 to run)" in out and "submitted" not in out
    assert out.count("finished") >= 2
    assert not plan_lib.load_plan(root).pending()

    # An interrupted program (checkpoints but no results.csv) is the only one run again, here as
    # a subprocess of the local executor; it resumes from its checkpoint to the same results.
    before = (root / "program_001" / "results.csv").read_text()
    (root / "program_001" / "results.csv").unlink()
    assert sweep.main(argv[:2] + ["--executor=local", "--processes=2"] + argv[3:]) == 0
    out = capsys.readouterr().out
    assert "(capacity 1; 1 to run)" in out and "program_001: done" in out and "program_000: started" not in out
    assert (root / "program_001" / "results.csv").read_text() == before
    assert (root / "logs" / "program_001.log").is_file()

    # The job entry point with --distributed: jax.distributed.initialize() (a one-process
    # "cluster" on localhost here), then both programs are found finished and skipped.
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    job = subprocess.run([sys.executable, "-m", "sourcematters_jax.launch.program", f"--root={root}", "--program=0",
                          "--program=1", "--distributed", f"--coordinator_address=localhost:{port}",
                          "--num_processes=1", "--process_id=0"],
                         capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr[-2000:]
    assert "jax.distributed: process 0 of 1" in job.stderr
    assert job.stderr.count("finished, skipping") == 2
