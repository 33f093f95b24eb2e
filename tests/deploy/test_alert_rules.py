"""Tests of deploy/prometheus/rules.yml with promtool: it is valid, its unit tests pass, and those
tests cover every alert both firing and quiet."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from deployfiles import RULES, RULES_TEST, rules, yaml_file


def promtool(*args: str, cwd: Path = RULES.parent) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.prometheus
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
class TestPromtool:
    def test_the_rules_are_valid(self) -> None:
        done = promtool("check", "rules", RULES.name)
        assert 0 == done.returncode, done.stdout + done.stderr
        assert f"SUCCESS: {len(rules())} rules found" in done.stdout

    def test_the_rules_pass_their_unit_tests(self) -> None:
        done = promtool("test", "rules", RULES_TEST.name)
        assert 0 == done.returncode, done.stdout + done.stderr


class TestCoverage:
    def test_the_unit_tests_load_rules_yml(self) -> None:
        assert [RULES.name] == yaml_file(RULES_TEST)["rule_files"]

    def test_every_alert_is_tested_firing_and_quiet(self) -> None:
        firing: set[str] = set()
        quiet: set[str] = set()
        for case in yaml_file(RULES_TEST)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
        alerts = {rule["alert"] for rule in rules() if "alert" in rule}
        assert alerts == firing
        assert alerts == quiet

    def test_every_alert_says_how_bad_and_what_to_do(self) -> None:
        for rule in rules():
            if "alert" in rule:
                assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
                assert {"summary", "description"} == rule["annotations"].keys(), rule["alert"]
