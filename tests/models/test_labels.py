"""Tests of label rules: parsing a label file and labelling packet columns with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from antinex.options import UsageError
from models.dataset import empty_columns
from models.labels import BENIGN, apply_rules, load_rules, parse_rules

T0 = 1_700_000_000


def packets(*rows: tuple[float, str, str, int, int]) -> dict[str, np.ndarray]:
    """Columns of TCP packets given as (seconds, source, destination, sport, dport)."""
    columns = empty_columns(len(rows))
    for i, (seconds, src, dst, sport, dport) in enumerate(rows):
        columns["ts_ns"][i] = int(seconds * 1e9)
        version = "ipv6" if ":" in src else "ip"
        columns[f"{version}_src"][i] = src
        columns[f"{version}_dst"][i] = dst
        columns["tcp_sport"][i] = sport
        columns["tcp_dport"][i] = dport
        columns["l4_proto"][i] = 6
    return columns


def rule(**fields: object) -> dict[str, object]:
    return {"attack_type": "scan", "start": T0, "end": T0 + 10, **fields}


class TestParsing:
    def test_iso_times_with_and_without_zone_are_utc(self) -> None:
        """A time without a zone is read as UTC, the same instant as one ending in Z."""
        (a,) = parse_rules([rule(start="2023-11-14T22:13:20Z", end="2023-11-14T22:13:30")])
        assert T0 * 10**9 == a.start_ns
        assert (T0 + 10) * 10**9 == a.end_ns

    def test_epoch_seconds_may_be_numbers_or_text(self) -> None:
        """Epoch seconds are accepted as JSON numbers and as numeric text."""
        (a,) = parse_rules({"rules": [rule(start=str(T0), end=T0 + 0.5)]})
        assert T0 * 10**9 == a.start_ns
        assert T0 * 10**9 + 500_000_000 == a.end_ns

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"end": None}, "neither ISO-8601"),
            ({"start": T0 + 20}, "ends before it starts"),
            ({"src": ["10.0.0.300"]}, "bad address"),
            ({"dst_ports": [70000]}, "port numbers"),
            ({"protocl": "tcp"}, "unknown keys"),
            ({"attack_type": ""}, "needs an attack_type"),
            ({"protocol": "sctp-ish"}, "is not tcp"),
        ],
    )
    def test_a_bad_rule_is_refused_with_its_number(self, fields: dict, message: str) -> None:
        """A mistake in a rule ends in one sentence naming the rule and the problem."""
        with pytest.raises(UsageError, match="rule 1") as caught:
            parse_rules([rule(**fields)])
        assert message in str(caught.value)

    def test_a_rule_without_a_time_window_is_refused(self) -> None:
        """Labels hold for a time window: a rule that would label a whole capture is refused."""
        with pytest.raises(UsageError, match="'end'"):
            parse_rules([{"attack_type": "scan", "start": T0}])

    def test_a_missing_label_file_is_a_usage_error(self, tmp_path: Path) -> None:
        """A label file that does not exist is reported, not raised as a traceback."""
        with pytest.raises(UsageError, match="does not exist"):
            load_rules(tmp_path / "absent.json")

    def test_an_empty_rule_list_says_every_packet_is_benign(self) -> None:
        """A file whose rule list is empty (no attack ran) labels everything benign."""
        columns = packets((T0 + 1, "198.51.100.7", "203.0.113.5", 40000, 22))
        label, kinds, matched = apply_rules(parse_rules({"rules": []}), columns)
        assert ([0], [BENIGN], []) == (label.tolist(), kinds.tolist(), matched)

    def test_a_file_without_a_rule_list_is_refused(self) -> None:
        """A JSON object without ``rules`` is not mistaken for an empty list."""
        with pytest.raises(UsageError, match="holds no rules"):
            parse_rules({"scenario": "x"})

    def test_a_label_file_is_read_from_disk(self, tmp_path: Path) -> None:
        """A label file on disk yields its rules in order."""
        path = tmp_path / "labels.json"
        path.write_text(json.dumps([rule(), rule(attack_type="flood")]))
        assert ["scan", "flood"] == [r.attack_type for r in load_rules(path)]


class TestApplying:
    def test_window_hosts_and_ports_must_all_match(self) -> None:
        """A packet is labelled only inside the window, between the hosts, on the ports."""
        columns = packets(
            (T0 + 1, "198.51.100.7", "203.0.113.5", 40000, 22),  # matches
            (T0 + 11, "198.51.100.7", "203.0.113.5", 40000, 22),  # after the window
            (T0 + 1, "198.51.100.8", "203.0.113.5", 40000, 22),  # another source
            (T0 + 1, "198.51.100.7", "203.0.113.5", 40000, 80),  # another port
            (T0 + 10, "198.51.100.7", "203.0.113.9", 40000, 22),  # end is inclusive
        )
        rules = parse_rules(
            [
                rule(
                    src=["198.51.100.7"],
                    dst=["203.0.113.0/29", "203.0.113.9"],
                    dst_ports=[22],
                    protocol="tcp",
                )
            ]
        )
        label, kinds, matched = apply_rules(rules, columns)
        assert [1, 0, 0, 0, 1] == label.tolist()
        assert ["scan", BENIGN, BENIGN, BENIGN, "scan"] == kinds.tolist()
        assert [2] == matched

    def test_replies_match_unless_one_direction_is_asked_for(self) -> None:
        """The victim's answers carry the attack's label; with both_directions false they do not."""
        columns = packets(
            (T0 + 1, "198.51.100.7", "203.0.113.5", 40000, 22),
            (T0 + 1, "203.0.113.5", "198.51.100.7", 22, 40000),
        )
        both = parse_rules([rule(src=["198.51.100.7"], dst=["203.0.113.5"], dst_ports=[22])])
        one = parse_rules([rule(src=["198.51.100.7"], dst_ports=[22], both_directions=False)])
        assert [1, 1] == apply_rules(both, columns)[0].tolist()
        assert [1, 0] == apply_rules(one, columns)[0].tolist()

    def test_the_first_matching_rule_wins(self) -> None:
        """Rules apply in order: an earlier benign rule carves traffic out of a later one."""
        columns = packets(
            (T0 + 1, "198.51.100.7", "203.0.113.5", 40000, 443),
            (T0 + 1, "198.51.100.7", "203.0.113.5", 40000, 22),
        )
        rules = parse_rules(
            [rule(attack_type=BENIGN, dst_ports=[443]), rule(src=["198.51.100.0/24"])]
        )
        label, kinds, matched = apply_rules(rules, columns)
        assert [0, 1] == label.tolist()
        assert [BENIGN, "scan"] == kinds.tolist()
        assert [1, 1] == matched

    def test_ipv6_hosts_and_protocols_match(self) -> None:
        """IPv6 sources match IPv6 networks; a protocol rule skips other transports."""
        columns = packets((T0 + 1, "2001:db8::7", "2001:db8:5::1", 40000, 22))
        assert [1] == apply_rules(parse_rules([rule(src=["2001:db8::/64"])]), columns)[0].tolist()
        assert [0] == apply_rules(parse_rules([rule(protocol="udp")]), columns)[0].tolist()
        assert [0] == apply_rules(parse_rules([rule(src=["198.51.100.0/24"])]), columns)[0].tolist()
