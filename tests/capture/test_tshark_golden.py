"""The fast decoder agrees with tshark on every field both decode, for golden and real pcaps."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from capture.decode import FrameDecoder, Undecodable
from capture.schema import INDEX
from capture.sources import PcapSource

pytestmark = pytest.mark.tshark

TSHARK = shutil.which("tshark")
SHARED_PCAPS = Path(__file__).resolve().parents[2] / ".." / "shared" / "pcaps"
# tshark joins repeated occurrences of a field with this; a control character never appears in
# the numbers, addresses and names read here.
AGGREGATOR = "\x1e"
# Let tshark dissect each frame on its own, the way the sensor does: no reassembly of IP
# fragments or TCP streams, and sequence numbers as sent.
TSHARK_PREFERENCES = (
    "ip.defragment:FALSE",
    "ipv6.defragment:FALSE",
    "tcp.desegment_tcp_streams:FALSE",
    "tcp.relative_sequence_numbers:FALSE",
    "tcp.analyze_sequence_numbers:FALSE",
)
# tshark shows a frame length from a broken record header clamped to a signed 32-bit number.
TSHARK_MAX_FRAME_LEN = 2**31 - 1
# Protocol names that tshark lists for IPv6 extension headers, between IPv6 and transport,
# and the next-header numbers the record lists them by.
IPV6_EXTENSION_PREFIX = "ipv6."
IPV6_EXTENSION_NUMBERS = {
    "ipv6.hopopts": "0",
    "ipv6.routing": "43",
    "ipv6.fraghdr": "44",
    "ipv6.dstopts": "60",
}
TRANSPORTS = ("tcp", "udp", "icmp", "icmpv6")


def _number(text: str) -> int:
    """tshark's decimal or 0x-prefixed hex text, or its True/False for a bit."""
    if text in ("True", "False"):
        return int(text == "True")
    return int(text, 0)


def _words_to_bytes(text: str) -> int:
    return _number(text) // 4


def _options_len(text: str) -> int:
    return _number(text) - 20


def _tcp_flags(text: str) -> int:
    # tshark's tcp.flags also holds the three reserved bits above NS; the record keeps nine.
    return _number(text) & 0x01FF


@dataclass(frozen=True)
class Check:
    """One record field, the tshark field holding the same value and how to convert it."""

    field: str
    tshark: str
    layer: str
    convert: Callable[[str], int | str] = _number
    # "value": compare when tshark shows the field; "present": 1 when tshark shows it, else 0;
    # "count": how many times tshark shows it; "extensions" and "extension_count": the IPv6
    # extension headers that frame.protocols lists after the outer IPv6 header, or how many.
    mode: str = "value"


