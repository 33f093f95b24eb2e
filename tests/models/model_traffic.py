"""Small labelled captures built with scapy, and synthetic dataset columns, for the model tests.

The captures hold benign web, DNS and ping traffic between private hosts, with two attacks
inside known time windows: a SYN port scan and an SSH password-guessing burst.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.dataset import empty_columns

START_S = 1_700_000_000.0
CAPTURE_S = 60.0
ATTACK_WINDOW_S = (20.0, 40.0)

RunAntinex = Callable[..., tuple[int, str, str]]


# Scapy captures -----------------------------------------------------------------------------


class _Conversation:
    """Builds the packets of one host pair with advancing clocks, ids and sequence numbers."""

    def __init__(self, rng: random.Random, client: str, server: str, ttl: int = 64) -> None:
        self.rng = rng
        self.client, self.server = client, server
        self.ttl = ttl
        self.ip_id = rng.randrange(1, 60000)

    def ip(self, forward: bool) -> Any:  # a scapy packet
        from scapy.layers.inet import IP

        self.ip_id = (self.ip_id + 1) & 0xFFFF
        src, dst = (self.client, self.server) if forward else (self.server, self.client)
        return IP(src=src, dst=dst, ttl=self.ttl, id=self.ip_id)


def _tcp_session(
    rng: random.Random, conv: _Conversation, port: int, t: float, request: bytes, reply_len: int
) -> list:
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether

    sport = rng.randrange(32768, 61000)
    seq, ack = rng.randrange(1 << 32), rng.randrange(1 << 32)
    options = [
        ("MSS", 1460),
        ("SAckOK", b""),
        ("Timestamp", (rng.randrange(1 << 31), 0)),
        ("NOP", None),
        ("WScale", 7),
    ]
    reply = bytes(rng.randrange(256) for _ in range(reply_len))
    steps = [
        (True, "S", b"", options),
        (False, "SA", b"", options[:3]),
        (True, "A", b"", []),
        (True, "PA", request, []),
        (False, "A", b"", []),
        (False, "PA", reply, []),
        (True, "A", b"", []),
        (True, "FA", b"", []),
        (False, "FA", b"", []),
        (True, "A", b"", []),
    ]
    packets = []
    for forward, flags, payload, opts in steps:
        t += rng.uniform(0.0005, 0.03)
        tcp = TCP(
            sport=sport if forward else port,
            dport=port if forward else sport,
            flags=flags,
            seq=seq if forward else ack,
            ack=ack if forward else seq,
            window=rng.choice((502, 64240, 65535)),
            options=opts,
        )
        packet = Ether() / conv.ip(forward) / tcp / payload
        packet.time = t
        packets.append(packet)
        if forward:
            seq += len(payload) + (1 if "S" in flags or "F" in flags else 0)
        else:
            ack += len(payload) + (1 if "S" in flags or "F" in flags else 0)
    return packets


def _dns(rng: random.Random, conv: _Conversation, t: float) -> list:
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether

    name = f"{rng.choice(('www', 'api', 'cdn', 'mail'))}.example.org"
    sport, ident = rng.randrange(32768, 61000), rng.randrange(65536)
    query = (
        Ether() / conv.ip(True) / UDP(sport=sport, dport=53) / DNS(id=ident, qd=DNSQR(qname=name))
    )
    answer = DNS(id=ident, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata="192.0.2.80"))
    response = Ether() / conv.ip(False) / UDP(sport=53, dport=sport) / answer
    query.time, response.time = t, t + rng.uniform(0.001, 0.02)
    return [query, response]


def _ping(rng: random.Random, conv: _Conversation, t: float) -> list:
    from scapy.layers.inet import ICMP
    from scapy.layers.l2 import Ether

    ident = rng.randrange(65536)
    request = Ether() / conv.ip(True) / ICMP(type=8, id=ident, seq=1) / (b"x" * 56)
    reply = Ether() / conv.ip(False) / ICMP(type=0, id=ident, seq=1) / (b"x" * 56)
    request.time, reply.time = t, t + rng.uniform(0.0002, 0.005)
    return [request, reply]


def _port_scan(rng: random.Random, conv: _Conversation, t: float, ports: int) -> list:
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether

    sport = rng.randrange(32768, 61000)
    packets = []
    for port in rng.sample(range(1, 10000), ports):
        t += rng.uniform(0.001, 0.01)
        probe = (
            Ether()
            / conv.ip(True)
            / TCP(
                sport=sport,
                dport=port,
                flags="S",
                seq=rng.randrange(1 << 32),
                window=1024,
                options=[("MSS", 1460)],
            )
        )
        answer = Ether() / conv.ip(False) / TCP(sport=port, dport=sport, flags="RA", window=0)
        probe.time, answer.time = t, t + rng.uniform(0.0001, 0.002)
        packets += [probe, answer]
    return packets


def write_capture(path: Path, scenario: int, seed: int = 7) -> dict:
    """Write one capture of scenario ``scenario`` (hosts 10.<scenario>.x.y); return its hosts."""
    from scapy.utils import wrpcap

    rng = random.Random(seed * 100 + scenario)
    net = f"10.{scenario}"
    clients = [f"{net}.0.{i}" for i in range(10, 16)]
    servers = [f"{net}.1.{i}" for i in range(1, 4)]
    resolver = f"{net}.1.53"
    scanner, guesser = f"{net}.9.1", f"{net}.9.2"
    packets: list = []
    for _ in range(70):
        t = START_S + rng.uniform(0, CAPTURE_S)
        conv = _Conversation(rng, rng.choice(clients), rng.choice(servers))
        port = rng.choice((80, 443, 22))
        request = (
            b"GET /index.html HTTP/1.1\r\nHost: example.org\r\n\r\n"
            if port == 80
            else bytes(rng.randrange(256) for _ in range(rng.randrange(40, 300)))
        )
        packets += _tcp_session(rng, conv, port, t, request, rng.randrange(100, 1400))
    for _ in range(60):
        conv = _Conversation(rng, rng.choice(clients), resolver)
        packets += _dns(rng, conv, START_S + rng.uniform(0, CAPTURE_S))
    for _ in range(20):
        conv = _Conversation(rng, rng.choice(clients), rng.choice(servers))
        packets += _ping(rng, conv, START_S + rng.uniform(0, CAPTURE_S))
    low, high = ATTACK_WINDOW_S
    scan = _Conversation(rng, scanner, servers[0], ttl=rng.choice((40, 64)))
    packets += _port_scan(rng, scan, START_S + low + 1, 120)
    guess = _Conversation(rng, guesser, servers[1])
    for _ in range(25):
        t = START_S + rng.uniform(low + 1, high - 1)
        packets += _tcp_session(rng, guess, 22, t, bytes(rng.randrange(256) for _ in range(90)), 60)
    packets.sort(key=lambda p: float(p.time))
    wrpcap(str(path), packets)
    return {"scanner": scanner, "guesser": guesser, "victims": servers[:2]}


def label_rules(hosts: list[dict]) -> dict:
    """Label rules for captures written by ``write_capture``: both attacks, in their window."""
    low, high = ATTACK_WINDOW_S
    rules = []
    for h in hosts:
        window = {"start": START_S + low, "end": START_S + high}
        rules.append(
            {"attack_type": "port_scan", **window, "src": [h["scanner"]], "dst": [h["victims"][0]]}
        )
        rules.append(
            {
                "attack_type": "ssh_guessing",
                **window,
                "src": [h["guesser"]],
                "dst": [h["victims"][1]],
                "dst_ports": [22],
                "protocol": "tcp",
            }
        )
    return {"rules": rules}


# Synthetic columns --------------------------------------------------------------------------


def synthetic_columns(n: int, leak: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Dataset columns of ``n`` rows over two captures.

    Without ``leak``: both captures hold both classes, the classes overlap in every feature
    and no two rows are equal. With ``leak``: each class has a capture of its own, ip_ttl tells
    them apart, and every attack row is recorded twice.
    """
    rng = np.random.default_rng(seed)
    columns = empty_columns(n)
    label = (rng.random(n) < 0.3).astype(np.int64)
    capture = np.where(rng.random(n) < 0.5, "a.pcap", "b.pcap")
    if leak:
        capture = np.where(label == 1, "attack.pcap", "normal.pcap")
    columns["ts_ns"] = (START_S * 1e9 + np.arange(n) * 1e6).astype(np.int64)
    columns["frame_len"] = np.clip(rng.normal(500 + 150 * label, 200), 60, 1514).astype(np.int64)
    columns["tcp_dport"] = rng.choice([22, 80, 443, 8080], n)
    columns["ip_ttl"] = rng.choice([64, 128], n) if not leak else np.where(label == 1, 64, 128)
    columns["payload_entropy"] = rng.random(n) * 8
    columns["ip_src"] = np.array([f"10.0.{i % 7}.{i % 50}" for i in range(n)], dtype=object)
    columns["ip_dst"] = np.array([f"10.1.0.{i % 5}" for i in range(n)], dtype=object)
    columns["flow_id"] = np.array([f"{i // 4:016x}" for i in range(n)], dtype=object)
    columns["label"] = label.astype(np.int8)
    columns["attack_type"] = np.where(label == 1, "port_scan", "benign").astype(object)
    columns["scenario"] = np.array([c.split(".")[0] for c in capture], dtype=object)
    columns["capture"] = capture.astype(object)
    if leak:
        twins = np.flatnonzero(label == 1)
        order = np.sort(np.concatenate([np.arange(n), twins]))
        columns = {k: v[order] for k, v in columns.items()}
    return columns
