"""How the launcher owns its device processes: each dies with the launcher (a parent-death
signal, Linux), keeps to its cores and enters its network namespace (all set between fork and
exec); SIGINT, SIGTERM and SIGHUP of the launcher end the run as an interruption, and are held
back while the children are killed; a lock keeps one run per run folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from snnas.errors import CheckpointError, shorten

__all__ = ["STOP_SIGNALS", "child_setup", "plan_cores", "run_lock", "signals_held",
           "stop_signals_interrupt"]  # fmt: skip

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_CLONE_NEWNET = 0x40000000  # linux/sched.h
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
#: Signals that end a run as an interruption (exit code 130 in the CLI), children killed.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def plan_cores(processes: int, threads: int) -> list[set[int]] | None:
    """The cores of each device process when every process can have ``threads`` cores of its
    own (among those this process may use); None when there are not enough."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if processes * threads > len(cores):
        return None
    return [set(cores[r * threads : (r + 1) * threads]) for r in range(processes)]


def child_setup(parent: int, cores: set[int] | None, netns: str | None) -> Callable[[], None]:
    """What a device process does between fork and exec (``preexec_fn``): die with the
    launcher, keep to its cores, enter its network namespace."""

    def setup() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the launcher died before the line above
                os._exit(1)
        if cores:
            os.sched_setaffinity(0, cores)
        if netns is not None:
            if _LIBC is None:
                raise OSError("network namespaces need Linux")
            fd = os.open(netns, os.O_RDONLY)
            if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {netns}")
            os.close(fd)

    return setup


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` for the whole run: a second run of the same name is refused while
    this one runs (the lock goes with the process, however it ends)."""
    path = out / ".lock"
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        where = shorten(str(path))
        raise CheckpointError(f"{where}: cannot open the run's lock ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise CheckpointError(
                f"{shorten(str(out))}: another snnas run (pid {shorten(holder, 20)}) is writing "
                "there now; wait for it to end or pass another --name"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the run as Ctrl-C does (KeyboardInterrupt; SIGINT
    too, even where the shell started the launcher with it ignored), so the children are
    killed and the emulated links removed on the way out (main thread only)."""
    if sys.platform == "win32" or not _is_main_thread():
        yield
        return

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold back SIGINT, SIGTERM and SIGHUP while the children are killed and the links
    removed: a second Ctrl-C does not cut the clean-up short (it is delivered after)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