CHECKS = (
    Check("frame_len", "frame.len", "frame"),
    Check("frame_caplen", "frame.cap_len", "frame"),
    Check("eth_src", "eth.src", "eth", str),
    Check("eth_dst", "eth.dst", "eth", str),
    # eth_type is the EtherType after any VLAN tags: tshark's last vlan.etype, else eth.type.
    Check("eth_type", "eth.type", "eth"),
    Check("vlan_id", "vlan.id", "eth"),
    Check("arp_hwtype", "arp.hw.type", "arp"),
    Check("arp_ptype", "arp.proto.type", "arp"),
    Check("arp_hwlen", "arp.hw.size", "arp"),
    Check("arp_plen", "arp.proto.size", "arp"),
    Check("arp_op", "arp.opcode", "arp"),
    Check("arp_hwsrc", "arp.src.hw_mac", "arp", str),
    Check("arp_psrc", "arp.src.proto_ipv4", "arp", str),
    Check("arp_hwdst", "arp.dst.hw_mac", "arp", str),
    Check("arp_pdst", "arp.dst.proto_ipv4", "arp", str),
    Check("ip_version", "ip.version", "ip"),
    Check("ip_ihl", "ip.hdr_len", "ip", _words_to_bytes),
    Check("ip_options_len", "ip.hdr_len", "ip", _options_len),
    Check("ip_tos", "ip.dsfield", "ip"),
    Check("ip_len", "ip.len", "ip"),
    Check("ip_id", "ip.id", "ip"),
    Check("ip_flags", "ip.flags", "ip"),
    Check("ip_frag", "ip.frag_offset", "ip"),
    Check("ip_ttl", "ip.ttl", "ip"),
    Check("ip_proto", "ip.proto", "ip"),
    Check("ip_src", "ip.src", "ip", str),
    Check("ip_dst", "ip.dst", "ip", str),
    Check("ipv6_version", "ipv6.version", "ipv6"),
    Check("ipv6_tc", "ipv6.tclass", "ipv6"),
    Check("ipv6_fl", "ipv6.flow", "ipv6"),
    Check("ipv6_plen", "ipv6.plen", "ipv6"),
    Check("ipv6_nh", "ipv6.nxt", "ipv6"),
    Check("ipv6_hlim", "ipv6.hlim", "ipv6"),
    Check("ipv6_src", "ipv6.src", "ipv6", str),
    Check("ipv6_dst", "ipv6.dst", "ipv6", str),
    Check("ipv6_ext_headers", "frame.protocols", "ipv6", mode="extensions"),
    Check("ipv6_ext_count", "frame.protocols", "ipv6", mode="extension_count"),
    Check("tcp_sport", "tcp.srcport", "tcp"),
    Check("tcp_dport", "tcp.dstport", "tcp"),
    Check("tcp_seq", "tcp.seq_raw", "tcp"),
    Check("tcp_ack", "tcp.ack_raw", "tcp"),
    Check("tcp_dataofs", "tcp.hdr_len", "tcp", _words_to_bytes),
    Check("tcp_flags", "tcp.flags", "tcp", _tcp_flags),
    Check("tcp_flag_fin", "tcp.flags.fin", "tcp"),
    Check("tcp_flag_syn", "tcp.flags.syn", "tcp"),
    Check("tcp_flag_rst", "tcp.flags.reset", "tcp"),
    Check("tcp_flag_psh", "tcp.flags.push", "tcp"),
    Check("tcp_flag_ack", "tcp.flags.ack", "tcp"),
    Check("tcp_flag_urg", "tcp.flags.urg", "tcp"),
    Check("tcp_flag_ece", "tcp.flags.ece", "tcp"),
    Check("tcp_flag_cwr", "tcp.flags.cwr", "tcp"),
    Check("tcp_window", "tcp.window_size_value", "tcp"),
    Check("tcp_urgptr", "tcp.urgent_pointer", "tcp"),
    Check("tcp_opt_mss", "tcp.options.mss_val", "tcp"),
    Check("tcp_opt_wscale", "tcp.options.wscale.shift", "tcp"),
    Check("tcp_opt_sackok", "tcp.options.sack_perm", "tcp", mode="present"),
    Check("tcp_opt_timestamp", "tcp.options.timestamp.tsval", "tcp", mode="present"),
    Check("tcp_opt_nop_count", "tcp.options.nop", "tcp", mode="count"),
    Check("udp_sport", "udp.srcport", "udp"),
    Check("udp_dport", "udp.dstport", "udp"),
    Check("udp_len", "udp.length", "udp"),
    Check("icmp_type", "icmp.type", "icmp"),
    Check("icmp_code", "icmp.code", "icmp"),
    Check("icmp_id", "icmp.ident", "icmp"),
    Check("icmp_seq", "icmp.seq", "icmp"),
    Check("icmpv6_type", "icmpv6.type", "icmpv6"),
    Check("icmpv6_code", "icmpv6.code", "icmpv6"),
    Check("icmpv6_id", "icmpv6.echo.identifier", "icmpv6"),
    Check("icmpv6_seq", "icmpv6.echo.sequence_number", "icmpv6"),
    Check("dns_id", "dns.id", "dns"),
    Check("dns_qr", "dns.flags.response", "dns"),
    Check("dns_opcode", "dns.flags.opcode", "dns"),
    # tshark shows the AA, RA, AD and rcode bits of responses only; "value" checks skip them
    # in queries, where tshark leaves the field empty.
    Check("dns_aa", "dns.flags.authoritative", "dns"),
    Check("dns_tc", "dns.flags.truncated", "dns"),
    Check("dns_rd", "dns.flags.recdesired", "dns"),
    Check("dns_ra", "dns.flags.recavail", "dns"),
    Check("dns_z", "dns.flags.z", "dns"),
    Check("dns_ad", "dns.flags.authenticated", "dns"),
    Check("dns_cd", "dns.flags.checkdisable", "dns"),
    Check("dns_rcode", "dns.flags.rcode", "dns"),
    Check("dns_qdcount", "dns.count.queries", "dns"),
    Check("dns_ancount", "dns.count.answers", "dns"),
    Check("dns_nscount", "dns.count.auth_rr", "dns"),
    Check("dns_arcount", "dns.count.add_rr", "dns"),
    Check("dns_qname_len", "dns.qry.name.len", "dns"),
    Check("dns_qname_labels", "dns.count.labels", "dns"),
    Check("dns_qtype", "dns.qry.type", "dns"),
)
# Read from tshark to decide which layers to compare, not compared themselves.
HELPER_FIELDS = ("frame.protocols", "vlan.etype", "ieee8021ad.id", "dns.qry.name")
TSHARK_FIELDS = tuple(dict.fromkeys([*HELPER_FIELDS, *(c.tshark for c in CHECKS)]))


