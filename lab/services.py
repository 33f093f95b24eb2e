"""The victim's services (web shop, DNS, optional SSH) and the captures on its interface.

Everything here runs inside the victim's namespace. The captures are the sensor (packet records
as JSON lines) and tcpdump (the same packets as a pcap), both on the victim's ``eth0``, which
sees every packet to and from the victim.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antinex.logs import event
from antinex.options import RuntimeFailure
from lab.network import LAB_DOMAIN, LabNetwork
from lab.processes import LabProcess, Supervisor, wait_for_text
from lab.tools import VICTIM_SCRIPT

log = logging.getLogger("antinex.lab")

SITE = f"www.{LAB_DOMAIN}"
_VICTIM_ALIASES = ("www", "shop", "files", "mail", "victim")
_READY_S = 20.0


@dataclass
class Services:
    """Which of the victim's services came up."""

    http: LabProcess | None = None
    dns: LabProcess | None = None
    ssh: LabProcess | None = None
    notes: list[str] = field(default_factory=list)


def start_services(network: LabNetwork, supervisor: Supervisor, workdir: Path) -> Services:
    """Start the web shop and DNS (both required) and sshd (optional) on the victim."""
    victim = network.victim
    prefix = network.exec_prefix("victim")
    services = Services()
    services.http = supervisor.start(
        "victim-http",
        [*prefix, sys.executable, str(VICTIM_SCRIPT), "--address", victim.ip, "--port", "80",
         "--db", str(workdir / "shop.db")],
    )  # fmt: skip
    services.dns = supervisor.start("victim-dns", [*prefix, *_dnsmasq_argv(network)])
    for process, ready in ((services.http, "victim_http_listening"), (services.dns, "started")):
        if not wait_for_text(process, ready, _READY_S):
            raise RuntimeFailure(
                f"the victim's {process.name} did not start; see {process.log_path}"
            )
    services.ssh = _start_sshd(network, supervisor, workdir, services.notes)
    event(log, logging.INFO, "lab_services_started", http=True, dns=True, ssh=bool(services.ssh))
    return services


def _dnsmasq_argv(network: LabNetwork) -> list[str]:
    victim = network.victim
    names = ",".join(f"{alias}.{LAB_DOMAIN}" for alias in _VICTIM_ALIASES)
    argv = [
        "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null",
        "--no-resolv", "--no-hosts", "--bind-interfaces", f"--listen-address={victim.ip}",
        "--pid-file=", f"--local=/{LAB_DOMAIN}/", f"--host-record={names},{victim.ip}",
        f"--mx-host={LAB_DOMAIN},mail.{LAB_DOMAIN},10",
        f"--mx-host=mail.{LAB_DOMAIN},mail.{LAB_DOMAIN},10",
        f'--txt-record={LAB_DOMAIN},"v=spf1 mx -all"',
    ]  # fmt: skip
    for host in network.hosts.values():
        if host.role != "victim":
            argv.append(f"--host-record={host.name}.{LAB_DOMAIN},{host.ip}")
    return argv


def _start_sshd(
    network: LabNetwork, supervisor: Supervisor, workdir: Path, notes: list[str]
) -> LabProcess | None:
    sshd, keygen = shutil.which("sshd") or "/usr/sbin/sshd", shutil.which("ssh-keygen")
    if not Path(sshd).is_file() or not keygen:
        notes.append("ssh: not started (install openssh-server for an SSH service)")
        return None
    key = workdir / "ssh_host_ed25519_key"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], capture_output=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    process = supervisor.start(
        "victim-ssh",
        [*network.exec_prefix("victim"), sshd, "-D", "-e", "-f", "/dev/null",
         "-o", f"ListenAddress={network.victim.ip}", "-o", f"HostKey={key}",
         "-o", f"PidFile={workdir / 'sshd.pid'}", "-o", "UsePAM=no",
         "-o", "PermitRootLogin=no"],
    )  # fmt: skip
    if wait_for_text(process, "Server listening", 10.0):
        return process
    notes.append(f"ssh: sshd did not start in the namespace (see {process.log_path})")
    supervisor.stop(process)
    return None


