"""Run a sweep's pending programs as a Slurm job array through submitit.

Each program is one array task: `ProgramJob(root, index, config, distributed)`, pickled by
submitit into `ROOT/submitit/`. The job is `Checkpointable`: on preemption or time-out submitit
requeues the same call, and the program resumes from its workdir's checkpoints. With
`cluster='local'` the same code runs through `submitit.LocalExecutor` (the tests do this);
`cluster=None` lets submitit pick Slurm when `sbatch` is available.

A program spanning several nodes (`nodes > 1`, or several tasks per node) sets `distributed=True`:
every task calls `jax.distributed.initialize()`, which reads the Slurm environment.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Mapping, Sequence

import ml_collections

# submitit configures logging with logging.config.dictConfig at import, which closes every handler
# the host program already has (e.g. its console log). Keep ours: submitit's records still reach
# the root logger's handlers. Set SUBMITIT_LOG_LEVEL yourself to get submitit's own set-up.
os.environ.setdefault("SUBMITIT_LOG_LEVEL", "NOCONFIG")
import submitit  # noqa: E402

from sourcematters_jax.launch import plan as plan_lib
from sourcematters_jax.launch import program as program_lib


class ProgramJob(submitit.helpers.Checkpointable):
    """One program as a submitit job; requeued unchanged on preemption (it resumes itself)."""

    def __call__(self, root: str, index: int, config: ml_collections.ConfigDict,
                 distributed: bool = False) -> str:
        program_lib.setup_job()
        if distributed:
            program_lib.initialize_distributed()
        return str(program_lib.run_program(root, index, config=config))


def submit(plan: plan_lib.Plan, programs: Sequence[plan_lib.Program], *,
           cluster: str | None = None, parameters: Mapping[str, Any] | None = None,
           distributed: bool = False) -> list[submitit.Job]:
    """Submit `programs` as one job array; returns the submitit jobs (not waited for).

    Args:
      cluster: 'slurm', 'local' (submitit.LocalExecutor), or None for submitit's auto-detection.
      parameters: submitit AutoExecutor parameters, e.g. timeout_min, nodes, gpus_per_node,
        tasks_per_node, cpus_per_task, mem_gb, slurm_partition, slurm_account,
        slurm_array_parallelism, slurm_additional_parameters. Unknown names are errors.
    """
    folder = pathlib.Path(plan.root) / "submitit"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"name": f"sourcematters-{plan.root.name}", **(parameters or {})}
    try:
        executor.update_parameters(**params)
    except NameError as e:  # submitit reports unknown parameters as NameError.
        raise ValueError(f"bad Slurm/submitit parameter: {e}") from None
    multi = int(params.get("nodes", 1)) > 1 or int(params.get("tasks_per_node", 1)) > 1
    n = len(programs)
    return executor.map_array(ProgramJob(), [str(plan.root)] * n, [p.index for p in programs],
                              [plan.config] * n, [distributed or multi] * n)


def wait(jobs: Sequence[submitit.Job], on_done=None) -> list[str]:
    """Wait for all jobs; returns their results.csv paths. Raises the first job's error after all end."""
    results, errors = [], []
    for job in jobs:
        try:
            results.append(job.result())
        except Exception as e:  # noqa: BLE001 - report every failed job, then raise.
            errors.append(f"job {job.job_id}: {e}")
            continue
        if on_done:
            on_done(job)
    if errors:
        raise RuntimeError("; ".join(errors))
    return results
