"""SIGTERM inside `terminate_on_sigterm` raises `Terminated`, even when it first lands where Python
would swallow the exception (a gc callback, as JAX registers one): it is delivered again."""

import gc
import os
import signal
import sys
import threading
import time

import pytest

from sourcematters_jax import cli_errors

pytestmark = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason="signal handlers are installed only in the main thread")


def _wait_for_terminated(seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    raise AssertionError(f"no Terminated within {seconds} s")


def test_sigterm_raises_terminated():
    with cli_errors.terminate_on_sigterm():
        with pytest.raises(cli_errors.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            _wait_for_terminated()


def test_sigterm_landing_in_a_gc_callback_is_delivered_again():
    landed = []

    def callback(phase, info):  # SIGTERM's handler runs here, inside the collector
        if phase == "start" and not landed:
            landed.append(cli_errors._swallows_exceptions(sys._getframe()))
            cli_errors._raise_terminated(signal.SIGTERM, sys._getframe())

    gc.callbacks.append(callback)
    try:
        with cli_errors.terminate_on_sigterm():
            with pytest.raises(cli_errors.Terminated):
                gc.collect()  # the handler must not raise in here: it would be "ignored"
                _wait_for_terminated()
    finally:
        gc.callbacks.remove(callback)
    assert landed == [True]


def test_a_del_frame_counts_as_swallowing_and_a_plain_one_does_not():
    class Finalised:
        def __del__(self):
            self.deferred = cli_errors._swallows_exceptions(sys._getframe())
            seen.append(self.deferred)

    seen = []
    Finalised()
    assert seen == [True]
    assert not cli_errors._swallows_exceptions(sys._getframe())