def tshark_rows(pcap: Path) -> list[dict[str, list[str]]]:
    """Every frame of ``pcap`` as tshark dissects it: field name -> all occurrences, in order."""
    command = [TSHARK or "tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=/t"]
    command += ["-E", "occurrence=a", "-E", f"aggregator={AGGREGATOR}"]
    for preference in TSHARK_PREFERENCES:
        command += ["-o", preference]
    for name in TSHARK_FIELDS:
        command += ["-e", name]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    rows = []
    # Not splitlines(): it would also split at the aggregator, a record separator character.
    for line in done.stdout.rstrip("\n").split("\n"):
        values = line.split("\t")
        rows.append(
            {
                name: value.split(AGGREGATOR) if value else []
                for name, value in zip(TSHARK_FIELDS, values, strict=True)
            }
        )
    return rows


def compared_layers(protocols: list[str], record: list) -> set[str]:
    """The layers whose first tshark occurrence is the one the fast decoder reads.

    The decoder reads the link layer, the outermost network header, and the transport header
    right after it (and DNS on port 53). tshark goes on into what the decoder deliberately
    leaves alone, and those layers are not compared:
    - inner headers of tunnels (IP in IP, IPv6 in IPv4, GTP, Teredo), which come after the
      outer network header: only the outer one is compared, and transport only when it follows
      the outer network header directly;
    - the IP header and transport header quoted inside an ICMP error message;
    - DNS that tshark finds on other ports (mDNS on 5353, LLMNR on 5355).
    """
    layers = {"frame"}
    if protocols and protocols[0] == "eth":
        layers.add("eth")
    network_at = next((i for i, p in enumerate(protocols) if p in ("ip", "ipv6", "arp")), None)
    if network_at is None:
        return layers
    layers.add(protocols[network_at])
    rest = [p for p in protocols[network_at + 1 :] if not p.startswith(IPV6_EXTENSION_PREFIX)]
    if not rest or rest[0] not in TRANSPORTS:
        return layers
    transport = rest[0]
    layers.add(transport)
    if transport in ("tcp", "udp") and rest[1:2] == ["dns"]:
        ports = (record[INDEX[f"{transport}_sport"]], record[INDEX[f"{transport}_dport"]])
        if 53 in ports:
            layers.add("dns")
    return layers


def expected_value(check: Check, row: dict[str, list[str]]) -> int | str | None:
    """What tshark says the field holds; None when tshark does not show it for this frame."""
    values = row[check.tshark]
    if check.mode == "present":
        return 1 if values else 0
    if check.mode == "count":
        return len(values)
    if check.mode in ("extensions", "extension_count"):
        protocols = values[0].split(":")
        after_ipv6 = protocols[protocols.index("ipv6") + 1 :]
        numbers = []
        for name in after_ipv6:
            if name not in IPV6_EXTENSION_NUMBERS:
                break
            numbers.append(IPV6_EXTENSION_NUMBERS[name])
        return "-".join(numbers) if check.mode == "extensions" else len(numbers)
    if check.field == "eth_type" and row["vlan.etype"]:
        values = row["vlan.etype"][-1:]
    if check.field == "vlan_id" and row["ieee8021ad.id"]:
        values = row["ieee8021ad.id"]  # an 802.1ad service tag is the outer one
    if check.field in ("dns_qname_len", "dns_qname_labels") and row["dns.qry.name"][:1] == [
        "<Root>"
    ]:
        return 0  # tshark spells the root name "<Root>" and counts it as one label
    if not values:
        return None
    return check.convert(values[0])


def fast_records(pcap: Path) -> list[list | str]:
    """The fast decoder's record of every frame, or the Undecodable reason in its place."""
    decoder = FrameDecoder(iface=pcap.name)
    records: list[list | str] = []
    for frame in PcapSource(str(pcap)):
        try:
            records.append(decoder.decode(frame.data, frame.link_type, frame.ts_ns, frame.wire_len))
        except Undecodable as err:
            records.append(err.reason)
    return records


