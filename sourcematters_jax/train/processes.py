"""The processes of one program (`jax.distributed`): who writes, and agreeing on outcomes.

With `jax.process_count() > 1` every process runs the same program: it loads the same inputs
(deterministically), places its own shards of the members on the global mesh and takes part
in every collective. Process 0 is the writer: it alone holds the workdir lock, claims the
workdir and writes config.json, program.json, the summaries, results.csv and predictions.csv.
(Orbax checkpoints are written by every process, each its own shards: `train.checkpoints`.)

A step only the writer performs can fail (the lock is held, the workdir holds another config);
the other processes must then fail too, with the same message, instead of waiting forever in the
next collective. `agree(fn)` (and `on_writer(fn)`, which drops the result) runs such a step on process 0 and broadcasts its outcome (its
JSON-able result, or its error) to every process; since every process waits for that broadcast,
it is also a barrier: nothing after it runs before the writer's step is done.

With one process every function here is the plain thing (`agree(fn)` is `fn()`): no collective,
no change to a single-process run.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Callable, ContextManager, Iterator

import jax
import numpy as np

from sourcematters_jax.workdir_lock import LockHeld

# The errors a writer's step raises (see cli_errors.USER_ERRORS) are raised again, by name, on
# the other processes; anything else arrives as RuntimeError.
_ERRORS = {cls.__name__: cls for cls in (ValueError, KeyError, FileNotFoundError,
                                         FileExistsError, NotADirectoryError, PermissionError,
                                         OSError, LockHeld, RuntimeError)}
_MESSAGE_BYTES = 16384  # an outcome longer than this is cut (a message, never a result)


def count() -> int:
    """The number of processes of this program (1 without jax.distributed)."""
    return jax.process_count()


def is_writer() -> bool:
    """True on the one process that writes the program's files (process 0)."""
    return jax.process_index() == 0


def agree(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` run on the writer; its result (JSON-able) returned on every process.

    If `fn` raises on the writer, the writer re-raises its own exception and every other
    process raises the same type (by name; RuntimeError if not a user error) with its message
    and "(on process 0)". Every process must call `agree` at the same point of the program.
    """
    if count() == 1:
        return fn(*args)
    from jax.experimental import multihost_utils

    error: BaseException | None = None
    payload = b""
    if is_writer():
        try:
            payload = json.dumps({"value": fn(*args)}).encode()
        except BaseException as e:  # noqa: BLE001 - broadcast first, so nobody waits forever
            error = e
            payload = json.dumps({"error": type(e).__name__, "message": _message(e)}).encode()
        if len(payload) > _MESSAGE_BYTES:
            if error is None:
                raise ValueError(f"agree: {fn!r} returned {len(payload)} bytes of JSON; at most "
                                 f"{_MESSAGE_BYTES} cross to the other processes")
            payload = json.dumps({"error": type(error).__name__,
                                  "message": _message(error)[: _MESSAGE_BYTES // 2]}).encode()
    buffer = np.zeros(_MESSAGE_BYTES, np.uint8)
    buffer[: len(payload)] = np.frombuffer(payload, np.uint8)
    out = multihost_utils.broadcast_one_to_all(
        {"length": np.int32(len(payload)), "bytes": buffer})
    if error is not None:
        raise error
    outcome = json.loads(bytes(np.asarray(out["bytes"])[: int(out["length"])]).decode())
    if "error" in outcome:
        raise _ERRORS.get(outcome["error"], RuntimeError)(f"{outcome['message']} (on process 0)")
    return outcome["value"]


def on_writer(fn: Callable[..., Any], *args: Any) -> None:
    """`fn(*args)` on the writer only (its result dropped), `agree`d: its error is everyone's."""
    def run() -> None:
        fn(*args)

    agree(run)


def writer_first(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` on the writer, then on the others (e.g. loading data the writer may build)."""
    done: list[Any] = []
    on_writer(lambda: done.append(fn(*args)))
    return done[0] if done else fn(*args)


@contextlib.contextmanager
def held_by_writer(make: Callable[[], ContextManager[Any]]) -> Iterator[None]:
    """Enter the context `make()` on the writer only (e.g. the workdir lock), for the block.

    Entering is `agree`d: if it fails on the writer (the lock is held), every process raises.
    """
    with contextlib.ExitStack() as stack:
        on_writer(lambda: stack.enter_context(make()))
        yield


def _message(error: BaseException) -> str:
    from sourcematters_jax import cli_errors

    return cli_errors.message(error) or type(error).__name__
