"""Lab scenarios: which hosts, which benign activities and attacks, when; read from JSON files.

A scenario file looks like this (times in seconds from the start of traffic)::

    {
      "name": "quick",
      "description": "One minute: benign clients, a SYN scan, a SYN flood, a brute force.",
      "duration_s": 60,
      "hosts": {"clients": 2, "attackers": 1},
      "benign": [
        {"activity": "browse", "host": "client1", "options": {"pace": "human"}},
        {"activity": "siege", "host": "client2", "options": {"concurrency": 2}}
      ],
      "attacks": [
        {"tool": "nmap_syn", "at_s": 8, "max_s": 12, "options": {"ports": "1-1024"}}
      ]
    }

Benign activities run from the start to the end of the run. An attack starts at ``at_s`` on
``host`` (``attacker1`` unless given) and is stopped by the lab at ``at_s + max_s`` if it has
not ended by then; ``attack_type`` overrides the label its tool gives by default.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antinex.options import UsageError
from lab.tools import ACTIVITIES, ATTACKS, merged_options

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
_MAX_CLIENTS, _MAX_ATTACKERS = 8, 4
_MAX_DURATION_S = 3600


@dataclass(frozen=True)
class BenignStep:
    activity: str
    host: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class AttackStep:
    tool: str
    host: str
    at_s: float
    max_s: float
    attack_type: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    clients: int
    attackers: int
    benign: tuple[BenignStep, ...]
    attacks: tuple[AttackStep, ...]
    source: str  # the file it was read from

    @property
    def host_names(self) -> list[str]:
        names = ["victim"]
        names += [f"client{n}" for n in range(1, self.clients + 1)]
        return names + [f"attacker{n}" for n in range(1, self.attackers + 1)]

    def programs(self) -> list[str]:
        """Names of the attack tools and activities the scenario runs, each once."""
        seen = dict.fromkeys(step.activity for step in self.benign)
        seen.update(dict.fromkeys(step.tool for step in self.attacks))
        return list(seen)


def builtin_names() -> list[str]:
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.json"))


def resolve(name_or_path: str) -> Path:
    """The file of a built-in scenario name, or ``name_or_path`` itself when it is a file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = SCENARIO_DIR / f"{name_or_path}.json"
    if builtin.is_file():
        return builtin
    raise UsageError(
        f"scenario {name_or_path!r} is neither a file nor a built-in scenario "
        f"({', '.join(builtin_names())})"
    )


def load(name_or_path: str) -> Scenario:
    """Read and check a scenario; any mistake in it is a UsageError naming the file and field."""
    path = resolve(name_or_path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read scenario file {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise UsageError(f"scenario file {path} is not valid JSON: {err}") from err
    return parse(data, str(path))


def _field(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    number = kind in (float, (int, float))
    if number and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        name = "a number" if number else getattr(kind, "__name__", str(kind))
        raise UsageError(f"{where}: {key!r} must be {name}, not {value!r}")
    return value


def _only_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UsageError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})"
        )