def disagreements(pcap: Path) -> list[str]:
    rows = tshark_rows(pcap)
    records = fast_records(pcap)
    if len(rows) != len(records):
        return [f"tshark reads {len(rows)} frames, the decoder {len(records)}"]
    found = []
    for number, (row, record) in enumerate(zip(rows, records, strict=True), start=1):
        protocols = row["frame.protocols"][0].split(":") if row["frame.protocols"] else []
        if isinstance(record, str):
            if any(p in protocols for p in ("ip", "ipv6", "arp")):
                found.append(
                    f"packet {number}: undecodable ({record}) but tshark reads {protocols}"
                )
            continue
        layers = compared_layers(protocols, record)
        for check in CHECKS:
            if check.layer not in layers:
                continue
            expected = expected_value(check, row)
            ours = record[INDEX[check.field]]
            if check.field == "frame_len":
                ours = min(ours, TSHARK_MAX_FRAME_LEN)
            if expected is None:
                continue
            if ours != expected:
                found.append(
                    f"packet {number}: {check.field} ours={ours!r} tshark={expected!r} "
                    f"({check.tshark}; decode_error={record[INDEX['decode_error']]!r})"
                )
    return found


# The golden capture ------------------------------------------------------------------------

CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
CLIENT, SERVER, RESOLVER = "192.0.2.10", "198.51.100.20", "203.0.113.53"
CLIENT6, SERVER6 = "2001:db8::10", "2001:db8:0:1::20"


