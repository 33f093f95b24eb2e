"""Lab scenarios: the built-in files, the checks on hand-written ones, the commands they build."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import re
from pathlib import Path

import pytest

from antinex.options import UsageError
from lab import cli, scenario
from lab.network import SUBNET, host_plan
from lab.runner import missing_requirements
from lab.tools import ACTIVITIES, ATTACKS, Target


def _minimal(**changes):
    data = {
        "name": "t",
        "duration_s": 30,
        "benign": [{"activity": "browse", "host": "client1"}],
        "attacks": [{"tool": "nmap_syn", "at_s": 5, "max_s": 10}],
    }
    data.update(changes)
    return data


def _target(max_s: float = 10.0) -> Target:
    return Target(
        victim_ip=f"{SUBNET}.10",
        victim_mac="02:00:0a:42:00:0a",
        source_ip=f"{SUBNET}.66",
        source_iface="eth0",
        site="www.lab.test",
        max_s=max_s,
        until=2_000_000_000.0,
        workdir=Path("/tmp"),
    )


class TestBuiltinScenarios:
    @pytest.mark.parametrize("name", scenario.builtin_names())
    def test_each_builtin_scenario_parses(self, name):
        """Every shipped scenario passes the checks a hand-written one must pass."""
        loaded = scenario.load(name)
        assert name == loaded.name
        assert loaded.attacks and loaded.benign

    def test_the_quick_scenario_fits_in_a_minute_and_keeps_its_attacks_apart(self):
        """quick runs in CI: at most 60 s, and each attack ends before the next starts."""
        quick = scenario.load("quick")
        assert quick.duration_s <= 60
        ends = [step.at_s + step.max_s for step in quick.attacks]
        starts = [step.at_s for step in quick.attacks]
        assert all(end < start for end, start in zip(ends, starts[1:], strict=False))

    def test_the_shipped_scenarios_cover_every_attack_tool(self):
        """Between them the built-in scenarios run every tool of the catalogue."""
        used = {
            step.tool for name in scenario.builtin_names() for step in scenario.load(name).attacks
        }
        assert set(ATTACKS) == used

    def test_the_full_scenario_runs_every_tool(self):
        """full is the dataset scenario: every tool at least once."""
        assert set(ATTACKS) == {step.tool for step in scenario.load("full").attacks}


class TestScenarioChecks:
    def test_a_minimal_scenario_gets_the_tool_defaults_and_the_default_hosts(self):
        """Omitted options take the tool's defaults; attacks run from attacker1."""
        parsed = scenario.parse(_minimal())
        step = parsed.attacks[0]
        assert "attacker1" == step.host
        assert "syn_scan" == step.attack_type
        assert ATTACKS["nmap_syn"].defaults["ports"] == step.options["ports"]
        assert ["victim", "client1", "client2", "attacker1"] == parsed.host_names

    def test_attacks_are_played_in_time_order(self):
        """Steps may be written in any order."""
        attacks = [
            {"tool": "hydra_http_form", "at_s": 15, "max_s": 5},
            {"tool": "nmap_syn", "at_s": 2, "max_s": 5},
        ]
        parsed = scenario.parse(_minimal(attacks=attacks))
        assert ["nmap_syn", "hydra_http_form"] == [step.tool for step in parsed.attacks]

    @pytest.mark.parametrize(
        ("changes", "words"),
        [
            ({"attacks": [{"tool": "nessus", "at_s": 1, "max_s": 1}]}, "unknown tool 'nessus'"),
            ({"attacks": [{"tool": "nmap_syn", "at_s": 25, "max_s": 10}]}, "must end within"),
            (
                {"attacks": [{"tool": "nmap_syn", "at_s": 1, "max_s": 5, "options": {"port": 1}}]},
                "no option 'port'",
            ),
            (
                {
                    "attacks": [
                        {
                            "tool": "hping3_syn_flood",
                            "at_s": 1,
                            "max_s": 5,
                            "options": {"count": "many"},
                        }
                    ]
                },
                "must be int",
            ),
            (
                {"attacks": [{"tool": "nmap_syn", "at_s": 1, "max_s": 5, "host": "client1"}]},
                "attacker host",
            ),
            (
                {"attacks": [{"tool": "nmap_syn", "at_s": 1, "max_s": 5, "host": "victim"}]},
                "not a client or attacker",
            ),
            ({"benign": [{"activity": "browse", "options": {"pace": "lazy"}}]}, "choose one of"),
            ({"duration_s": 0}, "outside 0..3600"),
            ({"hosts": {"clients": 0}}, "1..8 clients"),
            ({"schedule": []}, "unknown key 'schedule'"),
        ],
    )
    def test_a_mistake_is_one_sentence_naming_it(self, changes, words):
        """Each kind of mistake is refused with a message that names it."""
        with pytest.raises(UsageError, match=re.escape(words)):
            scenario.parse(_minimal(**changes), "my.json")

    def test_two_attacks_of_one_host_may_not_overlap(self):
        """Overlapping attacks of one host would give its packets two labels."""
        attacks = [
            {"tool": "nmap_syn", "at_s": 1, "max_s": 10},
            {"tool": "hping3_syn_flood", "at_s": 5, "max_s": 5},
        ]
        with pytest.raises(UsageError, match="overlap on attacker1"):
            scenario.parse(_minimal(attacks=attacks))

    def test_attacks_of_two_attackers_may_overlap(self):
        """Two attacker hosts may attack at once: their packets are told apart by address."""
        attacks = [
            {"tool": "nmap_syn", "at_s": 1, "max_s": 10},
            {"tool": "hping3_syn_flood", "at_s": 5, "max_s": 5, "host": "attacker2"},
        ]
        parsed = scenario.parse(_minimal(attacks=attacks, hosts={"attackers": 2}))
        assert 2 == len(parsed.attacks)

    def test_a_scenario_file_that_is_not_json_is_refused(self, tmp_path):
        """A broken file is named in the message."""
        path = tmp_path / "broken.json"
        path.write_text("{ not json")
        with pytest.raises(UsageError, match=r"broken\.json is not valid JSON"):
            scenario.load(str(path))

    def test_an_unknown_name_lists_the_builtin_scenarios(self):
        """A name that is neither a file nor built in lists what is."""
        with pytest.raises(UsageError, match="quick"):
            scenario.load("no-such-scenario")

    def test_a_scenario_file_is_read_from_its_path(self, tmp_path):
        """--scenario FILE works as well as a name."""
        path = tmp_path / "mine.json"
        path.write_text(json.dumps(_minimal(name="mine")))
        assert "mine" == scenario.load(str(path)).name


