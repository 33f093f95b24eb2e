"""Deterministic synthetic traffic in pcap files (tests/support/netns.py replays them live).

scapy builds a few hundred template frames once: TCP conversations with options and data, DNS
queries and responses over UDP, ICMP and ICMPv6 echo, ARP, NTP, IPv4 fragments and IPv6 with an
extension header. A longer capture repeats the templates round after round, each round with the
client ports, IPv4 ids and echo ids shifted in the raw bytes and the checksums adjusted to match
(RFC 1624), so that every round holds new flows and 200,000 frames take seconds, not the
minutes scapy would need to build each frame.

Every address is in a documentation range (RFC 5737, RFC 3849) and every Ethernet address is
locally administered, so replayed frames belong to no real host.
"""

from __future__ import annotations

import itertools
import os
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scapy.packet import Packet

DEFAULT_SEED = 20_240_601
FIRST_TS_US = 1_700_000_000 * 1_000_000
GAP_US = 50  # spacing of the capture timestamps: 20,000 packets per recorded second

_EPHEMERAL_LOW, _EPHEMERAL_SPAN = 32768, 60999 - 32768 + 1
_PORT_STEP = 97  # shift per round; coprime with the span, so rounds do not reuse a port soon

# Conversation kinds and how often each is drawn.
_KINDS = {
    "tcp4": 34,
    "tcp6": 10,
    "dns4": 20,
    "dns6": 6,
    "icmp4": 10,
    "icmp6": 5,
    "arp": 7,
    "ntp": 5,
    "fragments": 3,
}
_SERVER_PORTS = (22, 25, 80, 443, 8080)
_DNS_TYPES = ("A", "AAAA", "MX", "TXT")
_WORDS = ("alpha", "mail", "cdn", "api", "static", "login", "img", "update", "files", "db")


# Templates ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """One template frame and where the fields that change per round sit in it (-1: absent)."""

    frame: bytes
    ip_id_at: int = -1
    ip_sum_at: int = -1
    vary_at: int = -1  # the client port or echo id that tells conversations apart
    l4_sum_at: int = -1
    is_port: bool = True
    is_udp: bool = False

    def in_round(self, number: int) -> bytes:
        """The frame as it appears in round ``number`` (round 0 is the template itself)."""
        if number == 0:
            return self.frame
        buf = bytearray(self.frame)
        if self.ip_id_at >= 0:
            old = _get16(buf, self.ip_id_at)
            _replace16(buf, self.ip_id_at, self.ip_sum_at, (old + number) & 0xFFFF, False)
        if self.vary_at >= 0:
            old = _get16(buf, self.vary_at)
            if self.is_port:
                new = _EPHEMERAL_LOW + (old - _EPHEMERAL_LOW + number * _PORT_STEP) % (
                    _EPHEMERAL_SPAN
                )
            else:
                new = (old + number) & 0xFFFF
            _replace16(buf, self.vary_at, self.l4_sum_at, new, self.is_udp)
        return bytes(buf)


def _get16(buf: bytearray, at: int) -> int:
    return buf[at] << 8 | buf[at + 1]


def _replace16(buf: bytearray, at: int, sum_at: int, new: int, is_udp: bool) -> None:
    """Write ``new`` at ``at`` and adjust the one's-complement checksum at ``sum_at``."""
    old = _get16(buf, at)
    struct.pack_into("!H", buf, at, new)
    if sum_at < 0:
        return
    checksum = _get16(buf, sum_at)
    if is_udp and checksum == 0:  # an IPv4 UDP datagram sent without a checksum
        return
    total = (~checksum & 0xFFFF) + (~old & 0xFFFF) + new  # RFC 1624, equation 3
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF
    if is_udp and checksum == 0:
        checksum = 0xFFFF  # zero means "no checksum" in UDP
    struct.pack_into("!H", buf, sum_at, checksum)


