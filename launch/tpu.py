"""Run a sweep's pending programs on Cloud TPU VMs through `gcloud ... ssh --worker=all`.

Programs are dealt round-robin to the named TPU VMs; each VM gets one command that runs its
programs one after another on all its workers:

    gcloud compute tpus tpu-vm ssh NAME --zone=ZONE [--project=P] --worker=all \
      --command='cd REPO && python3 -m sourcematters_jax.launch.program --root=ROOT --program=0 --program=2 --distributed'

With `--distributed` (the default for TPU VMs) every worker calls `jax.distributed.initialize()`,
which finds its peers from the TPU metadata, so a pod slice trains one program together.
Requirements: the repository is checked out and installed at REPO on every worker (same commit),
the config spec is relative to REPO (e.g. `configs/tag.py`), and ROOT is the same shared path on
the launching machine and on every worker (a Filestore NFS or GCS FUSE mount).
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Sequence

from sourcematters_jax.launch import plan as plan_lib


def tpu_commands(plan: plan_lib.Plan, programs: Sequence[plan_lib.Program], *, tpus: Sequence[str],
                 zone: str, project: str = "", repo_dir: str = "~/sourcematters-jax",
                 python: str = "python3", distributed: bool = True) -> list[list[str]]:
    """One `gcloud ... --worker=all` argv per TPU VM that has programs to run."""
    if not tpus:
        raise ValueError("name at least one TPU VM (--tpu_name)")
    if not zone:
        raise ValueError("the TPU VMs' zone is required (--tpu_zone)")
    commands = []
    for i, tpu in enumerate(tpus):
        mine = programs[i::len(tpus)]
        if not mine:
            continue
        remote = [python, "-m", "sourcematters_jax.launch.program", f"--root={plan.root}",
                  *[f"--program={p.index}" for p in mine]]
        if distributed:
            remote.append("--distributed")
        command = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}"]
        if project:
            command.append(f"--project={project}")
        # repo_dir stays unquoted so that '~' expands on the worker.
        command += ["--worker=all", f"--command=cd {repo_dir} && {shlex.join(remote)}"]
        commands.append(command)
    return commands


def run_commands(commands: Sequence[Sequence[str]]) -> None:
    """Run the gcloud commands concurrently (one per TPU VM) and wait for all of them."""
    try:
        procs = [subprocess.Popen(list(c)) for c in commands]
    except FileNotFoundError:
        raise RuntimeError("gcloud not found: install the Google Cloud CLI, or use --dry_run "
                           "to print the commands") from None
    codes = [p.wait() for p in procs]
    failed = [c[5] for c, code in zip(commands, codes) if code != 0]
    if failed:
        raise RuntimeError(f"TPU VM command(s) failed on: {', '.join(failed)}")