class TestCommands:
    @pytest.mark.parametrize("name", sorted(ATTACKS))
    def test_attack_commands_aim_only_at_lab_addresses(self, name):
        """Every address in an attack's command line lies in the lab's subnet."""
        program = ATTACKS[name]
        argv = program.build(program.defaults, _target())
        lab_net = ipaddress.ip_network(f"{SUBNET}.0/24")
        addresses = re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", " ".join(argv))
        assert addresses
        assert all(ipaddress.ip_address(a) in lab_net for a in addresses)

    @pytest.mark.parametrize("name", sorted(ATTACKS))
    def test_attack_commands_run_the_program_their_package_provides(self, name):
        """The first word is the binary the requirement check looks for."""
        program = ATTACKS[name]
        assert program.binary == program.build(program.defaults, _target())[0]

    def test_the_flood_is_bounded_by_a_count_and_never_uses_flood_mode(self):
        """hping3 sends a fixed count at --faster; --flood would ignore the count."""
        argv = ATTACKS["hping3_syn_flood"].build(ATTACKS["hping3_syn_flood"].defaults, _target())
        assert "--flood" not in argv
        assert "--faster" in argv
        assert str(ATTACKS["hping3_syn_flood"].defaults["count"]) == argv[argv.index("-c") + 1]

    def test_nmap_stops_itself_at_the_step_bound(self):
        """nmap's host timeout is the step's time bound."""
        argv = ATTACKS["nmap_udp"].build(ATTACKS["nmap_udp"].defaults, _target(max_s=20))
        assert "20s" == argv[argv.index("--host-timeout") + 1]

    def test_siege_runs_for_the_time_it_is_given(self, tmp_path):
        """siege's -t is the run's remaining time, in seconds."""
        target = dataclasses.replace(_target(max_s=42), workdir=tmp_path)
        argv = ACTIVITIES["siege"].build(ACTIVITIES["siege"].defaults, target)
        assert "42S" == argv[argv.index("-t") + 1]
        assert (tmp_path / "siege-urls.txt").read_text().startswith("http://www.lab.test/")

    def test_the_host_plan_gives_each_role_its_own_address(self):
        """victim .10, clients from .21, attackers from .66."""
        plan = {name: ip for name, _role, ip in host_plan(2, 2)}
        assert f"{SUBNET}.10" == plan["victim"]
        assert f"{SUBNET}.22" == plan["client2"]
        assert f"{SUBNET}.67" == plan["attacker2"]


class TestRequirements:
    def test_missing_programs_are_named_by_their_debian_package(self, monkeypatch, tmp_path):
        """With no tools on PATH the message tells which packages to install."""
        monkeypatch.setenv("PATH", str(tmp_path))
        message = missing_requirements(scenario.load("quick"))
        assert message is not None
        if "root" not in message:
            for package in ("nmap", "hping3", "hydra", "siege", "dnsutils", "iproute2"):
                assert package in message


class TestCommandLine:
    def _parser(self):
        parser = argparse.ArgumentParser(prog="antinex")
        cli.register(parser.add_subparsers(dest="command"))
        return parser

    def test_run_without_a_scenario_is_a_usage_error(self):
        """`antinex lab run` names the two flags it needs."""
        args = self._parser().parse_args(["lab", "run"])
        with pytest.raises(UsageError, match="--scenario NAME"):
            args.run(args)

    def test_list_prints_every_builtin_scenario(self, capsys):
        """`antinex lab list` shows each name with its duration."""
        args = self._parser().parse_args(["lab", "list"])
        assert 0 == args.run(args)
        printed = capsys.readouterr().out
        assert all(name in printed for name in scenario.builtin_names())
