"""Context features: damped rates, scan indicators, flow counts and bounded state."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from capture.context import ContextTracker
from capture.decode import FrameDecoder
from capture.schema import INDEX


def _records(packets, start_s: float = 1_700_000_000.0, gap_s: float = 0.01):
    decoder = FrameDecoder("test")
    out = []
    for n, packet in enumerate(packets):
        frame = bytes(packet)
        ts_ns = int((start_s + n * gap_s) * 1e9)
        out.append(decoder.decode(frame, 1, ts_ns, len(frame)))
    return out


def _value(record, name):
    return record[INDEX[name]]


class TestRates:
    def test_a_steady_source_shows_its_packet_rate_in_the_one_second_window(self):
        packets = [
            Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=4000, dport=80, flags="A")
        ] * 2000
        tracker = ContextTracker()
        records = _records(packets, gap_s=0.01)  # 100 packets per second for 20 s
        for record in records:
            tracker.update(record)
        assert 100 == pytest.approx(_value(records[-1], "ctx_src_pkt_rate_h1s"), rel=0.05)
        assert 100 == pytest.approx(_value(records[-1], "ctx_pair_pkt_rate_h1s"), rel=0.05)

    def test_the_sixty_second_window_lags_behind_a_burst(self):
        packets = [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=80)] * 200
        tracker = ContextTracker()
        records = _records(packets, gap_s=0.001)
        for record in records:
            tracker.update(record)
        last = records[-1]
        assert _value(last, "ctx_src_pkt_rate_h100ms") > _value(last, "ctx_src_pkt_rate_h60s")


class TestScanIndicators:
    def test_a_port_scan_raises_new_port_rate_and_syn_ratio(self):
        scan = [
            Ether() / IP(src="10.0.0.66", dst="10.0.0.2") / TCP(sport=40000, dport=p, flags="S")
            for p in range(1, 501)
        ]
        browse = [
            Ether() / IP(src="10.0.0.7", dst="10.0.0.2") / TCP(sport=40001, dport=443, flags="PA")
        ] * 500
        tracker = ContextTracker()
        scan_records, browse_records = _records(scan), _records(browse)
        for record in scan_records + browse_records:
            tracker.update(record)
        scanner, browser = scan_records[-1], browse_records[-1]
        assert 1.0 == _value(scanner, "ctx_src_syn_ratio")
        assert 0.0 == _value(browser, "ctx_src_syn_ratio")
        assert _value(scanner, "ctx_src_new_port_rate") > 10 * _value(
            browser, "ctx_src_new_port_rate"
        )


class TestFlows:
    def test_flow_counts_grow_and_share_reflects_both_directions(self):
        a = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=5000, dport=80)
        b = Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=5000)
        tracker = ContextTracker()
        records = _records([a, b, a, b])
        for record in records:
            tracker.update(record)
        assert [1, 2, 3, 4] == [_value(r, "ctx_flow_pkts") for r in records]
        assert 0.5 == _value(records[-1], "ctx_flow_first_dir_share")
        assert 0.03 == pytest.approx(_value(records[-1], "ctx_flow_age_s"))


class TestBoundedState:
    def test_tables_never_grow_far_past_their_limit(self):
        packets = [
            Ether()
            / IP(src=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", dst="10.9.9.9")
            / TCP(sport=1000 + i % 50000, dport=80)
            for i in range(12_000)
        ]
        tracker = ContextTracker(max_entries=1000)
        for record in _records(packets, gap_s=0.001):
            tracker.update(record)
        # Pruning runs every 4096 packets, so a table may overshoot by at most that many.
        sizes = tracker.sizes()
        assert {"sources", "pairs", "flows", "ports"} == set(sizes)
        assert all(1000 <= entries <= 1000 + 4096 for entries in sizes.values()), sizes
        assert tracker.sources.evicted > 0