def parse(data: Any, source: str = "<scenario>") -> Scenario:
    """A :class:`Scenario` from decoded JSON ``data``."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a scenario is a JSON object, not {type(data).__name__}")
    _only_keys(data, {"name", "description", "duration_s", "hosts", "benign", "attacks"}, source)
    name = _field(data, "name", str, source)
    duration = _field(data, "duration_s", float, source)
    if not 0 < duration <= _MAX_DURATION_S:
        raise UsageError(f"{source}: duration_s {duration:g} is outside 0..{_MAX_DURATION_S}")
    hosts = data.get("hosts", {})
    if not isinstance(hosts, dict):
        raise UsageError(f"{source}: 'hosts' must be an object such as {{\"clients\": 2}}")
    _only_keys(hosts, {"clients", "attackers"}, f"{source} hosts")
    clients = int(hosts.get("clients", 2))
    attackers = int(hosts.get("attackers", 1))
    if not (1 <= clients <= _MAX_CLIENTS and 1 <= attackers <= _MAX_ATTACKERS):
        raise UsageError(
            f"{source}: hosts need 1..{_MAX_CLIENTS} clients and 1..{_MAX_ATTACKERS} attackers"
        )
    scenario = Scenario(
        name=name,
        description=str(data.get("description", "")),
        duration_s=duration,
        clients=clients,
        attackers=attackers,
        benign=(),
        attacks=(),
        source=source,
    )
    benign = tuple(
        _benign_step(step, f"{source} benign[{n}]", scenario)
        for n, step in enumerate(_list(data, "benign", source))
    )
    attacks = tuple(
        _attack_step(step, f"{source} attacks[{n}]", scenario)
        for n, step in enumerate(_list(data, "attacks", source))
    )
    attacks = tuple(sorted(attacks, key=lambda step: step.at_s))
    _check_overlaps(attacks, source)
    return dataclasses.replace(scenario, benign=benign, attacks=attacks)


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise UsageError(f"{where}: {key!r} must be a list")
    return value


def _host(step: Mapping[str, Any], default: str, scenario: Scenario, where: str) -> str:
    host = step.get("host", default)
    if host not in scenario.host_names or host == "victim":
        raise UsageError(
            f"{where}: host {host!r} is not a client or attacker of this scenario "
            f"({', '.join(scenario.host_names[1:])})"
        )
    return host


def _benign_step(step: Any, where: str, scenario: Scenario) -> BenignStep:
    if not isinstance(step, dict):
        raise UsageError(f"{where}: a benign step is an object with 'activity' and 'host'")
    _only_keys(step, {"activity", "host", "options"}, where)
    activity = _field(step, "activity", str, where)
    if activity not in ACTIVITIES:
        raise UsageError(f"{where}: unknown activity {activity!r} ({', '.join(ACTIVITIES)})")
    options = merged_options(ACTIVITIES[activity], step.get("options", {}), where)
    return BenignStep(activity, _host(step, "client1", scenario, where), options)


def _attack_step(step: Any, where: str, scenario: Scenario) -> AttackStep:
    if not isinstance(step, dict):
        raise UsageError(f"{where}: an attack step is an object with 'tool', 'at_s' and 'max_s'")
    _only_keys(step, {"tool", "host", "at_s", "max_s", "attack_type", "options"}, where)
    tool = _field(step, "tool", str, where)
    if tool not in ATTACKS:
        raise UsageError(f"{where}: unknown tool {tool!r} ({', '.join(ATTACKS)})")
    at_s, max_s = _field(step, "at_s", float, where), _field(step, "max_s", float, where)
    if not (at_s >= 0 and max_s > 0 and at_s + max_s <= scenario.duration_s):
        raise UsageError(
            f"{where}: at_s {at_s:g} + max_s {max_s:g} must end within duration_s "
            f"{scenario.duration_s:g}"
        )
    attack_type = step.get("attack_type", ATTACKS[tool].attack_type)
    if not isinstance(attack_type, str) or not attack_type or attack_type == "benign":
        raise UsageError(f"{where}: attack_type must be a non-empty name other than 'benign'")
    options = merged_options(ATTACKS[tool], step.get("options", {}), where)
    host = _host(step, "attacker1", scenario, where)
    if not host.startswith("attacker"):
        raise UsageError(f"{where}: attacks run from an attacker host, not {host!r}")
    return AttackStep(tool, host, at_s, max_s, attack_type, options)


def _check_overlaps(attacks: tuple[AttackStep, ...], where: str) -> None:
    """Two attacks of one host at once would give its packets two labels: refuse that."""
    for n, first in enumerate(attacks):
        for second in attacks[n + 1 :]:
            if first.host == second.host and second.at_s < first.at_s + first.max_s:
                raise UsageError(
                    f"{where}: {first.tool} at {first.at_s:g} s and {second.tool} at "
                    f"{second.at_s:g} s overlap on {first.host}; start the second later or "
                    "run it from another attacker host"
                )
