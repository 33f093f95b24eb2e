"""Processes of a lab run: started inside a namespace, bounded in time, always stopped.

Each process gets a session of its own, so that a Ctrl-C at the terminal reaches the lab alone
and the lab stops its processes in its own order: traffic first, then the captures, then the
services. Stopping signals the whole process group (tools such as hydra and sshd fork), waits,
then kills what is left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from antinex.logs import event

log = logging.getLogger("antinex.lab")


@dataclass
class LabProcess:
    """One started process and what became of it."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    started_ns: int
    ended_ns: int = 0
    returncode: int | None = None
    stopped_by_lab: bool = False  # the lab ended it (deadline or shutdown) rather than itself

    def poll(self) -> int | None:
        """The exit code once the process has ended (recording when), else None."""
        if self.returncode is None:
            code = self.popen.poll()
            if code is not None:
                self.returncode, self.ended_ns = code, time.time_ns()
        return self.returncode

    @property
    def running(self) -> bool:
        return self.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Supervisor:
    """Starts processes with their output in ``log_dir`` and stops every one of them."""

    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    processes: list[LabProcess] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], cwd: Path | None = None) -> LabProcess:
        """Start ``argv`` (already prefixed with ``ip netns exec NS`` by the caller)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        output: IO[bytes] = log_path.open("wb")
        env = {**os.environ, **self.env}
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        finally:
            output.close()
        process = LabProcess(name, list(argv), log_path, popen, time.time_ns())
        self.processes.append(process)
        event(log, logging.DEBUG, "lab_process_started", process=name, pid=popen.pid)
        return process

    def stop(self, process: LabProcess, sig: int = signal.SIGTERM, grace_s: float = 5.0) -> None:
        """Send ``sig`` to the process group, wait ``grace_s``, then SIGKILL what remains."""
        if not process.running:
            return
        process.stopped_by_lab = True
        _signal_group(process.popen.pid, sig)
        deadline = time.monotonic() + grace_s
        while process.running and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.running:
            _signal_group(process.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=5)
            process.poll()
        else:  # the leader ended; children it forked may still hold the group
            _signal_group(process.popen.pid, signal.SIGKILL)

    def stop_all(self, grace_s: float = 3.0) -> None:
        """Stop every process still running, the most recently started first."""
        for process in reversed(self.processes):
            self.stop(process, grace_s=grace_s)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_for_text(process: LabProcess, needle: str, timeout_s: float) -> bool:
    """Wait until ``needle`` appears in the process's output; False on timeout or exit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in process.log_text():
            return True
        if not process.running:
            return needle in process.log_text()
        time.sleep(0.05)
    return False
