"""The lab's programs, declared as data: what each attack and benign activity runs, which Debian
package brings it, its options and their defaults, and the attack type its window is labelled.

A scenario names entries of :data:`ATTACKS` and :data:`ACTIVITIES` and may override their
options; every command is built here from the options and the :class:`Target`, and each one is
bounded twice: by its own count or time option where the tool has one, and by the lab, which
stops it at the step's ``max_s``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAB_DIR = Path(__file__).resolve().parent
WORDLISTS = LAB_DIR / "wordlists"
BENIGN_SCRIPT = LAB_DIR / "benign.py"
VICTIM_SCRIPT = LAB_DIR / "victim.py"

Options = Mapping[str, Any]


@dataclass(frozen=True)
class Target:
    """What a command needs to know about the lab it runs in."""

    victim_ip: str
    victim_mac: str
    source_ip: str  # the host the command runs on
    source_iface: str
    site: str  # the victim's web site name, served by the lab's DNS
    max_s: float  # the step's time bound
    until: float  # the run's end, Unix time
    workdir: Path
    seed: int = 1


@dataclass(frozen=True)
class Program:
    """One attack tool or benign activity, and how to build its command line."""

    name: str
    binary: str
    package: str
    summary: str
    build: Callable[[Options, Target], list[str]]
    defaults: Options = field(default_factory=dict)
    attack_type: str = ""  # empty for benign activities
    extra_binaries: tuple[tuple[str, str], ...] = ()  # (binary, package) it also runs
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # options with a fixed set
    # Seconds after which the tool has done its work, for tools that may not exit by themselves.
    done_after_s: Callable[[Options], float] | None = None


# Attacks ------------------------------------------------------------------------------------


def _nmap(scan: str, *extra: str) -> Callable[[Options, Target], list[str]]:
    def build(o: Options, t: Target) -> list[str]:
        return [
            "nmap", "-n", "-Pn", scan, *extra, f"-T{o['timing']}", "--max-retries", "1",
            "--max-rate", str(o["max_rate"]), "--host-timeout", f"{int(t.max_s)}s",
            "-p", str(o["ports"]), t.victim_ip,
        ]  # fmt: skip

    return build


def _nmap_version(o: Options, t: Target) -> list[str]:
    return _nmap("-sV", "--version-intensity", str(o["intensity"]))(o, t)


def _masscan(o: Options, t: Target) -> list[str]:
    # No default route in the lab, so masscan is told the victim's MAC as its "router".
    return [
        "masscan", t.victim_ip, "-p", str(o["ports"]), "--rate", str(o["rate"]),
        "--wait", str(o["wait_s"]), "--adapter", t.source_iface, "--adapter-ip", t.source_ip,
        "--router-mac", t.victim_mac.replace(":", "-"),
    ]  # fmt: skip


def _port_count(ports: str) -> int:
    """Ports in a masscan/nmap port list such as ``22,80,1000-2000``."""
    total = 0
    for part in str(ports).replace("U:", "").split(","):
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1 if low.strip() else 0
    return total


def _masscan_done_after_s(o: Options) -> float:
    # Limitation: masscan 1.3.2 sometimes keeps "waiting -N-secs" forever after a scan (its
    # receive thread misses the end); the lab stops it once sending and waiting are over.
    return _port_count(o["ports"]) / max(1, int(o["rate"])) + int(o["wait_s"]) + 3


def _hping3_syn_flood(o: Options, t: Target) -> list[str]:
    return ["hping3", "-q", "-S", "-p", str(o["port"]), "--faster", "-c", str(o["count"]),
            t.victim_ip]  # fmt: skip


def _hydra_http_form(o: Options, t: Target) -> list[str]:
    form = f"/login:username=^USER^&password=^PASS^:F={o['failure_text']}"
    return [
        "hydra", "-I", "-L", str(WORDLISTS / o["users"]), "-P", str(WORDLISTS / o["passwords"]),
        "-t", str(o["threads"]), "-w", "5", "-s", "80", t.victim_ip, "http-post-form", form,
    ]  # fmt: skip


def _sqlmap(o: Options, t: Target) -> list[str]:
    argv = [
        "sqlmap", "-u", f"http://{t.victim_ip}{o['path']}", "--batch", "--flush-session",
        "--level", str(o["level"]), "--risk", str(o["risk"]), "--technique", str(o["technique"]),
        "--timeout", "5", "--retries", "0", "--disable-coloring",
        "--output-dir", str(t.workdir / "sqlmap"),
    ]  # fmt: skip
    if o["data"]:  # a form: the fields are sent as a POST body
        argv += ["--data", str(o["data"])]
    if o["dump"]:
        argv += ["--tables", "--dump"]
    return argv


def _slowhttptest(o: Options, t: Target) -> list[str]:
    mode = {"slowloris": "-H", "slowbody": "-B", "slowread": "-X"}[o["mode"]]
    verb = "POST" if mode == "-B" else "GET"
    return [
        "slowhttptest", mode, "-c", str(o["connections"]), "-r", str(o["rate"]),
        "-i", str(o["interval_s"]), "-l", str(o["seconds"]), "-t", verb,
        "-u", f"http://{t.victim_ip}/login", "-x", "24", "-p", "3",
    ]  # fmt: skip


_SCAN_DEFAULTS = {"ports": "1-1024", "timing": 4, "max_rate": 2000}
_UDP_PORTS = (
    "7,9,13,17,19,37,53,67,68,69,111,123,135,137,138,161,162,177,427,500,514,520,623,1900,5353"
)


def _attack(
    name: str,
    binary: str,
    summary: str,
    build: Callable[[Options, Target], list[str]],
    defaults: Options,
    attack_type: str,
    **more: Any,
) -> Program:
    """An attack tool whose Debian package has the name of its binary."""
    return Program(name, binary, binary, summary, build, defaults, attack_type, **more)


ATTACKS: dict[str, Program] = {
    p.name: p
    for p in (
        _attack("nmap_syn", "nmap", "nmap TCP SYN scan", _nmap("-sS"), _SCAN_DEFAULTS, "syn_scan"),
        _attack(
            "nmap_connect", "nmap", "nmap TCP connect scan", _nmap("-sT"), _SCAN_DEFAULTS,
            "connect_scan",
        ),
        _attack(
            "nmap_udp", "nmap", "nmap UDP scan of a few ports", _nmap("-sU"),
            {"ports": _UDP_PORTS, "timing": 4, "max_rate": 200}, "udp_scan",
        ),
        _attack(
            "nmap_version", "nmap", "nmap service version scan", _nmap_version,
            {"ports": "22,53,80", "timing": 4, "max_rate": 500, "intensity": 2}, "version_scan",
        ),
        _attack(
            "masscan", "masscan", "masscan SYN sweep, rate-limited", _masscan,
            {"ports": "1-2000", "rate": 1000, "wait_s": 2}, "mass_scan",
            done_after_s=_masscan_done_after_s,
        ),
        _attack(
            "hping3_syn_flood", "hping3", "hping3 SYN flood, bounded by count", _hping3_syn_flood,
            {"port": 80, "count": 10000}, "syn_flood",
        ),
        _attack(
            "hydra_http_form", "hydra", "hydra brute force of the login form", _hydra_http_form,
            {"users": "users.txt", "passwords": "passwords.txt", "threads": 16,
             "failure_text": "Invalid user name"},
            "http_brute_force",
        ),
        _attack(
            "sqlmap", "sqlmap", "sqlmap injection of /item?id= or of a form", _sqlmap,
            {"path": "/item?id=1", "level": 2, "risk": 1, "technique": "BEUS", "data": "",
             "dump": True},
            "sql_injection",
        ),
        _attack(
            "slowhttptest", "slowhttptest", "slow HTTP denial of service", _slowhttptest,
            {"mode": "slowloris", "connections": 150, "rate": 50, "interval_s": 5, "seconds": 20},
            "slow_http_dos", choices={"mode": ("slowloris", "slowbody", "slowread")},
        ),
    )
}  # fmt: skip


# Benign activities --------------------------------------------------------------------------


def _browse(o: Options, t: Target) -> list[str]:
    return [
        sys.executable, str(BENIGN_SCRIPT), "--site", t.site, "--victim-ip", t.victim_ip,
        "--pace", str(o["pace"]), "--interval", str(o["interval_s"]), "--until", f"{t.until:.3f}",
        "--seed", str(t.seed),
    ]  # fmt: skip


def _siege(o: Options, t: Target) -> list[str]:
    urls = t.workdir / "siege-urls.txt"
    if not urls.exists():
        paths = ["/", "/health", "/login", "/files/notes.txt"]
        paths += [f"/item?id={n}" for n in range(1, 41, 3)]
        urls.write_text("".join(f"http://{t.site}{path}\n" for path in paths))
    return [
        "siege", "-q", "-i", "--no-parser", "-c", str(o["concurrency"]), "-d", str(o["delay_s"]),
        "-t", f"{max(1, int(t.max_s))}S", "-f", str(urls),
    ]  # fmt: skip


ACTIVITIES: dict[str, Program] = {
    p.name: p
    for p in (
        Program("browse", "curl", "curl", "curl, dig and ping at a human or machine pace",
                _browse, {"pace": "human", "interval_s": 1.0},
                extra_binaries=(("dig", "dnsutils"), ("ping", "iputils-ping")),
                choices={"pace": ("human", "machine")}),
        Program("siege", "siege", "siege", "siege at low concurrency with random delays",
                _siege, {"concurrency": 2, "delay_s": 3}),
    )
}  # fmt: skip


# Services and captures ----------------------------------------------------------------------

SERVICE_BINARIES = {"dnsmasq": "dnsmasq", "tcpdump": "tcpdump", "ip": "iproute2"}


def merged_options(program: Program, given: Options, where: str) -> dict[str, Any]:
    """The program's defaults overridden by ``given``; a key or type it does not know is a
    UsageError naming ``where`` (the scenario step)."""
    from antinex.options import UsageError

    unknown = sorted(set(given) - set(program.defaults))
    if unknown:
        known = ", ".join(sorted(program.defaults)) or "none"
        raise UsageError(f"{where}: {program.name} has no option {unknown[0]!r} (options: {known})")
    options = dict(program.defaults)
    for key, value in given.items():
        expected = type(program.defaults[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise UsageError(
                f"{where}: option {key!r} of {program.name} must be {expected.__name__}, "
                f"not {value!r}"
            )
        allowed = program.choices.get(key)
        if allowed and value not in allowed:
            raise UsageError(
                f"{where}: option {key!r} of {program.name} is {value!r}; "
                f"choose one of {', '.join(allowed)}"
            )
        options[key] = value
    return options
