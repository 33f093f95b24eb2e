"""One lab run: build the network, start the services and captures, play the scenario's timeline,
then stop everything, remove the network and write the labels and the summary.

Whatever ends the run (its end, an error, Ctrl-C, SIGTERM), the processes are stopped and the
namespaces deleted before it returns; a second Ctrl-C during that cleanup is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antinex.logs import event
from antinex.options import UsageError
from lab import report
from lab.labels import TAIL_S, AttackWindow, write_label_file
from lab.network import LabNetwork
from lab.processes import LabProcess, Supervisor
from lab.scenario import AttackStep, BenignStep, Scenario
from lab.services import (
    SITE,
    Captures,
    StreamTarget,
    start_captures,
    start_services,
    stop_captures,
)
from lab.tools import ACTIVITIES, ATTACKS, SERVICE_BINARIES, Target

log = logging.getLogger("antinex.lab")

_TICK_S = 0.1


def missing_requirements(scenario: Scenario) -> str | None:
    """One sentence saying what the run lacks (root, programs), or None when nothing."""
    if os.geteuid() != 0:
        return (
            "antinex lab run builds network namespaces and needs root; run it as root "
            "(for example with sudo)"
        )
    needed = dict(SERVICE_BINARIES)
    for name in scenario.programs():
        program = ATTACKS.get(name) or ACTIVITIES[name]
        needed[program.binary] = program.package
        needed.update(dict(program.extra_binaries))
    missing = sorted({package for binary, package in needed.items() if not shutil.which(binary)})
    if missing:
        return (
            f"scenario {scenario.name} needs Debian packages that are not installed; install "
            f"them with `apt-get install {' '.join(missing)}`"
        )
    return None


@dataclass
class RunState:
    """What the timeline started, for the summary and the label file."""

    attacks: list[tuple[AttackStep, LabProcess]] = field(default_factory=list)
    benign: list[tuple[str, str, LabProcess]] = field(default_factory=list)
    skipped: list[AttackStep] = field(default_factory=list)
    started_ns: int = 0
    ended_ns: int = 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_lab(
    scenario: Scenario,
    out: Path,
    duration_s: float | None = None,
    stream: StreamTarget | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` for ``duration_s`` (default: its own) into ``out``, also streaming the
    capture to Kafka when ``stream`` says where; return the summary."""
    problem = missing_requirements(scenario)
    if problem:
        raise UsageError(problem)
    duration = duration_s or scenario.duration_s
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("capture.pcap", "records.jsonl", "labels.json", "summary.json"):
            (out / stale).unlink(missing_ok=True)
    except OSError as err:
        raise UsageError(f"cannot write the run's files to --out {out} ({err.strerror})") from err
    workdir = Path(tempfile.mkdtemp(prefix="anx-lab-"))
    (workdir / "home").mkdir()
    supervisor = Supervisor(out / "logs", env=_child_env(workdir))
    network = LabNetwork(scenario.clients, scenario.attackers)
    state, capture_report, interrupted = RunState(), {}, False
    captures: Captures | None = None
    service_notes: list[str] = []
    event(log, logging.INFO, "lab_run_started", scenario=scenario.name, duration_s=duration)
    try:
        with _sigterm_as_interrupt():
            network.build()
            service_notes = start_services(network, supervisor, workdir).notes
            captures = start_captures(network, supervisor, out, stream)
            _play(scenario, _Timeline(network, supervisor, workdir, state, duration))
    except KeyboardInterrupt:
        interrupted = True
        event(log, logging.WARNING, "lab_run_interrupted", scenario=scenario.name)
    finally:
        with _signals_ignored():
            _stop_traffic(state, supervisor)
            if captures is not None:
                time.sleep(0 if interrupted else TAIL_S + 0.5)  # the last answers, on record
                capture_report = stop_captures(captures, supervisor)
            supervisor.stop_all()
            network.teardown()
            shutil.rmtree(workdir, ignore_errors=True)
            event(log, logging.INFO, "lab_cleaned_up", namespaces_removed=len(network.hosts) + 1)
    state.ended_ns = state.ended_ns or time.time_ns()

    windows = _windows(state, network)
    write_label_file(out / "labels.json", windows, scenario.name)
    summary = report.build_summary(
        scenario, network, state, windows, capture_report, service_notes, interrupted, out
    )
    report.write_summary(out / "summary.json", summary)
    return summary