class _Hosts:
    """Addresses drawn from documentation ranges, reproducible from the random generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def mac(self, role: int) -> str:
        return f"02:00:00:{role:02x}:{self.rng.randrange(256):02x}:{self.rng.randrange(256):02x}"

    def client4(self) -> str:
        return f"198.51.100.{self.rng.randrange(1, 255)}"

    def server4(self) -> str:
        return f"203.0.113.{self.rng.randrange(1, 255)}"

    def client6(self) -> str:
        return f"2001:db8:c::{self.rng.randrange(1, 0xFFFF):x}"

    def server6(self) -> str:
        return f"2001:db8:5::{self.rng.randrange(1, 0xFFFF):x}"

    def port(self) -> int:
        return self.rng.randrange(_EPHEMERAL_LOW, _EPHEMERAL_LOW + _EPHEMERAL_SPAN)

    def name(self) -> str:
        return f"{self.rng.choice(_WORDS)}{self.rng.randrange(100)}.example.org"


def _offset(packet, layer) -> int:
    return len(packet) - len(packet[layer])


def _template(packet, client_side: str = "", echo: bool = False) -> Template:
    """Locate the per-round fields of a built scapy packet.

    ``client_side`` is ``"sport"`` or ``"dport"``: which port of the TCP or UDP header belongs
    to the client. ``echo`` marks an ICMP or ICMPv6 echo, whose identifier varies instead.
    """
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    frame = bytes(packet)
    fields: dict = {}
    if IP in packet:
        ip_at = _offset(packet, IP)
        fields.update(ip_id_at=ip_at + 4, ip_sum_at=ip_at + 10)
    if client_side:
        layer = TCP if TCP in packet else UDP
        l4_at = _offset(packet, layer)
        fields.update(
            vary_at=l4_at + (0 if client_side == "sport" else 2),
            l4_sum_at=l4_at + (16 if layer is TCP else 6),
            is_udp=layer is UDP,
        )
    elif echo:
        echo_layer = packet[IP].payload if IP in packet else packet[IPv6].payload
        l4_at = len(packet) - len(echo_layer)
        fields.update(vary_at=l4_at + 4, l4_sum_at=l4_at + 2, is_port=False)
    return Template(frame, **fields)


def _tcp_conversation(hosts: _Hosts, v6: bool) -> list[Template]:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    rng = hosts.rng
    cmac, smac = hosts.mac(1), hosts.mac(2)
    c_ip: Packet
    s_ip: Packet
    if v6:
        c_ip = IPv6(src=hosts.client6(), dst=hosts.server6())
        s_ip = IPv6(src=c_ip.dst, dst=c_ip.src, hlim=rng.choice((52, 58, 64)))
    else:
        c_ip = IP(src=hosts.client4(), dst=hosts.server4(), ttl=64, flags="DF")
        s_ip = IP(src=c_ip.dst, dst=c_ip.src, ttl=rng.choice((49, 53, 57)), flags="DF")
    cport, sport = hosts.port(), rng.choice(_SERVER_PORTS)
    cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
    stamp = rng.getrandbits(32)

    def segment(from_client: bool, flags: str, seq: int, ack: int, options=(), payload=b""):
        if from_client:
            ether, ip, ports, window = Ether(src=cmac, dst=smac), c_ip, (cport, sport), 64240
        else:
            ether, ip, ports, window = Ether(src=smac, dst=cmac), s_ip, (sport, cport), 65160
        tcp = TCP(sport=ports[0], dport=ports[1], flags=flags, window=window)
        tcp.seq, tcp.ack, tcp.options = seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, list(options)
        packet = ether / ip / tcp
        side = "sport" if from_client else "dport"
        return _template(packet / payload if payload else packet, client_side=side)

    def c2s(flags: str, seq: int, ack: int, options=(), payload: bytes = b""):
        return segment(True, flags, seq, ack, options, payload)

    def s2c(flags: str, seq: int, ack: int, options=(), payload: bytes = b""):
        return segment(False, flags, seq, ack, options, payload)

    mss = 1440 if v6 else 1460
    syn_options = [
        ("MSS", mss),
        ("SAckOK", b""),
        ("Timestamp", (stamp, 0)),
        ("NOP", None),
        ("WScale", 7),
    ]
    synack_options = [("MSS", mss), ("NOP", None), ("NOP", None), ("SAckOK", b"")]
    synack_options += [("NOP", None), ("WScale", rng.choice((7, 8, 9)))]
    request = (
        f"GET /{rng.choice(_WORDS)}/{rng.randrange(1000)} HTTP/1.1\r\n"
        f"Host: {hosts.name()}\r\nAccept: */*\r\n\r\n"
    ).encode()
    response = rng.randbytes(rng.randrange(200, 1400))
    frames = [
        c2s("S", cseq, 0, syn_options),
        s2c("SA", sseq, cseq + 1, synack_options),
        c2s("A", cseq + 1, sseq + 1),
        c2s("PA", cseq + 1, sseq + 1, payload=request),
        s2c("A", sseq + 1, cseq + 1 + len(request), payload=response),
    ]
    cseq, sseq = cseq + 1 + len(request), sseq + 1 + len(response)
    if rng.random() < 0.15:
        frames.append(c2s("R", cseq, 0))
        return frames
    frames += [
        c2s("A", cseq, sseq, [("NOP", None), ("NOP", None), ("Timestamp", (stamp + 9, 1))]),
        c2s("FA", cseq, sseq),
        s2c("FA", sseq, cseq + 1),
        c2s("A", cseq + 1, sseq + 1),
    ]
    return frames


def _dns_exchange(hosts: _Hosts, v6: bool) -> list[Template]:
    from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    rng = hosts.rng
    cmac, smac = hosts.mac(1), hosts.mac(3)
    up: Packet
    down: Packet
    if v6:
        c_ip, s_ip = hosts.client6(), hosts.server6()
        up, down = IPv6(src=c_ip, dst=s_ip), IPv6(src=s_ip, dst=c_ip)
    else:
        c_ip, s_ip = hosts.client4(), hosts.server4()
        up, down = IP(src=c_ip, dst=s_ip), IP(src=s_ip, dst=c_ip, ttl=59)
    cport, ident, name = hosts.port(), rng.randrange(0x10000), hosts.name()
    qtype = rng.choice(_DNS_TYPES)
    question = DNSQR(qname=name, qtype=qtype)
    query = DNS(id=ident, rd=1, qd=[question])
    records: list[Packet]
    if rng.random() < 0.2:
        answer = DNS(id=ident, qr=1, rd=1, ra=1, rcode=3, qd=[question])
    else:
        if qtype == "A":
            records = [DNSRR(rrname=name, type="A", ttl=300, rdata=hosts.server4())]
        elif qtype == "AAAA":
            records = [DNSRR(rrname=name, type="AAAA", ttl=300, rdata=hosts.server6())]
        elif qtype == "MX":
            records = [DNSRRMX(rrname=name, ttl=3600, preference=10, exchange=hosts.name())]
        else:
            records = [DNSRR(rrname=name, type="TXT", ttl=60, rdata=[b"v=spf1 -all"])]
        answer = DNS(id=ident, qr=1, rd=1, ra=1, qd=[question], an=records)
    return [
        _template(Ether(src=cmac, dst=smac) / up / UDP(sport=cport, dport=53) / query, "sport"),
        _template(Ether(src=smac, dst=cmac) / down / UDP(sport=53, dport=cport) / answer, "dport"),
    ]


def _echo(hosts: _Hosts, v6: bool) -> list[Template]:
    from scapy.layers.inet import ICMP, IP, IPOption_Router_Alert
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import Ether

    rng = hosts.rng
    cmac, smac = hosts.mac(1), hosts.mac(2)
    ident, data = rng.randrange(0x10000), rng.randbytes(56)
    frames = []
    request: Packet
    reply: Packet
    for seq in range(1, rng.randrange(2, 5)):
        if v6:
            c_ip, s_ip = hosts.client6(), hosts.server6()
            request = IPv6(src=c_ip, dst=s_ip) / ICMPv6EchoRequest(id=ident, seq=seq, data=data)
            reply = IPv6(src=s_ip, dst=c_ip) / ICMPv6EchoReply(id=ident, seq=seq, data=data)
        else:
            c_ip, s_ip = hosts.client4(), hosts.server4()
            options = [IPOption_Router_Alert()] if rng.random() < 0.2 else []
            request = IP(src=c_ip, dst=s_ip, options=options) / ICMP(id=ident, seq=seq) / data
            reply = IP(src=s_ip, dst=c_ip, ttl=61) / ICMP(type=0, id=ident, seq=seq) / data
        frames.append(_template(Ether(src=cmac, dst=smac) / request, echo=True))
        frames.append(_template(Ether(src=smac, dst=cmac) / reply, echo=True))
    return frames


def _arp(hosts: _Hosts) -> list[Template]:
    from scapy.layers.l2 import ARP, Ether

    asker, owner = hosts.mac(1), hosts.mac(2)
    asker_ip, owner_ip = hosts.client4(), hosts.client4()
    request = Ether(src=asker, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=asker, psrc=asker_ip, pdst=owner_ip
    )
    reply = Ether(src=owner, dst=asker) / ARP(
        op=2, hwsrc=owner, psrc=owner_ip, hwdst=asker, pdst=asker_ip
    )
    return [_template(request), _template(reply)]


def _ntp(hosts: _Hosts) -> list[Template]:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
    from scapy.layers.l2 import Ether

    rng = hosts.rng
    cmac, smac = hosts.mac(1), hosts.mac(2)
    cport = hosts.port()
    up: Packet
    down: Packet
    if rng.random() < 0.4:  # some over IPv6 behind a hop-by-hop extension header
        c_ip, s_ip = hosts.client6(), hosts.server6()
        up = IPv6(src=c_ip, dst=s_ip) / IPv6ExtHdrHopByHop()
        down = IPv6(src=s_ip, dst=c_ip) / IPv6ExtHdrHopByHop()
    else:
        c_ip, s_ip = hosts.client4(), hosts.server4()
        up, down = IP(src=c_ip, dst=s_ip), IP(src=s_ip, dst=c_ip)
    request = b"\x23" + rng.randbytes(47)
    answer = b"\x24\x02" + rng.randbytes(46)
    return [
        _template(Ether(src=cmac, dst=smac) / up / UDP(sport=cport, dport=123) / request, "sport"),
        _template(Ether(src=smac, dst=cmac) / down / UDP(sport=123, dport=cport) / answer, "dport"),
    ]


def _fragments(hosts: _Hosts) -> list[Template]:
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.l2 import Ether

    rng = hosts.rng
    cmac, smac = hosts.mac(1), hosts.mac(2)
    datagram = (
        IP(src=hosts.client4(), dst=hosts.server4(), id=rng.randrange(0x10000))
        / UDP(sport=hosts.port(), dport=rng.choice((500, 4500, 9000)))
        / rng.randbytes(2200)
    )
    pieces = fragment(datagram, fragsize=1200)
    # Re-read the first piece so that scapy sees the UDP header inside it.
    first = _template(Ether(bytes(Ether(src=cmac, dst=smac) / pieces[0])), "sport")
    rest = [_template(Ether(src=cmac, dst=smac) / piece) for piece in pieces[1:]]
    return [first, *rest]


def build_templates(seed: int = DEFAULT_SEED, conversations: int = 90) -> list[Template]:
    """Template frames of ``conversations`` conversations, interleaved a few at a time."""
    rng = random.Random(seed)
    hosts = _Hosts(rng)
    builders = {
        "tcp4": lambda: _tcp_conversation(hosts, v6=False),
        "tcp6": lambda: _tcp_conversation(hosts, v6=True),
        "dns4": lambda: _dns_exchange(hosts, v6=False),
        "dns6": lambda: _dns_exchange(hosts, v6=True),
        "icmp4": lambda: _echo(hosts, v6=False),
        "icmp6": lambda: _echo(hosts, v6=True),
        "arp": lambda: _arp(hosts),
        "ntp": lambda: _ntp(hosts),
        "fragments": lambda: _fragments(hosts),
    }
    kinds = rng.choices(list(_KINDS), weights=list(_KINDS.values()), k=conversations)
    pending = [list(reversed(builders[kind]())) for kind in kinds]

    # Several conversations at once, as on a real link; each keeps its own order.
    templates: list[Template] = []
    active: list[list[Template]] = []
    while pending or active:
        while pending and len(active) < 6:
            active.append(pending.pop(0))
        conversation = rng.choice(active)
        templates.append(conversation.pop())
        if not conversation:
            active.remove(conversation)
    return templates


def synthetic_frames(count: int, seed: int = DEFAULT_SEED) -> Iterator[bytes]:
    """``count`` Ethernet frames: the templates, then the templates again round after round."""
    templates = build_templates(seed)
    emitted = 0
    for number in itertools.count():
        for template in templates:
            if emitted == count:
                return
            yield template.in_round(number)
            emitted += 1


def write_pcap(path: str | os.PathLike[str], count: int, seed: int = DEFAULT_SEED) -> Path:
    """Write ``count`` synthetic frames to a classic pcap file (Ethernet, microseconds)."""
    from scapy.utils import RawPcapWriter

    path = Path(path)
    writer = RawPcapWriter(str(path), linktype=1, bufsz=1 << 20)
    try:
        writer.write_header(None)
        for number, frame in enumerate(synthetic_frames(count, seed)):
            sec, usec = divmod(FIRST_TS_US + number * GAP_US, 1_000_000)
            writer.write_packet(frame, sec=sec, usec=usec)
    finally:
        writer.close()
    return path