def golden_packets() -> list:
    """Mixed traffic with fixed addresses and timestamps, so the pcap is the same every run."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
    from scapy.layers.inet6 import (
        ICMPv6EchoReply,
        ICMPv6EchoRequest,
        ICMPv6ND_NS,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
    )
    from scapy.layers.l2 import ARP, LLC, Dot1AD, Dot1Q, Dot3, Ether
    from scapy.packet import Padding, Raw

    out = Ether(src=CLIENT_MAC, dst=SERVER_MAC)
    back = Ether(src=SERVER_MAC, dst=CLIENT_MAC)
    syn_options = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1000, 0)), ("NOP", None)]
    syn_options.append(("WScale", 7))
    query = DNS(id=0x1A2B, rd=1, qd=DNSQR(qname="www.example.com", qtype="A"))
    answer = DNS(
        id=0x1A2B,
        qr=1,
        aa=1,
        rd=1,
        ra=1,
        qd=DNSQR(qname="www.example.com", qtype="A"),
        an=DNSRR(rrname="www.example.com", rdata="93.184.216.34"),
    )
    tcp_query = DNS(id=7, qd=DNSQR(qname="mail.example.org", qtype="MX"))
    fragmented = IP(src=CLIENT, dst=SERVER, id=4242) / UDP(sport=4000, dport=9) / (b"f" * 64)
    first_fragment, later_fragment = fragmented.fragment(fragsize=32)[:2]

    packets = [
        out / ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT, pdst="192.0.2.1") / Padding(b"\0" * 18),
        back / ARP(op=2, hwsrc=SERVER_MAC, psrc="192.0.2.1", hwdst=CLIENT_MAC, pdst=CLIENT),
        out / Dot1Q(vlan=100) / IP(src=CLIENT, dst=SERVER) / TCP(sport=40000, dport=443),
        out / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src=CLIENT, dst=SERVER) / UDP(dport=7),
        out / Dot3() / LLC() / Raw(b"spanning tree"),
        out
        / IP(src=CLIENT, dst=SERVER, tos=0xB8, flags="DF", ttl=61)
        / TCP(sport=40001, dport=80, seq=1000, flags="S", window=64240, options=syn_options),
        back
        / IP(src=SERVER, dst=CLIENT, flags="DF")
        / TCP(sport=80, dport=40001, seq=5000, ack=1001, flags="SA", options=syn_options[:2]),
        out
        / IP(src=CLIENT, dst=SERVER, flags="DF")
        / TCP(sport=40001, dport=80, seq=1001, ack=5001, flags="PA")
        / Raw(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"),
        out
        / IP(src=CLIENT, dst=SERVER)
        / TCP(sport=40001, dport=80, flags="FUA", urgptr=3, options=[("NOP", None)] * 4),
        out / IP(src=CLIENT, dst=SERVER) / TCP(sport=40002, dport=81, flags="SEC"),
        out / IP(src=CLIENT, dst=SERVER, options=[IPOption_RR()]) / TCP(sport=40003, dport=22),
        out / IP(src=CLIENT, dst=RESOLVER) / UDP(sport=33000, dport=53) / query,
        back / IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=33000) / answer,
        out
        / IP(src=CLIENT, dst=RESOLVER)
        / UDP(sport=33001, dport=53)
        / DNS(id=9, qd=DNSQR(qname=".", qtype="NS")),
        out
        / IP(src=CLIENT, dst=RESOLVER)
        / TCP(sport=40010, dport=53, flags="PA", seq=1, ack=1)
        / tcp_query,
        out / IP(src=CLIENT, dst="224.0.0.251") / UDP(sport=5353, dport=5353) / query,
        out / IP(src=CLIENT, dst=SERVER) / ICMP(type=8, id=0x77, seq=1) / (b"p" * 32),
        back / IP(src=SERVER, dst=CLIENT) / ICMP(type=0, id=0x77, seq=1) / (b"p" * 32),
        back
        / IP(src=SERVER, dst=CLIENT)
        / ICMP(type=3, code=3)
        / IP(src=CLIENT, dst=SERVER)
        / UDP(sport=33002, dport=53),
        out / first_fragment,
        out / later_fragment,
        out / IPv6(src=CLIENT6, dst=SERVER6, tc=0x28, fl=0x12345) / TCP(sport=50000, dport=443),
        out / IPv6(src=CLIENT6, dst=SERVER6) / UDP(sport=50001, dport=53) / query,
        out / IPv6(src=CLIENT6, dst=SERVER6) / ICMPv6EchoRequest(id=5, seq=6, data=b"ping"),
        back / IPv6(src=SERVER6, dst=CLIENT6) / ICMPv6EchoReply(id=5, seq=6, data=b"ping"),
        out / IPv6(src=CLIENT6, dst="ff02::1:ff00:20", hlim=255) / ICMPv6ND_NS(tgt=SERVER6),
        out
        / IPv6(src=CLIENT6, dst=SERVER6)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / TCP(sport=50002, dport=80, flags="S", options=[("MSS", 1440)]),
        out
        / IPv6(src=CLIENT6, dst=SERVER6)
        / IPv6ExtHdrRouting(addresses=[SERVER6])
        / UDP(sport=50003, dport=9),
        out
        / IPv6(src=CLIENT6, dst=SERVER6)
        / IPv6ExtHdrFragment(id=9, m=1, offset=0)
        / UDP(sport=50004, dport=9, len=72)
        / (b"6" * 24),
        out
        / IPv6(src=CLIENT6, dst=SERVER6)
        / IPv6ExtHdrFragment(id=9, m=0, offset=4, nh=17)
        / (b"6" * 40),
        out / IP(src=CLIENT, dst=SERVER) / IPv6(src=CLIENT6, dst=SERVER6) / TCP(dport=8080),
    ]
    for number, packet in enumerate(packets):
        packet.time = 1_700_000_000 + number / 100
    return packets


@pytest.fixture(scope="module")
def golden_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scapy.utils import wrpcap

    path = tmp_path_factory.mktemp("golden") / "golden.pcap"
    wrpcap(str(path), golden_packets())
    return path


def shared_pcaps() -> list:
    if not SHARED_PCAPS.is_dir():
        reason = f"the shared captures are not beside the project (looked in {SHARED_PCAPS})"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="shared-absent")]
    paths = sorted(p for p in SHARED_PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng"))
    return [pytest.param(p, marks=pytest.mark.shared, id=p.name) for p in paths]


@pytest.fixture(autouse=True)
def _needs_tshark() -> None:
    if TSHARK is None:
        pytest.skip("tshark is not installed; install the tshark package to compare with it")


class TestAgainstTshark:
    def test_golden_capture_decodes_as_tshark_reads_it(self, golden_pcap: Path) -> None:
        """Every field of the generated capture matches tshark's value."""
        assert [] == disagreements(golden_pcap), "\n".join(disagreements(golden_pcap))

    @pytest.mark.parametrize("pcap", shared_pcaps())
    def test_shared_capture_decodes_as_tshark_reads_it(self, pcap: Path) -> None:
        """Every field of a real capture matches tshark's value."""
        found = disagreements(pcap)
        assert [] == found, "\n".join(found)
