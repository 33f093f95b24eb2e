"""Throwaway veth pairs with one end in a fresh network namespace, and tcpreplay through them.

Live-capture tests and benchmarks send a capture into the namespace end and let the sensor
listen on the host end, so the kernel delivers real frames to a real interface.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def netns_unavailable() -> str | None:
    """Why veth pairs in a fresh namespace cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and veth pairs"
    for tool in ("ip", "tcpreplay"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = f"anx-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass(frozen=True)
class VethPair:
    """A veth pair: ``host_end`` in this namespace, ``ns_end`` inside ``namespace``."""

    namespace: str
    host_end: str
    ns_end: str


_pair_numbers = itertools.count()


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


@contextlib.contextmanager
def veth_in_namespace() -> Iterator[VethPair]:
    """Create a veth pair with one end in a new namespace, both up; remove both on exit.

    IPv6 is turned off on both ends and neither has an address, so the kernel sends nothing of
    its own (router solicitations, DAD, MLD) that a capture on the pair would count.
    """
    number, pid = next(_pair_numbers), os.getpid()
    pair = VethPair(f"anx-{pid}-{number}", f"anx{pid}h{number}", f"anx{pid}n{number}")
    if max(len(pair.host_end), len(pair.ns_end)) > 15:  # IFNAMSIZ - 1
        raise RuntimeError(f"interface name {pair.host_end} is longer than 15 characters")
    try:
        _ip("netns", "add", pair.namespace)
        _ip("link", "add", pair.host_end, "type", "veth", "peer", "name", pair.ns_end)
        _ip("link", "set", pair.ns_end, "netns", pair.namespace)
        Path(f"/proc/sys/net/ipv6/conf/{pair.host_end}/disable_ipv6").write_text("1")
        _ip(
            "netns",
            "exec",
            pair.namespace,
            "sh",
            "-c",
            f"echo 1 > /proc/sys/net/ipv6/conf/{pair.ns_end}/disable_ipv6",
        )
        _ip("link", "set", pair.host_end, "up")
        _ip("-n", pair.namespace, "link", "set", pair.ns_end, "up")
        _wait_for_carrier(pair.host_end)
        yield pair
    finally:
        subprocess.run(["ip", "link", "del", pair.host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", pair.namespace], capture_output=True)


def _wait_for_carrier(iface: str, timeout: float = 5.0) -> None:
    carrier = Path(f"/sys/class/net/{iface}/carrier")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if carrier.read_text().strip() == "1":
                return
        time.sleep(0.02)
    raise RuntimeError(f"{iface} has no carrier after {timeout} s")


@dataclass(frozen=True)
class Replay:
    """What tcpreplay reported after sending a capture."""

    sent: int
    failed: int
    seconds: float
    pps: float


def replay(
    pair: VethPair,
    pcap: str | os.PathLike[str],
    pps: int,
    limit: int = 0,
    loops: int = 1,
    timeout: float = 600,
) -> Replay:
    """Send ``pcap`` into the namespace end at ``pps`` packets per second.

    ``loops`` sends the file that many times over; ``limit`` (when non-zero) stops after that
    many frames in all.
    """
    command = ["ip", "netns", "exec", pair.namespace, "tcpreplay", f"--intf1={pair.ns_end}"]
    command += [f"--pps={pps}", f"--loop={loops}"]
    if limit:
        command.append(f"--limit={limit}")
    command.append(str(pcap))
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"tcpreplay exited {done.returncode}: {done.stderr.strip()}")
    report = done.stdout
    actual = re.search(r"Actual: (\d+) packets .* sent in ([\d.]+) seconds", report)
    rated = re.search(r"Rated: .*?([\d.]+) pps", report)
    failed = re.search(r"Failed packets:\s+(\d+)", report)
    if not actual:
        raise RuntimeError(f"tcpreplay output has no 'Actual:' line: {report!r}")
    return Replay(
        sent=int(actual.group(1)),
        failed=int(failed.group(1)) if failed else 0,
        seconds=float(actual.group(2)),
        pps=float(rated.group(1)) if rated else 0.0,
    )
