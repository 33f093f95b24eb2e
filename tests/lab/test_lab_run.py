"""Real lab runs in network namespaces: the labels agree with the captured packets, every
namespace and process is gone afterwards, also after a Ctrl-C (root; about 90 s in all)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lab import scenario
from lab.network import NAMESPACE_PREFIX, lab_namespaces, remove_leftovers
from lab.runner import missing_requirements
from models.dataset import records_to_columns
from models.labels import apply_rules, load_rules

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
# The child runs `antinex lab run` through antinex.cli; lab.cli is added to its subcommands when
# the installed command does not list it yet, so that the test exercises the real entry point.
_CHILD = """
import sys
import antinex.cli as cli
if "lab.cli" not in cli.SUBCOMMANDS:
    cli.SUBCOMMANDS = (*cli.SUBCOMMANDS, "lab.cli")
sys.exit(cli.main(["lab", "run", "--scenario", sys.argv[1], "--out", sys.argv[2]]))
"""


@pytest.fixture(scope="module")
def lab_ready():
    problem = missing_requirements(scenario.load("quick"))
    if problem:
        pytest.skip(problem)


class ChildRun:
    """`antinex lab run` in a child process, watched from outside: which namespaces it made."""

    def __init__(self, name: str, out: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, name, str(out)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.prefix = f"{NAMESPACE_PREFIX}{self.process.pid}-"
        self.namespaces: dict[str, int] = {}  # name → inode of its network namespace

    def watch(self, seconds: float) -> None:
        """Note the run's namespaces for ``seconds`` or until the child exits."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            for name in lab_namespaces():
                if name.startswith(self.prefix) and name not in self.namespaces:
                    with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                        self.namespaces[name] = os.stat(f"/run/netns/{name}").st_ino
            time.sleep(0.2)

    def finish(self, timeout: float) -> str:
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
            pytest.fail(f"the lab run did not end within {timeout} s:\n{output[-3000:]}")
        return output

    def leftovers(self) -> list[str]:
        """Namespaces, /etc/netns folders and processes of this run that still exist."""
        found = [name for name in lab_namespaces() if name.startswith(self.prefix)]
        found += [str(p) for p in Path("/etc/netns").glob(f"{self.prefix}*")]
        inodes = {f"net:[{inode}]" for inode in self.namespaces.values()}
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if os.readlink(proc / "ns" / "net") in inodes:
                        found.append(f"pid {proc.name}: {(proc / 'comm').read_text().strip()}")
                except OSError:
                    continue
        return found


@pytest.mark.slow
def test_the_quick_scenario_labels_its_attacks_and_leaves_nothing_behind(lab_ready, tmp_path):
    """A real run: each attack window holds the attacker's packets, labelled with its type;
    clients and everything outside the windows are benign; nothing is left running."""
    out = tmp_path / "quick"
    run = ChildRun("quick", out)
    run.watch(120)
    output = run.finish(timeout=60)
    assert 0 == run.process.returncode, output[-3000:]
    assert 5 == len(run.namespaces), run.namespaces  # switch, victim, two clients, attacker
    assert [] == run.leftovers()

    summary = json.loads((out / "summary.json").read_text())
    attacker = summary["hosts"]["attacker1"]
    clients = [summary["hosts"]["client1"], summary["hosts"]["client2"]]
    assert (out / "capture.pcap").stat().st_size > 24
    assert summary["pcap_packets"] > 0
    assert summary["sensor"]["decoded"] == summary["records"]
    assert ["nmap_syn", "hping3_syn_flood", "hydra_http_form"] == [
        w["tool"] for w in summary["windows"]
    ]

    rules = load_rules(out / "labels.json")
    lines = (out / "records.jsonl").read_bytes().splitlines()
    from capture.encoding import parse_json_record

    columns = records_to_columns([parse_json_record(line) for line in lines])
    label, attack_type, _ = apply_rules(rules, columns)
    ts, src = columns["ts_ns"], columns["ip_src"].astype(str)
    in_any = np.zeros(len(ts), dtype=bool)
    from_attacker, from_clients = src == attacker, np.isin(src, clients)
    minimum = {"nmap_syn": 1000, "hping3_syn_flood": 4500, "hydra_http_form": 100}
    for rule, window in zip(rules, summary["windows"], strict=True):
        inside = (ts >= rule.start_ns) & (ts <= rule.end_ns)
        in_any |= inside
        attack = inside & from_attacker
        assert attack.sum() >= minimum[window["tool"]], window
        assert {rule.attack_type} == set(attack_type[attack].tolist())
        assert (inside & from_clients).any(), f"no benign packet during {window['tool']}"
    assert not label[from_clients].any()
    assert not label[~in_any].any()
    assert 0 == int((from_attacker & ~in_any).sum()), "the attacker sent outside its windows"
    kinds, counts = np.unique(attack_type.astype(str), return_counts=True)
    assert summary["records_by_attack_type"] == dict(
        zip(kinds.tolist(), counts.tolist(), strict=True)
    )


def test_an_interrupted_run_cleans_up_and_says_so(lab_ready, tmp_path):
    """SIGINT mid-run stops every process, deletes every namespace, exits 1 with a summary."""
    out = tmp_path / "interrupted"
    run = ChildRun("quick", out)
    run.watch(9)  # services, captures and the first seconds of traffic
    assert run.process.poll() is None, run.finish(5)
    run.process.send_signal(signal.SIGINT)
    started = time.monotonic()
    output = run.finish(timeout=60)
    assert time.monotonic() - started < 30
    assert 1 == run.process.returncode, output[-3000:]
    assert "interrupted" in output
    assert 5 == len(run.namespaces)
    assert [] == run.leftovers()
    assert json.loads((out / "summary.json").read_text())["interrupted"]


def test_clean_removes_namespaces_whose_run_is_gone_and_keeps_live_ones(lab_ready):
    """`antinex lab clean` deletes leftovers of a killed run, not those of a running one."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"{NAMESPACE_PREFIX}{gone.pid}-0-victim"
    live = f"{NAMESPACE_PREFIX}{os.getpid()}-0-victim"
    for name in (dead, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        removed = remove_leftovers()
        assert dead in removed
        assert live not in removed
        assert live in lab_namespaces()
        assert dead not in lab_namespaces()
    finally:
        for name in (dead, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
