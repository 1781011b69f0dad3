"""One run at a time in a run folder: ``<out>/.lock`` names the process that holds it.

:class:`RunLock` creates the file exclusively (``O_CREAT | O_EXCL``) with the holder's pid, host
and process start time. A second run finds it and stops at once with :class:`RunLockedError`
(one line, exit 2 from the CLI). A lock left by a killed run is stale and taken over: same host
and its pid no longer runs (or now belongs to a process started at another time, i.e. a reused
pid). A lock from another host cannot be checked and is never taken over; the message says how
to remove it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from osnmf.errors import OsnmfError
from osnmf.run.layout import LOCK

UNREADABLE_GRACE_S = 10.0  # an empty/unreadable lock younger than this may still be being written


class RunLockedError(OsnmfError):
    """The run folder is in use by another run."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5); fields after "comm)" start at 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """The lock of run folder ``folder`` (the folder must exist when :meth:`acquire` is called)."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK
        self.held = False

    def _me(self) -> dict:
        pid = os.getpid()
        return {"pid": pid, "host": socket.gethostname(), "start": _start_time(pid),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}

    def holder(self) -> dict | None:
        """The lock file's content, or None when absent or unreadable."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def stale(self, info: dict | None) -> bool:
        """Whether the holder ``info`` is gone (see the module docstring)."""
        if info is None:  # unreadable: stale unless it may still be being written
            try:
                return time.time() - self.path.stat().st_mtime > UNREADABLE_GRACE_S
            except OSError:
                return True
        if info.get("host") != socket.gethostname():
            return False
        pid = info.get("pid")
        if not isinstance(pid, int) or not _alive(pid):
            return True
        started = _start_time(pid)
        return info.get("start") is not None and started is not None and started != info.get("start")

    def acquire(self) -> RunLock:
        """Take the lock, taking over a stale one; :class:`RunLockedError` if a live run holds it."""
        if self.held:
            return self
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.holder()
                if not self.stale(info):
                    raise RunLockedError(self._busy_message(info)) from None
                self.path.unlink(missing_ok=True)  # a killed run's lock: take it over
                continue
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(self._me(), handle)
            except OSError:  # disk full: no empty lock left behind
                self.path.unlink(missing_ok=True)
                raise
            self.held = True
            return self
        raise RunLockedError(f"{self.path.parent} is in use: its lock {self.path} keeps changing; "
                             "is another osnmf run starting there?")

    def check_free(self) -> None:
        """:class:`RunLockedError` when a live run holds the lock (for a reader; nothing is written)."""
        if self.path.exists() and not self.stale(info := self.holder()):
            raise RunLockedError(self._busy_message(info))

    def _busy_message(self, info: dict | None) -> str:
        folder = self.path.parent
        if info is None:
            return f"{folder} is in use by another osnmf run (lock {self.path} is being written); try again"
        who = f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"
        if info.get("host") != socket.gethostname():
            return (f"{folder} is in use by another osnmf run ({who}); if no run is active there, "
                    f"delete {self.path}")
        return f"{folder} is in use by another osnmf run ({who}); wait for it to finish or use another --out"

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held:
            info = self.holder()
            if info is None or info.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
