"""Exclusive directory locks: one launcher per sweep root, one trainer per program workdir.

`hold(directory)` takes an OS file lock (`fcntl.flock`, exclusive, non-blocking) on
`DIRECTORY/.lock` and keeps it until the block ends or the process dies (the kernel releases a
dead process's locks, so a crashed or killed holder never leaves a stale lock behind). The lock
file records the holder (pid, host, start time, command line), so a second process that finds the
directory locked is refused with `LockHeld`, whose message names the holder.

Nothing else is written: a directory the lock had to create is removed again on release if the
lock file is all it holds (a failed start leaves no empty workdir). flock works on local disks
and on NFSv4 (Linux maps it to POSIX byte-range locks there); on filesystems without locking,
`hold` raises `LockHeld` only when the kernel refuses the lock, so keep sweep roots on shared
filesystems that lock (Filestore NFS does).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import pathlib
import socket
import sys
import time
from typing import Iterator

LOCK_FILE = ".lock"


class LockHeld(RuntimeError):
    """Another process holds the lock; the message names it (pid, host, since, command)."""


def _holder_text(lock_path: pathlib.Path) -> str:
    try:
        info = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process (no holder recorded)"
    return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')} "
            f"(`{info.get('command', '?')}`)")


def _check_directory(directory: pathlib.Path, what: str) -> None:
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{what} {directory} is a file, not a directory")


def _acquire(lock_path: pathlib.Path, what: str, wait_s: float, poll_s: float) -> int:
    """An open descriptor holding the exclusive lock on `lock_path` (retrying up to `wait_s`)."""
    deadline = time.monotonic() + wait_s
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            if time.monotonic() >= deadline:
                raise LockHeld(f"{what} {lock_path.parent} is in use by {_holder_text(lock_path)}; "
                               "wait for it to finish or stop it (its lock is released when it "
                               "exits)") from None
            time.sleep(poll_s)
            continue
        # A releasing holder may have removed the file after we opened it: then we locked an
        # orphan inode, and must lock the file that is there now.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def hold(directory: str | os.PathLike, *, what: str = "directory", wait_s: float = 0.0,
         poll_s: float = 0.5) -> Iterator[pathlib.Path]:
    """Hold the exclusive lock of `directory` (created if missing) for the block.

    Args:
      directory: the sweep root or program workdir to lock.
      what: its name in messages ('sweep root', 'workdir').
      wait_s: seconds to keep trying while another process holds it (0 = refuse at once).
    Yields:
      the directory's absolute path.
    Raises:
      LockHeld: another process holds the lock (after `wait_s`); the message names it.
      NotADirectoryError: `directory` is an existing file.
      PermissionError: the directory cannot be created or written.
    """
    directory = pathlib.Path(directory).absolute()
    _check_directory(directory, what)
    created = [p for p in (directory, *directory.parents) if not p.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / LOCK_FILE
    try:
        fd = _acquire(lock_path, what, wait_s, poll_s)
    except BaseException:
        _remove_created(created, lock_path, locked=False)
        raise
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.datetime.now().isoformat(timespec="seconds"),
                  "command": " ".join([pathlib.Path(sys.argv[0]).name, *sys.argv[1:]])[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield directory
    finally:
        _remove_created(created, lock_path, locked=True)
        os.close(fd)  # releases the lock


def _remove_created(created: list[pathlib.Path], lock_path: pathlib.Path, locked: bool) -> None:
    """Remove the directories `hold` created if they hold nothing but the lock file."""
    for path in created:  # innermost first
        try:
            contents = list(path.iterdir())
        except OSError:
            return
        if contents == [lock_path] and locked:
            lock_path.unlink(missing_ok=True)
        elif contents:
            return
        try:
            path.rmdir()
        except OSError:
            return
