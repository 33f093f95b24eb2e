"""Lab label files: one rule per attack window, read back and applied by the models' labeller."""

from __future__ import annotations

import json

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from capture.decode import FrameDecoder
from capture.encoding import record_to_json
from lab.labels import LEAD_S, TAIL_S, AttackWindow, count_labels, label_rules, write_label_file
from models.labels import BENIGN, load_rules

VICTIM, ATTACKER, CLIENT = "10.66.0.10", "10.66.0.66", "10.66.0.21"
T0 = 1_800_000_000 * 10**9  # an attack window starts here, in ns since the epoch


def _window(start_s: float = 0.0, seconds: float = 5.0, attack_type: str = "syn_scan", **kw):
    fields = {
        "tool": "nmap_syn",
        "attack_type": attack_type,
        "host": "attacker1",
        "src_ip": ATTACKER,
        "dst_ip": VICTIM,
        "start_ns": T0 + int(start_s * 1e9),
        "end_ns": T0 + int((start_s + seconds) * 1e9),
        "exit_code": 0,
        "stopped_by_lab": False,
    }
    fields.update(kw)
    return AttackWindow(**fields)


def _write_records(path, packets):
    """Decode (seconds after T0, scapy packet) pairs into sensor JSON lines."""
    decoder = FrameDecoder("test")
    with path.open("wb") as stream:
        for offset_s, packet in packets:
            frame = bytes(packet)
            record = decoder.decode(frame, 1, T0 + int(offset_s * 1e9), len(frame))
            stream.write(record_to_json(record) + b"\n")


def _tcp(src, dst, sport, dport, flags="S"):
    return Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags)


class TestLabelFile:
    def test_the_file_is_read_back_by_the_models_label_parser(self, tmp_path):
        """What the lab writes is exactly what `antinex dataset build --labels` reads."""
        path = tmp_path / "labels.json"
        write_label_file(path, [_window(), _window(10, attack_type="syn_flood")], "quick")
        rules = load_rules(path)
        assert ["syn_scan", "syn_flood"] == [rule.attack_type for rule in rules]
        assert all(rule.both_directions for rule in rules)
        assert "quick" == json.loads(path.read_text())["scenario"]

    def test_a_window_runs_from_just_before_the_tool_to_a_tail_after_it(self, tmp_path):
        """The rule covers the tool's run plus the lead and the tail for late answers."""
        path = tmp_path / "labels.json"
        write_label_file(path, [_window(0, 5)], "t")
        (rule,) = load_rules(path)
        assert abs(rule.start_ns - (T0 - LEAD_S * 1e9)) < 1_000
        assert abs(rule.end_ns - (T0 + (5 + TAIL_S) * 1e9)) < 1_000

    def test_rules_name_the_attacker_and_the_victim(self):
        """src is the attacker, dst the victim; the note keeps the tool and its exit code."""
        (rule,) = label_rules([_window(exit_code=1, stopped_by_lab=True)])
        assert [ATTACKER] == rule["src"]
        assert [VICTIM] == rule["dst"]
        assert "nmap_syn" in rule["note"] and "exit code 1" in rule["note"]

    def test_rules_follow_the_order_the_attacks_started_in(self):
        """Windows given out of order are written in time order."""
        rules = label_rules([_window(20, attack_type="b"), _window(0, attack_type="a")])
        assert ["a", "b"] == [rule["attack_type"] for rule in rules]

    def test_a_run_without_attacks_writes_an_empty_rule_list(self, tmp_path):
        """No window, no rule: every packet of such a run is benign."""
        path = tmp_path / "labels.json"
        write_label_file(path, [], "benign-only")
        assert [] == json.loads(path.read_text())["rules"]


class TestApplyingTheLabels:
    def test_attack_packets_both_ways_are_labelled_and_the_rest_is_benign(self, tmp_path):
        """Inside the window the attacker's packets and the victim's answers carry the label;
        clients, and the attacker outside the window, stay benign."""
        labels, records = tmp_path / "labels.json", tmp_path / "records.jsonl"
        write_label_file(labels, [_window(0, 5)], "t")
        _write_records(
            records,
            [
                (-1.0, _tcp(ATTACKER, VICTIM, 40000, 22)),  # before the window
                (1.0, _tcp(ATTACKER, VICTIM, 40000, 80)),  # the scan
                (1.0, _tcp(VICTIM, ATTACKER, 80, 40000, "SA")),  # the victim's answer
                (2.0, _tcp(CLIENT, VICTIM, 51000, 80, "PA")),  # a client during the scan
                (2.5, Ether() / IP(src=CLIENT, dst=VICTIM) / UDP(sport=5300, dport=53)),
                (3.0, Ether() / ARP(psrc=CLIENT, pdst=VICTIM)),
                (6.5, _tcp(VICTIM, ATTACKER, 22, 40000, "R")),  # in the tail
                (9.0, _tcp(ATTACKER, VICTIM, 40000, 443)),  # after the tail
            ],
        )
        counts = count_labels(records, load_rules(labels))
        assert 8 == counts.records
        assert {"syn_scan": 3, BENIGN: 5} == dict(counts.by_type)
        assert [3] == counts.by_rule
        assert [1] == counts.from_attacker_by_rule

    def test_two_attackers_at_once_keep_their_own_labels(self, tmp_path):
        """Overlapping windows of two attackers label each one's packets by its address."""
        labels, records = tmp_path / "labels.json", tmp_path / "records.jsonl"
        other = "10.66.0.67"
        write_label_file(
            labels,
            [_window(0, 5), _window(1, 5, "syn_flood", src_ip=other, host="attacker2")],
            "t",
        )
        _write_records(
            records,
            [(2.0, _tcp(ATTACKER, VICTIM, 40000, 80)), (2.0, _tcp(other, VICTIM, 41000, 80))],
        )
        counts = count_labels(records, load_rules(labels))
        assert {"syn_scan": 1, "syn_flood": 1} == dict(counts.by_type)
