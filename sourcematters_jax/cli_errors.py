"""One clean line, no traceback, for a user error in any command; exit 130 on Ctrl-C, 143 on SIGTERM.

Every command's entry point runs its work through `guard(prog, fn, ...)`:

- a user error (a bad file, directory, permission, config value or key, a workdir of another
  config, a directory locked by another process) prints `PROG: error: MESSAGE` on stderr and
  returns 2. The message is the exception's own, which names the file, key or field;
- Ctrl-C prints `PROG: interrupted` and returns 130 (128 + SIGINT), as shells expect;
- SIGTERM (inside `with terminate_on_sigterm():`) unwinds the same way (so `finally` blocks run, e.g.
  a launcher stopping its subprocesses) and returns 143 (128 + SIGTERM).

Anything else is a bug and keeps its traceback. Set SOURCEMATTERS_TRACEBACK=1 to see the traceback
of a user error too.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterator

from sourcematters_jax.workdir_lock import LockHeld

# What bad input raises in this project: config_io.LOAD_ERRORS (FileNotFoundError, KeyError,
# ValueError, e.g. config.validate), OSError for files and permissions, LockHeld for a busy root.
USER_ERRORS = (OSError, KeyError, ValueError, LockHeld)
EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM (see `terminate_on_sigterm`); not an Exception, so
    only `finally` blocks and `guard` see it."""


# How long a SIGTERM that arrived in a context that would swallow `Terminated` waits before it
# is delivered again (see `_raise_terminated`).
REDELIVER_S = 0.05


def _raise_terminated(signum: int, frame: Any) -> None:
    """The SIGTERM handler: raise `Terminated`, unless Python would swallow it right there.

    A handler runs in whatever Python code the main thread is executing, and that can be a
    garbage-collector callback (JAX registers one) or a `__del__`: an exception raised there is
    printed as "Exception ignored in ..." and lost, and the program would carry on as if never
    signalled. In such a frame the signal is sent again a moment later instead.
    """
    if _swallows_exceptions(frame):
        timer = threading.Timer(REDELIVER_S, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()
        return
    raise Terminated()


def _swallows_exceptions(frame: Any) -> bool:
    """True if `frame` or a caller is a gc callback or a `__del__` (their errors are ignored)."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` in the main thread (no-op off it); the
    previous handler comes back afterwards (so calling a command's main in-process, e.g. in
    tests, leaves the caller's handling alone)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (e.g. inside a test runner's worker thread)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def message(error: BaseException) -> str:
    """The user-facing text of an error (a KeyError's str() adds quotes; OSError keeps its path)."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and error.filename and str(error.filename) not in str(error):
        return f"{error}: {error.filename}"
    return str(error) or type(error).__name__


def guard(prog: str, fn: Callable[..., int | None], *args: Any, **kwargs: Any) -> int:
    """Run `fn(*args, **kwargs)`; a user error, Ctrl-C or SIGTERM becomes one line and a status."""
    try:
        return int(fn(*args, **kwargs) or 0)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    except USER_ERRORS as e:
        if os.environ.get("SOURCEMATTERS_TRACEBACK"):
            raise
        print(f"{prog}: error: {message(e)}", file=sys.stderr, flush=True)
        return EXIT_USAGE
