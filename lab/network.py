"""The lab's network: one namespace per host, joined by a bridge in a switch namespace of its own.

Nothing is created in the host's own namespace except the ``/etc/netns/<namespace>/`` files
that ``ip netns exec`` binds over ``/etc/resolv.conf`` and ``/etc/hosts`` inside each host, so
that names resolve through the victim's DNS server and never through the host's resolver. The
hosts have no default route: a packet for any address outside the lab's subnet has nowhere to go.

Namespace names carry the owner's process id (``anx-lab-<pid>-<n>-<host>``), so that
``antinex lab clean`` can tell leftovers of a killed run from the namespaces of a live one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from antinex.logs import event
from antinex.options import RuntimeFailure

log = logging.getLogger("antinex.lab")

SUBNET = "10.66.0"
PREFIX_LEN = 24
NAMESPACE_PREFIX = "anx-lab-"
LAB_DOMAIN = "lab.test"
_NETNS_ETC = Path("/etc/netns")
_VICTIM_OCTET = 10
_CLIENT_OCTET = 20  # client1 is .21
_ATTACKER_OCTET = 65  # attacker1 is .66


@dataclass(frozen=True)
class Host:
    """One lab host: its namespace, its interface inside it, and its addresses."""

    name: str
    role: str  # victim, client or attacker
    namespace: str
    ip: str
    mac: str
    iface: str = "eth0"


def host_plan(clients: int, attackers: int) -> list[tuple[str, str, str]]:
    """(name, role, ip) of every host of a lab with this many clients and attackers."""
    plan = [("victim", "victim", f"{SUBNET}.{_VICTIM_OCTET}")]
    plan += [
        (f"client{n}", "client", f"{SUBNET}.{_CLIENT_OCTET + n}") for n in range(1, 1 + clients)
    ]
    plan += [
        (f"attacker{n}", "attacker", f"{SUBNET}.{_ATTACKER_OCTET + n}")
        for n in range(1, 1 + attackers)
    ]
    return plan


def _mac_of(ip: str) -> str:
    """A locally administered Ethernet address that spells the IPv4 address (02:00:a.b.c.d)."""
    return "02:00:" + ":".join(f"{int(octet):02x}" for octet in ip.split("."))


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise RuntimeFailure(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


@dataclass
class LabNetwork:
    """Build with :meth:`build`, remove with :meth:`teardown` (safe to call twice or after a
    partial build); or use as a context manager."""

    clients: int = 2
    attackers: int = 1
    tag: str = field(default_factory=lambda: f"{os.getpid()}-{time.monotonic_ns() % 10_000}")
    hosts: dict[str, Host] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)

    @property
    def switch_namespace(self) -> str:
        return f"{NAMESPACE_PREFIX}{self.tag}-switch"

    @property
    def victim(self) -> Host:
        return self.hosts["victim"]

    def __enter__(self) -> LabNetwork:
        self.build()
        return self

    def __exit__(self, *_: object) -> None:
        self.teardown()

    def build(self) -> None:
        """Create the switch namespace with its bridge, then each host joined to it."""
        started = time.monotonic()
        switch = self.switch_namespace
        self._add_namespace(switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge", "stp_state", "0")
        _ip("-n", switch, "link", "set", "br0", "up")
        names = {}
        for name, role, ip in host_plan(self.clients, self.attackers):
            host = Host(name, role, f"{NAMESPACE_PREFIX}{self.tag}-{name}", ip, _mac_of(ip))
            self._add_host(host)
            self.hosts[name] = host
            names[f"{name}.{LAB_DOMAIN}"] = ip
        for host in self.hosts.values():
            self._write_resolver_files(host, names)
        event(
            log,
            logging.INFO,
            "lab_network_built",
            namespaces=len(self._namespaces),
            hosts=",".join(f"{h.name}={h.ip}" for h in self.hosts.values()),
            seconds=round(time.monotonic() - started, 2),
        )

    def _add_namespace(self, namespace: str) -> None:
        _ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")

    def _add_host(self, host: Host) -> None:
        switch, port = self.switch_namespace, f"p-{host.name}"
        self._add_namespace(host.namespace)
        _ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name", host.iface,
            "netns", host.namespace)  # fmt: skip
        _ip("-n", switch, "link", "set", port, "master", "br0")
        _ip("-n", switch, "link", "set", port, "up")
        # Limitation: no IPv6 in the lab. Its only IPv6 traffic would be the kernel's own
        # solicitations, since no tool here is set up for it; the data are IPv4 only.
        for namespace, iface in ((switch, port), (host.namespace, host.iface)):
            _ip("netns", "exec", namespace, "sysctl", "-q", "-w",
                f"net.ipv6.conf.{iface}.disable_ipv6=1")  # fmt: skip
        _ip("-n", host.namespace, "link", "set", host.iface, "address", host.mac)
        _ip("-n", host.namespace, "addr", "add", f"{host.ip}/{PREFIX_LEN}", "dev", host.iface)
        _ip("-n", host.namespace, "link", "set", host.iface, "up")

    def _write_resolver_files(self, host: Host, names: dict[str, str]) -> None:
        folder = _NETNS_ETC / host.namespace
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolv.conf").write_text(
            f"nameserver {self.victim.ip}\nsearch {LAB_DOMAIN}\noptions timeout:2 attempts:1\n"
        )
        own = f"{host.ip} {host.name}.{LAB_DOMAIN} {host.name}\n"
        (folder / "hosts").write_text(f"127.0.0.1 localhost\n{own}")

    def exec_prefix(self, host: str) -> list[str]:
        """The command prefix that runs a program inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.hosts[host].namespace]

    def teardown(self) -> None:
        """Kill what still runs in the lab's namespaces, delete them and their /etc files."""
        for namespace in reversed(self._namespaces):
            remove_namespace(namespace)
        self._namespaces.clear()


def namespace_pids(namespace: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    return [int(pid) for pid in done.stdout.split() if pid.isdigit()]


def remove_namespace(namespace: str) -> None:
    """Kill every process inside ``namespace`` by its id, then delete the namespace."""
    for _ in range(20):
        pids = namespace_pids(namespace)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
    if namespace.startswith(NAMESPACE_PREFIX):  # never remove anything else under /etc/netns
        shutil.rmtree(_NETNS_ETC / namespace, ignore_errors=True)


def lab_namespaces() -> list[str]:
    """Names of the lab namespaces that exist now, of any run."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    names = (line.split()[0] for line in done.stdout.splitlines() if line.strip())
    return [name for name in names if name.startswith(NAMESPACE_PREFIX)]


def _owner_pid(namespace: str) -> int | None:
    found = re.match(rf"{re.escape(NAMESPACE_PREFIX)}(\d+)-", namespace)
    return int(found.group(1)) if found else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Remove the lab namespaces whose owning process is gone; return their names."""
    removed = []
    for namespace in lab_namespaces():
        owner = _owner_pid(namespace)
        if owner is not None and _alive(owner):
            continue
        remove_namespace(namespace)
        removed.append(namespace)
    return removed


@contextlib.contextmanager
def lab_network(clients: int = 2, attackers: int = 1) -> Iterator[LabNetwork]:
    """A built lab network, torn down on leaving the block whatever happened inside it."""
    network = LabNetwork(clients, attackers)
    try:
        network.build()
        yield network
    finally:
        network.teardown()
