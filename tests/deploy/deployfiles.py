"""Readers of the files under deploy/ shared by its tests: YAML, the dashboard's and the rules'
PromQL, and the ANTINEX_* variables the command line accepts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "antinex.json"
KUBERNETES = DEPLOY / "kubernetes"

SENSOR_JOB = "antinex-sensor"
PROCESSOR_JOB = "antinex-processor"

# What the dashboard's Grafana variables stand for when a test runs its queries. $__rate_interval
# is Grafana's pick for a 15 s scrape interval; the tests scrape every second, so 30 s holds
# plenty of samples either way.
GRAFANA_VARIABLES = {"__rate_interval": "30s", "__interval": "15s", "__range": "5m"}

_ENV_IN_HELP = re.compile(r"\[env (ANTINEX_[A-Z0-9_]+)\]")
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")


def yaml_documents(path: Path) -> list[Any]:
    """Every document of a YAML file (Kubernetes files hold several)."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def yaml_file(path: Path) -> Any:
    (document,) = yaml_documents(path)
    return document


def kubernetes_objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, object) for every object of every manifest under deploy/kubernetes."""
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml_documents(path):
            yield path, document


def kubernetes_object(kind: str, name: str) -> dict[str, Any]:
    found = [
        obj
        for _, obj in kubernetes_objects()
        if (obj["kind"], obj["metadata"]["name"]) == (kind, name)
    ]
    assert 1 == len(found), f"{kind}/{name} is declared {len(found)} times under deploy/kubernetes"
    return found[0]


# The command line ------------------------------------------------------------------------------


def flag_env_names() -> set[str]:
    """The ANTINEX_* twin of every flag of every ``antinex`` subcommand, read from the parser."""
    import argparse

    from antinex.cli import build_parser

    names: set[str] = set()
    pending = [build_parser()]
    while pending:
        parser = pending.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
            elif action.help:
                names.update(_ENV_IN_HELP.findall(action.help))
    return names


def subcommand_default(subcommand: str, dest: str) -> Any:
    """The default of a subcommand's option (read while no environment twin is set)."""
    import argparse

    from antinex.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction) and subcommand in action.choices:
            return action.choices[subcommand].get_default(dest)
    raise LookupError(f"antinex has no {subcommand} subcommand")


def interpolated_names(text: str) -> set[str]:
    """Variable names a compose or shell text refers to as ``$NAME`` or ``${NAME...}``."""
    text = text.replace("$$", "")  # an escaped dollar is no variable
    return {braced or bare for braced, bare in _VARIABLE.findall(text)}


# PromQL --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard or the rules, and where it comes from."""

    where: str
    expr: str
    legend: str = ""


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_panels(board: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    panels = []
    for panel in (board or dashboard())["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def substitute_grafana_variables(expr: str) -> str:
    """``expr`` with Grafana's interval variables replaced; raises on any other variable."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VARIABLES:
            raise ValueError(f"query uses ${name}, which the tests cannot stand in for: {expr}")
        return GRAFANA_VARIABLES[name]

    return _VARIABLE.sub(value, expr)


def dashboard_queries() -> list[Query]:
    return [
        Query(
            f"panel {panel['title']!r} query {target['refId']}",
            substitute_grafana_variables(target["expr"]),
            target.get("legendFormat", ""),
        )
        for panel in dashboard_panels()
        if panel.get("type") != "row"
        for target in panel.get("targets", [])
    ]


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml_file(RULES)["groups"] for rule in group["rules"]]


def rule_name(rule: dict[str, Any]) -> str:
    return rule.get("alert") or rule["record"]


_MODIFIER = re.compile(r"^\s*(?:bool\b|(?:on|ignoring|group_left|group_right)\s*(?:\([^)]*\))?)")
_NUMBER = re.compile(r"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?\s*$", re.IGNORECASE)
_ABSENT = re.compile(r"^\s*absent(?:_over_time)?\s*\((.*)\)\s*$", re.DOTALL)


def condition_operands(expr: str) -> list[str]:
    """The operands of an alert condition that must return data while nothing fires.

    An alert condition such as ``rate(x[5m]) > 0`` is empty whenever the alert does not fire,
    so an empty answer says nothing about whether its metric exists. The expression is cut at
    its top-level comparisons (``>``, ``==``...) and set operators (``and``, ``or``,
    ``unless``); the pieces that are not plain numbers are what the pipeline must feed. For
    ``absent(x)``, which is empty exactly when ``x`` exists, the piece is ``x``.
    """
    operands = []
    for piece in _split_top_level(expr):
        while True:  # drop `bool`, `on(...)`, `group_left(...)` left over from the operator
            stripped = _MODIFIER.sub("", piece, count=1)
            if stripped == piece:
                break
            piece = stripped
        piece = piece.strip()
        absent = _ABSENT.match(piece)
        if absent:
            piece = absent.group(1).strip()
        if piece and not _NUMBER.match(piece):
            operands.append(piece)
    return operands


def _split_top_level(expr: str) -> list[str]:
    pieces: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(expr):
        char = expr[i]
        if char in "\"'`":
            i = expr.index(char, i + 1) + 1
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            width = _operator_width(expr, i)
            if width:
                pieces.append(expr[start:i])
                i = start = i + width
                continue
        i += 1
    pieces.append(expr[start:])
    return pieces


def _operator_width(expr: str, i: int) -> int:
    """Length of a comparison or set operator starting at ``expr[i]``, else 0."""
    if expr.startswith(("==", "!=", ">=", "<="), i):
        return 2
    if expr[i] in "<>":
        return 1
    before = expr[i - 1] if i else " "
    for word in ("and", "or", "unless"):
        after = expr[i + len(word)] if i + len(word) < len(expr) else " "
        if (
            expr.startswith(word, i)
            and not (before.isalnum() or before in "_:")
            and not (after.isalnum() or after in "_:")
        ):
            return len(word)
    return 0


def rule_queries() -> list[Query]:
    """The expression of every recording rule, and the operands of every alert's condition."""
    queries = []
    for rule in rules():
        if "record" in rule:
            queries.append(Query(f"recording rule {rule['record']}", rule["expr"]))
            continue
        for number, operand in enumerate(condition_operands(rule["expr"]), 1):
            queries.append(Query(f"alert {rule['alert']} operand {number}", operand))
    return queries


_METRIC_NAME = re.compile(r"(?<![\w:\"])(antinex_[a-z0-9_]+)")


def metric_names(expr: str) -> set[str]:
    """The antinex_* metric names an expression reads (not recording-rule names)."""
    return set(_METRIC_NAME.findall(expr))