def _child_env(workdir: Path) -> dict[str, str]:
    """Tools keep their state (siege's rc file, sqlmap's history) in the run's scratch folder,
    and the sensor finds this source tree even when the lab is not installed."""
    source_root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH", "")]))
    return {"HOME": str(workdir / "home"), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def _target(
    network: LabNetwork, host: str, max_s: float, until: float, workdir: Path, seed: int
) -> Target:
    source = network.hosts[host]
    return Target(
        victim_ip=network.victim.ip,
        victim_mac=network.victim.mac,
        source_ip=source.ip,
        source_iface=source.iface,
        site=SITE,
        max_s=max_s,
        until=until,
        workdir=workdir,
        seed=seed,
    )


@dataclass
class _Timeline:
    """Plays a scenario's steps on the lab's hosts, recording what it started in ``state``."""

    network: LabNetwork
    supervisor: Supervisor
    workdir: Path
    state: RunState
    duration: float
    started: float = field(default_factory=time.monotonic)
    until: float = 0.0

    def __post_init__(self) -> None:
        self.state.started_ns = time.time_ns()
        self.until = time.time() + self.duration

    def _launch(self, name: str, host: str, argv: list[str]) -> LabProcess:
        command = [*self.network.exec_prefix(host), *argv]
        return self.supervisor.start(name, command, cwd=self.workdir)

    def start_benign(self, steps: tuple[BenignStep, ...]) -> None:
        for n, step in enumerate(steps, 1):
            target = _target(self.network, step.host, self.duration, self.until, self.workdir, n)
            argv = ACTIVITIES[step.activity].build(step.options, target)
            process = self._launch(f"benign-{n}-{step.activity}-{step.host}", step.host, argv)
            self.state.benign.append((step.activity, step.host, process))

    def start_attack(self, step: AttackStep, elapsed: float) -> LabProcess:
        number = len(self.state.attacks) + 1
        bound = min(step.max_s, self.duration - elapsed)
        target = _target(self.network, step.host, bound, self.until, self.workdir, number)
        argv = ATTACKS[step.tool].build(step.options, target)
        process = self._launch(f"attack-{number:02d}-{step.tool}-{step.host}", step.host, argv)
        event(log, logging.INFO, "lab_attack_started", tool=step.tool, host=step.host,
              at_s=round(elapsed, 1), attack_type=step.attack_type)  # fmt: skip
        self.state.attacks.append((step, process))
        return process

    def finished(self, step: AttackStep, process: LabProcess, elapsed: float) -> bool:
        """Whether the attack is over: it ended, or it passed its bound and was stopped."""
        if not process.running:
            event(log, logging.INFO, "lab_attack_ended", tool=step.tool,
                  exit_code=process.returncode)  # fmt: skip
            return True
        if elapsed > step.at_s + _bound_s(step):
            self.supervisor.stop(process, grace_s=3.0)
            event(log, logging.INFO, "lab_attack_stopped", tool=step.tool, bound_s=step.max_s)
            return True
        return False


def _play(scenario: Scenario, timeline: _Timeline) -> None:
    """Start the benign activities, then each attack at its offset; stop each at its bound."""
    timeline.start_benign(scenario.benign)
    duration, state = timeline.duration, timeline.state
    pending = [step for step in scenario.attacks if step.at_s < duration]
    state.skipped = [step for step in scenario.attacks if step.at_s >= duration]
    running: list[tuple[AttackStep, LabProcess]] = []
    while (elapsed := time.monotonic() - timeline.started) < duration:
        while pending and pending[0].at_s <= elapsed:
            step = pending.pop(0)
            running.append((step, timeline.start_attack(step, elapsed)))
        running = [(s, p) for s, p in running if not timeline.finished(s, p, elapsed)]
        time.sleep(_TICK_S)
    state.ended_ns = time.time_ns()


def _bound_s(step: AttackStep) -> float:
    """The step's time bound, or less for a tool known to linger after its work is done."""
    done_after_s = ATTACKS[step.tool].done_after_s
    return min(step.max_s, done_after_s(step.options)) if done_after_s else step.max_s


def _stop_traffic(state: RunState, supervisor: Supervisor) -> None:
    for _step, process in state.attacks:
        supervisor.stop(process, grace_s=3.0)
    for _activity, _host, process in state.benign:
        supervisor.stop(process, grace_s=3.0)


def _windows(state: RunState, network: LabNetwork) -> list[AttackWindow]:
    windows = []
    for step, process in state.attacks:
        process.poll()
        windows.append(
            AttackWindow(
                tool=step.tool,
                attack_type=step.attack_type,
                host=step.host,
                src_ip=network.hosts[step.host].ip if network.hosts else "",
                dst_ip=network.victim.ip,
                start_ns=process.started_ns,
                end_ns=process.ended_ns or time.time_ns(),
                exit_code=process.returncode,
                stopped_by_lab=process.stopped_by_lab,
            )
        )
    return windows
