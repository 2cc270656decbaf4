"""Run a sweep's pending programs on this machine: in this process, or as several processes.

One process (the default) trains the programs one after another in the launching process, with
its logging on the console: the simplest path and the demo's. With `processes=N > 1`, up to N
programs run at once, each as `python -m sourcematters_jax.launch.program --root=ROOT --program=K` with its output in
`ROOT/logs/program_K.log` (useful on a machine with several accelerators: give each process its
own devices through the environment, e.g. CUDA_VISIBLE_DEVICES, in `env_for`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable, Mapping, Sequence

from sourcematters_jax.launch import plan as plan_lib
from sourcematters_jax.launch import program as program_lib


def _print(message: str) -> None:
    print(f"[launch] {message}", flush=True)


def run_in_process(plan: plan_lib.Plan, programs: Sequence[plan_lib.Program]) -> None:
    """Train `programs` one after another in this process."""
    for n, program in enumerate(programs, 1):
        start = time.time()
        _print(f"{program.name} ({n}/{len(programs)}): members {program.member_indices} "
               f"({program.size}, {program.experiment}) -> {plan.workdir(program)}")
        program_lib.run_program(plan.root, program.index, config=plan.config)
        _print(f"{program.name} done in {time.time() - start:.0f} s")


def program_command(plan: plan_lib.Plan, program: plan_lib.Program) -> list[str]:
    """The command line that trains `program` in a fresh process."""
    return [sys.executable, "-m", "sourcematters_jax.launch.program", f"--root={plan.root}", f"--program={program.index}"]


PREALLOCATE = "XLA_PYTHON_CLIENT_PREALLOCATE"
_lazy_launcher = False  # True once this process turned preallocation off for itself only


def launcher_allocates_lazily() -> None:
    """Keep this launcher's own JAX from preallocating the accelerator its children train on.

    Planning compiles a member step in the launcher; on a GPU, JAX's default allocator would then
    take 75% of the device in this process, and `--processes` children would run out of memory.
    Preallocation is turned off here (unless the user chose a value), and `child_environment`
    gives the children JAX's default back. Call before JAX starts its backend.
    """
    global _lazy_launcher
    if PREALLOCATE not in os.environ:
        os.environ[PREALLOCATE] = "false"
        _lazy_launcher = True


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a program subprocess: this one's plus `extra`, without the launcher's
    own allocator setting (`launcher_allocates_lazily`)."""
    env = dict(os.environ)
    if _lazy_launcher:
        env.pop(PREALLOCATE, None)
    return {**env, **(extra or {})}


def run_processes(plan: plan_lib.Plan, programs: Sequence[plan_lib.Program], processes: int,
                  env_for: Callable[[int], Mapping[str, str]] | None = None,
                  poll_s: float = 1.0) -> None:
    """Train `programs` as subprocesses, at most `processes` at a time.

    However this returns or raises (a failure, Ctrl-C, SIGTERM turned into an exception by
    `cli_errors.terminate_on_sigterm`), no subprocess outlives it: the running ones are sent
    SIGTERM, given `STOP_GRACE_S` to exit, then killed. Their workdirs keep their last
    checkpoints, so running the sweep again resumes them.

    Args:
      env_for: slot (0..processes-1) -> extra environment variables for a process in that slot.
    Raises:
      ChildProcessError: some programs failed (after all others ran); the message lists their logs.
    """
    if not plan.config_spec:
        raise ValueError("running programs as processes needs a config file (the sweep's config_spec)")
    logs = plan.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    queue = list(programs)
    running: dict[int, tuple[plan_lib.Program, subprocess.Popen, float]] = {}
    failed: list[str] = []
    done = 0
    try:
        while queue or running:
            for slot in range(processes):
                if slot not in running and queue:
                    program = queue.pop(0)
                    env = child_environment(env_for(slot) if env_for else None)
                    log_path = logs / f"{program.name}.log"
                    with open(log_path, "w") as log_file:
                        proc = subprocess.Popen(program_command(plan, program), stdout=log_file,
                                                stderr=subprocess.STDOUT, env=env)
                    running[slot] = (program, proc, time.time())
                    _print(f"{program.name}: started (pid {proc.pid}, log {log_path})")
            time.sleep(poll_s)
            for slot, (program, proc, start) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[slot]
                done += 1
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                _print(f"{program.name}: {status} in {time.time() - start:.0f} s [{done}/{len(programs)}]")
                if proc.returncode != 0:
                    failed.append(str(logs / f"{program.name}.log"))
    finally:
        stop_processes([(program, proc) for program, proc, _ in running.values()])
    if failed:
        raise ChildProcessError(f"{len(failed)} program(s) failed; see {', '.join(failed)}")


STOP_GRACE_S = 30.0  # seconds a terminated program gets to exit before it is killed


def stop_processes(running: Sequence[tuple[plan_lib.Program, subprocess.Popen]],
                   grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every still-running process, wait up to `grace_s` in all, then SIGKILL the rest."""
    alive = [(program, proc) for program, proc in running if proc.poll() is None]
    for program, proc in alive:
        _print(f"{program.name}: stopping (pid {proc.pid}); rerun the sweep to resume it")
        proc.terminate()
    deadline = time.monotonic() + grace_s
    for program, proc in alive:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            _print(f"{program.name}: did not stop in {grace_s:.0f} s; killing pid {proc.pid}")
            proc.kill()
            proc.wait()