@dataclass
class Captures:
    """The two captures on the victim's interface."""

    tcpdump: LabProcess
    sensor: LabProcess
    pcap: Path
    records: Path
    stream: LabProcess | None = None  # a sensor publishing the same interface to Kafka


@dataclass
class StreamTarget:
    """Where a run also streams its capture: a Kafka broker and packets topic."""

    bootstrap_servers: str
    topic: str
    metrics_port: int = 0


def sensor_command() -> list[str]:
    """How to run ``antinex``: its script beside this Python, else the module."""
    script = Path(sys.executable).with_name("antinex")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "antinex.cli"]


def start_captures(
    network: LabNetwork, supervisor: Supervisor, out: Path, stream: StreamTarget | None = None
) -> Captures:
    """Start tcpdump and the sensor on the victim's interface, and with ``stream`` a second
    sensor that publishes the same interface to Kafka; return once all of them capture."""
    prefix, iface = network.exec_prefix("victim"), network.victim.iface
    pcap, records = out / "capture.pcap", out / "records.jsonl"
    tcpdump = supervisor.start(
        "tcpdump",
        [*prefix, "tcpdump", "-i", iface, "-n", "-s", "0", "-U", "-Z", "root", "-w", str(pcap)],
    )
    sensor = supervisor.start(
        "sensor",
        [*prefix, *sensor_command(), "--log-format", "json", "sensor", "--interface", iface,
         "--output", "jsonl", "--out", str(records), "--metrics-port", "0"],
    )  # fmt: skip
    started = [(tcpdump, "listening on"), (sensor, "sensor_started")]
    streaming = None
    if stream is not None:
        # This sensor stays in the host's namespace, where the broker is, and opens its capture
        # socket in the victim's.
        streaming = supervisor.start(
            "stream",
            [*sensor_command(), "--log-format", "json", "sensor", "--interface", iface,
             "--netns", network.victim.namespace, "--bootstrap-servers",
             stream.bootstrap_servers, "--packets-topic", stream.topic, "--metrics-port",
             str(stream.metrics_port)],
        )  # fmt: skip
        started.append((streaming, "sensor_started"))
    for process, ready in started:
        if not wait_for_text(process, ready, 60.0):
            raise RuntimeFailure(f"{process.name} did not start capturing; see {process.log_path}")
    event(log, logging.INFO, "lab_capture_started", iface=iface, pcap=str(pcap))
    return Captures(tcpdump, sensor, pcap, records, streaming)


def stop_captures(captures: Captures, supervisor: Supervisor) -> dict[str, Any]:
    """Stop the captures so they flush (SIGINT), and return what each reported."""
    import signal

    for process in (captures.tcpdump, captures.sensor, captures.stream):
        if process is not None:
            supervisor.stop(process, signal.SIGINT, grace_s=30.0)
    reports: dict[str, Any] = {
        "tcpdump": tcpdump_counts(captures.tcpdump),
        "sensor": sensor_report(captures.sensor),
    }
    if captures.stream is not None:
        reports["stream"] = sensor_report(captures.stream)
    return reports


def tcpdump_counts(process: LabProcess) -> dict[str, int]:
    """tcpdump's closing counts: ``N packets captured``, ``... dropped by kernel``."""
    text = process.log_text()
    counts = {}
    for key, pattern in (
        ("captured", r"(\d+) packets? captured"),
        ("dropped_by_kernel", r"(\d+) packets? dropped by kernel"),
    ):
        found = re.search(pattern, text)
        if found:
            counts[key] = int(found.group(1))
    return counts


def sensor_report(process: LabProcess) -> dict[str, Any]:
    """The fields of the sensor's ``sensor_stopped`` event, read from its JSON log."""
    for line in reversed(process.log_text().splitlines()):
        if '"sensor_stopped"' in line:
            try:
                fields = json.loads(line)
            except json.JSONDecodeError:
                break
            keep = ("captured", "decoded", "partial", "undecodable", "published", "kernel_drops")
            return {key: fields[key] for key in keep if key in fields}
    return {}
