"""The fast frame decoder, on packets built with scapy and against the scapy reference decoder."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR, fragment
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
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, LLC, CookedLinux, Dot1AD, Dot1Q, Dot3, Ether, Loopback
from scapy.packet import Packet, Padding, Raw, fuzz

from capture.decode import FrameDecoder, Undecodable
from capture.reference import reference_record
from capture.schema import FIELDS, NAMES, SCHEMA_VERSION

CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
CLIENT6, SERVER6 = "2001:db8::1", "2001:db8::2"
TS_NS = 1_700_000_000_123_456_789
ETHERNET, RAW_IP, LINUX_SLL, NULL, LOOP, PPP, C_HDLC = 1, 101, 113, 0, 108, 9, 104
SYN_OPTIONS = [
    ("MSS", 1460),
    ("NOP", None),
    ("WScale", 7),
    ("SAckOK", b""),
    ("Timestamp", (100, 0)),
]


def ether() -> Ether:
    return Ether(src=CLIENT_MAC, dst=SERVER_MAC)


def decode(packet: Packet | bytes, link_type: int = ETHERNET, payload_bytes: int = 16) -> dict:
    """The fast decoder's record of one frame, keyed by field name."""
    frame = bytes(packet)
    values = FrameDecoder("test0", payload_bytes).decode(frame, link_type, TS_NS, len(frame))
    return dict(zip(NAMES, values, strict=True))


def udp(sport: int = 4000, dport: int = 4001) -> UDP:
    """A UDP header on ports other than 53, which scapy picks by default and would mean DNS."""
    return UDP(sport=sport, dport=dport)


def pick(record: dict, *names: str) -> dict:
    return {name: record[name] for name in names}


def dns_message(question: bytes, ident: int = 0x1234, qdcount: int = 1) -> bytes:
    """A DNS query: header with recursion desired, then ``question`` as raw bytes."""
    return struct.pack("!HHHHHH", ident, 0x0100, qdcount, 0, 0, 0) + question


def udp_dns(message: bytes) -> Packet:
    return ether() / IP(src=CLIENT, dst=SERVER) / UDP(sport=33000, dport=53) / Raw(message)


class TestRecordShape:
    def test_record_holds_every_field_in_schema_order(self) -> None:
        """A decoded record has one value per schema field, with meta fields filled in."""
        frame = bytes(ether() / IP(src=CLIENT, dst=SERVER) / udp())
        values = FrameDecoder("eth9").decode(frame, ETHERNET, TS_NS, 1500)

        assert len(FIELDS) == len(values)
        record = dict(zip(NAMES, values, strict=True))
        expected = {
            "schema_version": SCHEMA_VERSION,
            "ts_ns": TS_NS,
            "iface": "eth9",
            "link_type": ETHERNET,
            "frame_len": 1500,
            "frame_caplen": len(frame),
            "decode_error": "",
        }
        assert expected == pick(record, *expected)

    def test_fields_a_packet_lacks_are_missing(self) -> None:
        """An ARP frame leaves every IP, transport and payload field at its missing value."""
        record = decode(ether() / ARP())

        missing = {f.name: f.missing for f in FIELDS if f.layer in ("ipv4", "ipv6", "tcp", "dns")}
        assert missing == pick(record, *missing)
        assert -1 == record["payload_len"]


class TestLinkLayer:
    def test_ethernet_addresses_and_ethertype_are_read(self) -> None:
        """The Ethernet header gives source, destination and EtherType."""
        record = decode(ether() / IP(src=CLIENT, dst=SERVER))

        expected = {"eth_src": CLIENT_MAC, "eth_dst": SERVER_MAC, "eth_type": 0x0800, "vlan_id": -1}
        assert expected == pick(record, *expected)

    def test_vlan_tag_gives_its_id_and_the_inner_ethertype(self) -> None:
        """An 802.1Q tag sets vlan_id; eth_type is the EtherType after the tag."""
        record = decode(ether() / Dot1Q(vlan=42) / IP(src=CLIENT, dst=SERVER) / udp(dport=9))

        assert {"vlan_id": 42, "eth_type": 0x0800, "udp_dport": 9} == pick(
            record, "vlan_id", "eth_type", "udp_dport"
        )

    def test_stacked_vlan_tags_keep_the_outer_id(self) -> None:
        """With an 802.1ad service tag over a customer tag, vlan_id is the outer tag's."""
        packet = ether() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src=CLIENT, dst=SERVER)

        assert {"vlan_id": 10, "eth_type": 0x0800} == pick(decode(packet), "vlan_id", "eth_type")

    def test_an_802_3_length_field_is_not_an_ethertype(self) -> None:
        """An 802.3 frame with LLC keeps its addresses but has no EtherType and no flow."""
        record = decode(Dot3(src=CLIENT_MAC, dst=SERVER_MAC) / LLC() / Raw(b"bpdu"))

        assert {"eth_src": CLIENT_MAC, "eth_type": -1, "flow_key": ""} == pick(
            record, "eth_src", "eth_type", "flow_key"
        )

    @pytest.mark.parametrize(
        ("link_type", "header"),
        [
            pytest.param(RAW_IP, b"", id="raw-ip"),
            pytest.param(LINUX_SLL, bytes(CookedLinux(proto=0x0800)), id="linux-sll"),
            pytest.param(NULL, bytes(Loopback(type=2)), id="bsd-null"),
            pytest.param(NULL, struct.pack(">I", 2), id="bsd-null-other-byte-order"),
            pytest.param(LOOP, struct.pack("!I", 2), id="openbsd-loop"),
            pytest.param(PPP, b"\xff\x03\x00\x21", id="ppp-in-hdlc-framing"),
            pytest.param(PPP, b"\x00\x21", id="ppp-bare"),
            pytest.param(PPP, b"\x0f\x00\x08\x00", id="cisco-hdlc-under-ppp-link-type"),
            pytest.param(C_HDLC, b"\x0f\x00\x08\x00", id="cisco-hdlc"),
        ],
    )
    def test_ipv4_is_found_behind_every_supported_link_header(
        self, link_type: int, header: bytes
    ) -> None:
        """Each link type's header is skipped and the IPv4 packet after it decoded."""
        packet = header + bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=1, dport=2))

        record = decode(packet, link_type)

        assert {"ip_src": CLIENT, "tcp_dport": 2, "decode_error": "", "eth_src": ""} == pick(
            record, "ip_src", "tcp_dport", "decode_error", "eth_src"
        )

    def test_ipv6_is_found_on_a_raw_ip_link_by_its_version(self) -> None:
        """On a raw IP link the version nibble chooses IPv6."""
        record = decode(IPv6(src=CLIENT6, dst=SERVER6) / udp(dport=9), RAW_IP)

        assert {"ipv6_src": CLIENT6, "udp_dport": 9} == pick(record, "ipv6_src", "udp_dport")

    def test_unknown_link_type_is_undecodable(self) -> None:
        """A link type the decoder does not know yields no record, with the type as reason."""
        with pytest.raises(Undecodable) as caught:
            decode(bytes(IP()), link_type=147)

        assert "link_type_147" == caught.value.reason

    @pytest.mark.parametrize("size", [0, 1, 13])
    def test_frame_shorter_than_an_ethernet_header_is_undecodable(self, size: int) -> None:
        """Fewer than 14 bytes of Ethernet cannot be decoded at all."""
        with pytest.raises(Undecodable) as caught:
            decode(bytes(ether() / IP())[:size])

        assert "truncated_link_header" == caught.value.reason

    def test_vlan_tag_cut_short_is_undecodable(self) -> None:
        """A frame that ends inside its VLAN tag has no readable EtherType."""
        with pytest.raises(Undecodable):
            decode(bytes(ether() / Dot1Q(vlan=5) / IP())[:16])


class TestArp:
    def test_arp_reply_fields_are_read(self) -> None:
        """Every ARP field of an Ethernet/IPv4 reply is decoded."""
        packet = ether() / ARP(op=2, hwsrc=CLIENT_MAC, psrc=CLIENT, hwdst=SERVER_MAC, pdst=SERVER)

        expected = {
            "eth_type": 0x0806,
            "arp_hwtype": 1,
            "arp_ptype": 0x0800,
            "arp_hwlen": 6,
            "arp_plen": 4,
            "arp_op": 2,
            "arp_hwsrc": CLIENT_MAC,
            "arp_psrc": CLIENT,
            "arp_hwdst": SERVER_MAC,
            "arp_pdst": SERVER,
            "l4_proto": -1,
        }
        assert expected == pick(decode(packet), *expected)

    def test_arp_with_other_address_sizes_keeps_only_its_header(self) -> None:
        """Addresses of sizes other than 6 and 4 are not read; the fixed header is."""
        record = decode(ether() / ARP(hwlen=8, plen=4) / Raw(bytes(24)))

        assert {"arp_hwlen": 8, "arp_hwsrc": "", "decode_error": ""} == pick(
            record, "arp_hwlen", "arp_hwsrc", "decode_error"
        )

    def test_arp_cut_inside_its_addresses_reports_truncation(self) -> None:
        """An ARP packet that ends inside its addresses is reported as truncated."""
        record = decode(bytes(ether() / ARP())[:30])

        assert {"arp_op": 1, "arp_psrc": "", "decode_error": "truncated_arp"} == pick(
            record, "arp_op", "arp_psrc", "decode_error"
        )


class TestIPv4:
    def test_header_fields_are_read(self) -> None:
        """Every IPv4 header field is decoded as sent."""
        packet = (
            ether()
            / IP(src=CLIENT, dst=SERVER, tos=0xB8, id=0xBEEF, flags="DF", ttl=33, proto=6)
            / TCP(sport=1, dport=2)
        )

        expected = {
            "ip_version": 4,
            "ip_ihl": 5,
            "ip_tos": 0xB8,
            "ip_len": 40,
            "ip_id": 0xBEEF,
            "ip_flags": 2,
            "ip_frag": 0,
            "ip_ttl": 33,
            "ip_proto": 6,
            "ip_src": CLIENT,
            "ip_dst": SERVER,
            "ip_options_len": 0,
            "l4_proto": 6,
            "ip_fragment": 0,
        }
        assert expected == pick(decode(packet), *expected)

    def test_options_lengthen_the_header(self) -> None:
        """A record-route option makes the header longer; the transport header follows it."""
        packet = ether() / IP(src=CLIENT, dst=SERVER, options=[IPOption_RR()]) / udp(dport=7)

        assert {"ip_ihl": 6, "ip_options_len": 4, "udp_dport": 7} == pick(
            decode(packet), "ip_ihl", "ip_options_len", "udp_dport"
        )

    def test_first_fragment_still_carries_its_transport_header(self) -> None:
        """A first fragment (more-fragments set, offset 0) is marked and its UDP header read."""
        whole = IP(src=CLIENT, dst=SERVER, id=7) / UDP(sport=5, dport=9) / Raw(b"x" * 64)
        first, later = fragment(whole, fragsize=32)[:2]

        first_record, later_record = decode(ether() / first), decode(ether() / later)

        assert {"ip_fragment": 1, "ip_flags": 1, "udp_dport": 9, "l4_proto": 17} == pick(
            first_record, "ip_fragment", "ip_flags", "udp_dport", "l4_proto"
        )
        expected_later = {
            "ip_fragment": 1,
            "ip_frag": 4,
            "l4_proto": 17,
            "udp_dport": -1,
            "payload_len": len(bytes(later)) - 20,
            "flow_key": f"17 {CLIENT}:0 {SERVER}:0",
        }
        assert expected_later == pick(later_record, *expected_later)

    def test_header_length_below_five_words_is_malformed(self) -> None:
        """An IHL under 5 keeps the fixed header's fields and stops there."""
        record = decode(ether() / IP(src=CLIENT, dst=SERVER, ihl=4) / TCP())

        assert {"ip_ihl": 4, "ip_src": CLIENT, "l4_proto": -1} == pick(
            record, "ip_ihl", "ip_src", "l4_proto"
        )
        assert "malformed_ipv4:ihl=4" == record["decode_error"]

    def test_zero_total_length_runs_to_the_end_of_the_frame(self) -> None:
        """A total length of 0, left by segmentation offload, takes the frame's end instead."""
        packet = ether() / IP(src=CLIENT, dst=SERVER, len=0) / TCP() / Raw(b"y" * 100)

        assert {"ip_len": 0, "payload_len": 100} == pick(decode(packet), "ip_len", "payload_len")

    def test_ethernet_padding_is_not_payload(self) -> None:
        """Bytes after the IP total length (Ethernet padding) are not counted as payload."""
        packet = ether() / IP(src=CLIENT, dst=SERVER) / udp() / Raw(b"ab") / Padding(bytes(16))

        assert {"payload_len": 2, "payload_hex": "6162"} == pick(
            decode(packet), "payload_len", "payload_hex"
        )

    def test_transport_header_past_the_ip_total_length_is_truncated(self) -> None:
        """A TCP header that runs past the IP total length is cut, even if padding follows."""
        packet = ether() / IP(src=CLIENT, dst=SERVER, len=30, proto=6) / Raw(bytes(40))

        record = decode(packet)

        assert {"tcp_sport": -1, "decode_error": "truncated_tcp"} == pick(
            record, "tcp_sport", "decode_error"
        )


class TestIPv6:
    def test_header_fields_are_read(self) -> None:
        """Every IPv6 header field is decoded as sent."""
        packet = ether() / IPv6(src=CLIENT6, dst=SERVER6, tc=0x28, fl=0xABCDE, hlim=7) / udp()

        expected = {
            "eth_type": 0x86DD,
            "ipv6_version": 6,
            "ipv6_tc": 0x28,
            "ipv6_fl": 0xABCDE,
            "ipv6_plen": 8,
            "ipv6_nh": 17,
            "ipv6_hlim": 7,
            "ipv6_src": CLIENT6,
            "ipv6_dst": SERVER6,
            "ipv6_ext_headers": "",
            "ipv6_ext_count": 0,
            "l4_proto": 17,
            "ip_fragment": 0,
            "ip_version": -1,
        }
        assert expected == pick(decode(packet), *expected)

    def test_extension_headers_are_listed_and_skipped(self) -> None:
        """Hop-by-hop, destination options and routing headers are listed in order."""
        packet = (
            ether()
            / IPv6(src=CLIENT6, dst=SERVER6)
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrRouting(addresses=[SERVER6])
            / TCP(sport=1, dport=443)
        )

        expected = {
            "ipv6_nh": 0,
            "ipv6_ext_headers": "0-60-43",
            "ipv6_ext_count": 3,
            "l4_proto": 6,
            "tcp_dport": 443,
        }
        assert expected == pick(decode(packet), *expected)

    def test_authentication_header_is_skipped_by_its_own_length_unit(self) -> None:
        """AH counts its length in 4-octet words; the TCP header after it is still found."""
        packet = (
            ether()
            / IPv6(src=CLIENT6, dst=SERVER6)
            / AH(nh=6, payloadlen=4, icv=bytes(12))
            / TCP(dport=22)
        )

        assert {"ipv6_ext_headers": "51", "tcp_dport": 22} == pick(
            decode(packet), "ipv6_ext_headers", "tcp_dport"
        )

    def test_first_fragment_is_decoded_through_the_fragment_header(self) -> None:
        """A fragment header at offset 0 is listed, the packet marked, and UDP read after it."""
        packet = (
            ether()
            / IPv6(src=CLIENT6, dst=SERVER6)
            / IPv6ExtHdrFragment(m=1, offset=0, id=5)
            / udp(dport=9)
        )

        assert {"ipv6_ext_headers": "44", "ip_fragment": 1, "udp_dport": 9} == pick(
            decode(packet), "ipv6_ext_headers", "ip_fragment", "udp_dport"
        )

    def test_later_fragment_names_its_protocol_without_a_transport_header(self) -> None:
        """A later fragment gives l4_proto from the fragment header and no ports."""
        packet = (
            ether()
            / IPv6(src=CLIENT6, dst=SERVER6)
            / IPv6ExtHdrFragment(offset=10, nh=6)
            / Raw(b"z" * 24)
        )

        expected = {
            "l4_proto": 6,
            "ip_fragment": 1,
            "tcp_sport": -1,
            "payload_len": 24,
            "flow_key": f"6 [{CLIENT6}]:0 [{SERVER6}]:0",
        }
        assert expected == pick(decode(packet), *expected)

    def test_endless_extension_headers_are_malformed(self) -> None:
        """More than 16 extension headers stop decoding as malformed."""
        packet = IPv6(src=CLIENT6, dst=SERVER6)
        for _ in range(17):
            packet = packet / IPv6ExtHdrDestOpt()

        record = decode(ether() / packet / udp())

        assert "malformed_ipv6:too many extension headers" == record["decode_error"]


class TestTcp:
    def test_header_fields_and_every_flag_are_read(self) -> None:
        """Ports, numbers, window, urgent pointer and each flag bit are decoded."""
        packet = (
            ether()
            / IP(src=CLIENT, dst=SERVER)
            / TCP(
                sport=40000,
                dport=80,
                seq=0xFFFFFFF0,
                ack=12345,
                flags="FSRPAUEC",
                window=512,
                urgptr=9,
            )
        )

        expected = {
            "tcp_sport": 40000,
            "tcp_dport": 80,
            "tcp_seq": 0xFFFFFFF0,
            "tcp_ack": 12345,
            "tcp_dataofs": 5,
            "tcp_flags": 0xFF,
            "tcp_window": 512,
            "tcp_urgptr": 9,
        }
        expected |= {f"tcp_flag_{name}": 1 for name in FLAG_NAMES}
        assert expected == pick(decode(packet), *expected)

    @pytest.mark.parametrize("flag", ["F", "S", "R", "P", "A", "U", "E", "C"])
    def test_each_flag_sets_its_own_bit_only(self, flag: str) -> None:
        """A single flag shows in its own field and in no other."""
        record = decode(ether() / IP() / TCP(flags=flag))

        name = FLAG_NAMES["FSRPAUEC".index(flag)]
        set_flags = [n for n in FLAG_NAMES if record[f"tcp_flag_{n}"]]
        assert [name] == set_flags

    def test_ns_bit_is_kept_in_the_flags_value(self) -> None:
        """The ninth flag bit (NS) counts in tcp_flags."""
        assert 0x110 == decode(ether() / IP() / TCP(flags="NA"))["tcp_flags"]

    def test_syn_options_are_read(self) -> None:
        """MSS, window scale, SACK-permitted, timestamp and NOPs are all decoded."""
        record = decode(ether() / IP() / TCP(flags="S", options=SYN_OPTIONS))

        expected = {
            "tcp_dataofs": 10,
            "tcp_opt_mss": 1460,
            "tcp_opt_wscale": 7,
            "tcp_opt_sackok": 1,
            "tcp_opt_timestamp": 1,
            "tcp_opt_nop_count": 1,
            "decode_error": "",
        }
        assert expected == pick(record, *expected)

    def test_end_of_options_stops_the_option_list(self) -> None:
        """Options after an end-of-list option are not read."""
        record = decode(tcp_with_raw_options(b"\x02\x04\x05\xb4\x00\x01\x01\x01"))

        assert {"tcp_opt_mss": 1460, "tcp_opt_nop_count": 0, "decode_error": ""} == pick(
            record, "tcp_opt_mss", "tcp_opt_nop_count", "decode_error"
        )

    def test_option_with_impossible_length_keeps_earlier_options(self) -> None:
        """A zero option length stops the option list, keeps what came before and says so."""
        options = b"\x02\x04\x05\xb4" + b"\x01" + b"\x03\x00\x07" + bytes(4)

        record = decode(tcp_with_raw_options(options, payload=b"data"))

        expected = {
            "tcp_opt_mss": 1460,
            "tcp_opt_nop_count": 1,
            "tcp_opt_wscale": -1,
            "decode_error": "malformed_tcp:option length",
            "payload_len": 4,
            "flow_dir": 0,
        }
        assert expected == pick(record, *expected)

    def test_option_running_past_the_header_is_malformed(self) -> None:
        """An option whose length reaches past the TCP header is not read."""
        options = b"\x02\x04\x05\xb4\x01\x01\x08\x0a"

        record = decode(tcp_with_raw_options(options))

        expected = {
            "tcp_opt_mss": 1460,
            "tcp_opt_nop_count": 2,
            "tcp_opt_timestamp": 0,
            "decode_error": "malformed_tcp:option length",
        }
        assert expected == pick(record, *expected)

    def test_data_offset_below_five_words_is_malformed(self) -> None:
        """A data offset under 5 keeps the header fields, then stops before payload and flow."""
        record = decode(ether() / IP(src=CLIENT, dst=SERVER) / TCP(dport=80, dataofs=3))

        assert {"tcp_dport": 80, "payload_len": -1, "flow_key": ""} == pick(
            record, "tcp_dport", "payload_len", "flow_key"
        )
        assert "malformed_tcp:dataofs=3" == record["decode_error"]


FLAG_NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")


def tcp_with_raw_options(options: bytes, payload: bytes = b"") -> Packet:
    """A TCP packet whose option bytes are given as is, possibly malformed."""
    dataofs = 5 + len(options) // 4
    tcp = TCP(sport=1000, dport=2000, dataofs=dataofs) / Raw(options + payload)
    return ether() / IP(src=CLIENT, dst=SERVER) / tcp


class TestUdpAndIcmp:
    def test_udp_fields_are_read(self) -> None:
        """UDP ports and length are decoded; the payload follows the 8-byte header."""
        record = decode(ether() / IP() / UDP(sport=5000, dport=6000) / Raw(b"hello"))

        assert {"udp_sport": 5000, "udp_dport": 6000, "udp_len": 13, "payload_len": 5} == pick(
            record, "udp_sport", "udp_dport", "udp_len", "payload_len"
        )

    def test_icmp_echo_gives_identifier_and_sequence(self) -> None:
        """An echo request carries id and sequence."""
        record = decode(ether() / IP() / ICMP(type=8, id=0x4242, seq=3) / Raw(b"p" * 8))

        expected = {"icmp_type": 8, "icmp_code": 0, "icmp_id": 0x4242, "icmp_seq": 3}
        assert expected == pick(record, *expected)
        assert 8 == record["payload_len"]

    def test_icmp_error_has_no_identifier_and_its_quote_is_payload(self) -> None:
        """A destination-unreachable message has no id; the quoted packet counts as payload."""
        quote = IP(src=SERVER, dst=CLIENT) / UDP(sport=1, dport=53)
        record = decode(ether() / IP(src=CLIENT, dst=SERVER) / ICMP(type=3, code=3) / quote)

        expected = {
            "icmp_type": 3,
            "icmp_code": 3,
            "icmp_id": -1,
            "udp_dport": -1,
            "dns_id": -1,
            "payload_len": 28,
        }
        assert expected == pick(record, *expected)

    def test_icmpv6_echo_gives_identifier_and_sequence(self) -> None:
        """An ICMPv6 echo reply carries id and sequence."""
        packet = ether() / IPv6(src=CLIENT6, dst=SERVER6) / ICMPv6EchoReply(id=9, seq=10)

        expected = {"icmpv6_type": 129, "icmpv6_code": 0, "icmpv6_id": 9, "icmpv6_seq": 10}
        assert expected == pick(decode(packet), *expected)

    def test_icmpv6_neighbour_solicitation_has_no_identifier(self) -> None:
        """Other ICMPv6 messages give type and code only."""
        packet = ether() / IPv6(src=CLIENT6, dst=SERVER6) / ICMPv6ND_NS(tgt=SERVER6)

        assert {"icmpv6_type": 135, "icmpv6_id": -1} == pick(
            decode(packet), "icmpv6_type", "icmpv6_id"
        )


class TestDns:
    def test_query_fields_are_read(self) -> None:
        """Header bits, counts and the first question are decoded from a UDP query."""
        query = DNS(id=0xABCD, rd=1, cd=1, qd=DNSQR(qname="www.example.com", qtype="AAAA"))
        record = decode(ether() / IP() / UDP(sport=33000, dport=53) / query)

        expected = {
            "dns_id": 0xABCD,
            "dns_qr": 0,
            "dns_opcode": 0,
            "dns_rd": 1,
            "dns_cd": 1,
            "dns_qdcount": 1,
            "dns_ancount": 0,
            "dns_qname_len": 15,
            "dns_qname_labels": 3,
            "dns_qtype": 28,
            "decode_error": "",
        }
        assert expected == pick(record, *expected)

    def test_response_bits_and_counts_are_read(self) -> None:
        """A response's QR, AA, RA, rcode and answer count are decoded."""
        answer = DNS(
            id=1,
            qr=1,
            aa=1,
            ra=1,
            rcode=3,
            qd=DNSQR(qname="a.b"),
            an=DNSRR(rrname="a.b", rdata="192.0.2.1"),
        )
        record = decode(ether() / IP() / UDP(sport=53, dport=33000) / answer)

        expected = {"dns_qr": 1, "dns_aa": 1, "dns_ra": 1, "dns_rcode": 3, "dns_ancount": 1}
        assert expected == pick(record, *expected)

    def test_root_name_has_no_length_and_no_labels(self) -> None:
        """The root name is zero characters and zero labels long."""
        record = decode(udp_dns(dns_message(b"\x00\x00\x02\x00\x01")))

        assert {"dns_qname_len": 0, "dns_qname_labels": 0, "dns_qtype": 2} == pick(
            record, "dns_qname_len", "dns_qname_labels", "dns_qtype"
        )

    def test_long_name_length_counts_the_dots(self) -> None:
        """The name length is that of its dotted text: label bytes plus one dot between each."""
        name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
        record = decode(ether() / IP() / udp(dport=53) / DNS(qd=DNSQR(qname=name)))

        assert {"dns_qname_len": 253, "dns_qname_labels": 4} == pick(
            record, "dns_qname_len", "dns_qname_labels"
        )

    def test_compressed_name_is_followed_through_its_pointer(self) -> None:
        """A question name that is a pointer is read where it points; qtype follows the pointer."""
        # header (12) | pointer to 18 | qtype MX | qclass IN | name at offset 18
        question = b"\xc0\x12" + b"\x00\x0f\x00\x01" + b"\x03www\x07example\x03com\x00"
        record = decode(udp_dns(dns_message(question)))

        assert {"dns_qname_len": 15, "dns_qname_labels": 3, "dns_qtype": 15} == pick(
            record, "dns_qname_len", "dns_qname_labels", "dns_qtype"
        )

    def test_pointer_loop_is_malformed_but_keeps_header_and_flow(self) -> None:
        """A name pointing at itself stops as malformed; DNS header and flow stay."""
        record = decode(udp_dns(dns_message(b"\xc0\x0c\x00\x01\x00\x01")))

        expected = {
            "decode_error": "malformed_dns:dns name pointer loop",
            "dns_id": 0x1234,
            "dns_qdcount": 1,
            "dns_qname_len": -1,
            "flow_key": f"17 {CLIENT}:33000 {SERVER}:53",
        }
        assert expected == pick(record, *expected)

    def test_reserved_label_type_is_malformed(self) -> None:
        """A label length with the 0x40 bit (an extended label type) is malformed."""
        record = decode(udp_dns(dns_message(b"\x41abc\x00\x00\x01\x00\x01")))

        assert "malformed_dns:dns label type" == record["decode_error"]

    def test_name_cut_by_the_packet_end_is_truncated(self) -> None:
        """A question name that runs past the message is truncated DNS."""
        record = decode(udp_dns(dns_message(b"\x07exam")))

        assert {"decode_error": "truncated_dns", "dns_id": 0x1234} == pick(
            record, "decode_error", "dns_id"
        )

    def test_query_without_questions_has_no_name(self) -> None:
        """A message with no question leaves the name fields missing and no error."""
        record = decode(udp_dns(dns_message(b"", qdcount=0)))

        assert {"dns_qdcount": 0, "dns_qtype": -1, "decode_error": ""} == pick(
            record, "dns_qdcount", "dns_qtype", "decode_error"
        )

    def test_dns_over_tcp_is_read_after_its_length_prefix(self) -> None:
        """A TCP segment holding one length-prefixed DNS message is decoded."""
        query = DNS(id=77, qd=DNSQR(qname="mail.example.org", qtype="MX"))
        record = decode(ether() / IP() / TCP(sport=40000, dport=53, flags="PA") / query)

        assert {"dns_id": 77, "dns_qname_len": 16, "dns_qtype": 15} == pick(
            record, "dns_id", "dns_qname_len", "dns_qtype"
        )

    def test_tcp_segment_with_part_of_a_message_is_not_dns(self) -> None:
        """A segment whose length prefix does not match its size is left undecoded."""
        tcp = TCP(sport=53, dport=40000, flags="PA") / Raw(b"\x01\x00" + bytes(20))
        record = decode(ether() / IP() / tcp)

        assert {"dns_id": -1, "decode_error": ""} == pick(record, "dns_id", "decode_error")

    def test_multicast_dns_port_is_not_decoded(self) -> None:
        """DNS is decoded on port 53 only; mDNS on 5353 is left alone."""
        query = DNS(qd=DNSQR(qname="printer.local"))
        record = decode(ether() / IP() / UDP(sport=5353, dport=5353) / query)

        assert -1 == record["dns_id"]


UNDECODABLE = "undecodable"


def truncation_cases() -> Iterator:
    """Frames, with the end of each header and what a cut before that end must report."""
    ip = IP(src=CLIENT, dst=SERVER, options=[IPOption_RR()])
    tcp = TCP(sport=1, dport=2, options=SYN_OPTIONS)
    ip_end = 14 + len(ip)  # 24 bytes of IPv4 header with the option
    yield pytest.param(
        bytes(ether() / ip / tcp / Raw(b"payload bytes")),
        [(14, UNDECODABLE), (ip_end, "truncated_ipv4"), (ip_end + len(tcp), "truncated_tcp")],
        id="ipv4-options-tcp-options",
    )
    query = DNS(id=1, qd=DNSQR(qname="www.example.com"))
    dns = ether() / IPv6(src=CLIENT6, dst=SERVER6) / IPv6ExtHdrHopByHop() / udp(dport=53) / query
    question_end = 70 + 12 + 17 + 4  # UDP end, DNS header, www.example.com, type and class
    yield pytest.param(
        bytes(dns),
        [
            (14, UNDECODABLE),
            (62, "truncated_ipv6"),
            (70, "truncated_udp"),
            (question_end, "truncated_dns"),
        ],
        id="ipv6-hop-by-hop-udp-dns",
    )
    echo = ether() / IP(src=CLIENT, dst=SERVER) / ICMP(type=8, id=1, seq=1) / Raw(b"ping")
    yield pytest.param(
        bytes(echo),
        [(14, UNDECODABLE), (34, "truncated_ipv4"), (42, "truncated_icmp")],
        id="ipv4-icmp-echo",
    )
    arp = ether() / Dot1Q(vlan=3) / ARP(psrc=CLIENT, pdst=SERVER)
    yield pytest.param(bytes(arp), [(18, UNDECODABLE), (46, "truncated_arp")], id="vlan-arp")


def expected_for_cut(size: int, header_ends: list[tuple[int, str]]) -> str:
    """The decode_error of a frame cut to ``size`` bytes: that of the first header it cuts."""
    return next((error for end, error in header_ends if size < end), "")


class TestTruncation:
    @pytest.mark.parametrize(("frame", "header_ends"), list(truncation_cases()))
    def test_frame_cut_at_every_length_names_the_cut_header(
        self, frame: bytes, header_ends: list[tuple[int, str]]
    ) -> None:
        """A cut inside a header is reported for that layer; a cut in the payload is not.

        Only ``Undecodable`` may escape, and only when the link-layer header itself is cut.
        A cut in the payload is a normal snapshot length and leaves decode_error empty.
        """
        wrong = []
        for size in range(len(frame) + 1):
            expected = expected_for_cut(size, header_ends)
            try:
                record = decode(frame[:size])
            except Undecodable as err:
                actual = UNDECODABLE
                assert "truncated_link_header" == err.reason
            else:
                actual = record["decode_error"]
                assert size == record["frame_caplen"]
            if expected != actual:
                wrong.append(f"cut at {size}: expected {expected!r}, got {actual!r}")
        assert [] == wrong, "\n".join(wrong)

    def test_payload_length_counts_what_the_headers_declare(self) -> None:
        """A capture cut inside the payload still counts the payload by header lengths."""
        frame = bytes(ether() / IP(src=CLIENT, dst=SERVER) / udp(dport=9) / Raw(b"x" * 100))

        record = decode(frame[:60])

        expected = {"payload_len": 100, "payload_hex": "78" * 16, "decode_error": ""}
        assert expected == pick(record, *expected)


class TestFlow:
    def test_both_directions_share_key_and_id_but_not_direction(self) -> None:
        """A request and its reply have one flow key and id, and opposite flow_dir."""
        request = ether() / IP(src=CLIENT, dst=SERVER) / TCP(sport=40000, dport=80)
        reply = ether() / IP(src=SERVER, dst=CLIENT) / TCP(sport=80, dport=40000)

        there, back = decode(request), decode(reply)

        assert f"6 {CLIENT}:40000 {SERVER}:80" == there["flow_key"]
        assert there["flow_key"] == back["flow_key"]
        assert there["flow_id"] == back["flow_id"]
        assert 16 == len(there["flow_id"])
        assert (0, 1) == (there["flow_dir"], back["flow_dir"])

    def test_ipv6_endpoints_are_bracketed(self) -> None:
        """IPv6 addresses are written in brackets before the port."""
        there = decode(ether() / IPv6(src=SERVER6, dst=CLIENT6) / UDP(sport=53, dport=5000))
        back = decode(ether() / IPv6(src=CLIENT6, dst=SERVER6) / UDP(sport=5000, dport=53))

        assert f"17 [{CLIENT6}]:5000 [{SERVER6}]:53" == there["flow_key"]
        assert (there["flow_id"], 1) == (back["flow_id"], there["flow_dir"])
        assert 0 == back["flow_dir"]

    def test_same_address_orders_by_port(self) -> None:
        """Between two ports of one host the lower port is the lower endpoint."""
        record = decode(ether() / IP(src=CLIENT, dst=CLIENT) / UDP(sport=9000, dport=53))

        assert (f"17 {CLIENT}:53 {CLIENT}:9000", 1) == (record["flow_key"], record["flow_dir"])

    def test_icmp_flow_has_zero_ports(self) -> None:
        """Protocols without ports are keyed by addresses alone (ports 0)."""
        record = decode(ether() / IP(src=SERVER, dst=CLIENT) / ICMP())

        assert (f"1 {CLIENT}:0 {SERVER}:0", 1) == (record["flow_key"], record["flow_dir"])

    def test_arp_is_keyed_by_link_addresses(self) -> None:
        """Non-IP frames take their flow from the EtherType and the Ethernet addresses."""
        there = decode(Ether(src=SERVER_MAC, dst=CLIENT_MAC) / ARP(op=2))
        back = decode(ether() / ARP(op=1))

        assert f"eth-0806 {CLIENT_MAC} {SERVER_MAC}" == there["flow_key"]
        assert (there["flow_id"], 1, 0) == (back["flow_id"], there["flow_dir"], back["flow_dir"])


class TestPayload:
    def test_uniform_text_has_no_entropy_and_is_all_printable(self) -> None:
        """Ten equal letters: entropy 0 bits, every byte printable, all ten bytes in hex."""
        record = decode(ether() / IP() / udp() / Raw(b"a" * 10))

        expected = {
            "payload_len": 10,
            "payload_entropy": 0.0,
            "payload_printable": 1.0,
            "payload_hex": "61" * 10,
        }
        assert expected == pick(record, *expected)

    def test_every_byte_value_once_has_eight_bits_of_entropy(self) -> None:
        """All 256 byte values: 8 bits per byte; 98 of them are printable (tab, CR, LF, ASCII)."""
        record = decode(ether() / IP() / udp() / Raw(bytes(range(256))))

        expected = {
            "payload_len": 256,
            "payload_entropy": 8.0,
            "payload_printable": round(98 / 256, 4),
            "payload_hex": bytes(range(16)).hex(),
        }
        assert expected == pick(record, *expected)

    def test_payload_hex_keeps_the_configured_number_of_bytes(self) -> None:
        """payload_bytes bounds the hex copy of the payload."""
        record = decode(ether() / IP() / udp() / Raw(b"abcdefgh"), payload_bytes=3)

        assert "616263" == record["payload_hex"]

    def test_empty_payload_has_zero_entropy_and_empty_hex(self) -> None:
        """A packet with nothing after its headers has payload length 0 and empty hex."""
        record = decode(ether() / IP() / TCP())

        expected = {
            "payload_len": 0,
            "payload_entropy": 0.0,
            "payload_printable": 0.0,
            "payload_hex": "",
        }
        assert expected == pick(record, *expected)


# Agreement with the scapy reference ----------------------------------------------------------

SEED = 20240607
# Both decoders round entropy and printable share to 4 decimals from sums taken in different
# orders, so the last digit may differ by one.
FLOAT_TOLERANCE = 2e-4
# Input on which the two legitimately disagree, so the reference reports a problem and the
# records are not compared field by field:
# - a UDP length that contradicts the IP length: the fast decoder trusts the IP length and
#   does not check, the reference (like scapy) goes by the UDP length;
# - a DNS label holding a '.' byte: scapy's dotted name text cannot tell it from two labels.
REFERENCE_ONLY_PROBLEMS = ("malformed_udp:length", "reference_limit:")


def varied_frames(rng: random.Random) -> Iterator[tuple[bytes, int]]:
    """Well-formed packets of every layer the decoder reads, with random field values."""
    for _ in range(12):
        yield from one_of_each(rng)


def one_of_each(rng: random.Random) -> Iterator[tuple[bytes, int]]:
    client = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    server = f"192.0.2.{rng.randrange(1, 255)}"
    client6 = f"2001:db8::{rng.randrange(1, 0xFFFF):x}"
    sport, dport = rng.randrange(1024, 65536), rng.choice([22, 80, 443, 8080])
    payload = Raw(rng.randbytes(rng.randrange(0, 80)))
    name = ".".join(
        "".join(rng.choice("abcdefghij-0123") for _ in range(rng.randrange(1, 12)))
        for _ in range(rng.randrange(1, 5))
    )
    options = rng.sample(SYN_OPTIONS, rng.randrange(0, len(SYN_OPTIONS) + 1))
    flags = rng.randrange(0, 0x200)
    ip = IP(src=client, dst=server, tos=rng.randrange(256), ttl=rng.randrange(1, 256))

    yield (
        bytes(ether() / ip / TCP(sport=sport, dport=dport, flags=flags, options=options) / payload),
        ETHERNET,
    )
    yield (
        bytes(ether() / Dot1Q(vlan=rng.randrange(4096)) / ip / udp(sport, dport) / payload),
        ETHERNET,
    )
    dns = DNS(
        id=rng.randrange(65536),
        rd=rng.randrange(2),
        qd=DNSQR(qname=name, qtype=rng.choice([1, 28, 15])),
    )
    yield bytes(ether() / ip / UDP(sport=sport, dport=53) / dns), ETHERNET
    yield bytes(ether() / ip / TCP(sport=53, dport=sport, flags="PA") / dns), ETHERNET
    answer = DNS(id=1, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata=server))
    yield bytes(ether() / ip / UDP(sport=53, dport=sport) / answer), ETHERNET
    icmp = ICMP(type=rng.choice([0, 3, 8, 11]), code=rng.randrange(4), id=rng.randrange(65536))
    yield bytes(ether() / ip / icmp / payload), ETHERNET
    whole = IP(src=client, dst=server, id=rng.randrange(65536)) / udp(sport, dport) / Raw(bytes(90))
    for piece in fragment(whole, fragsize=32):
        yield bytes(ether() / piece), ETHERNET
    yield (
        bytes(Ether(src=SERVER_MAC, dst=CLIENT_MAC) / ARP(op=2, psrc=server, pdst=client)),
        ETHERNET,
    )

    ip6 = IPv6(src=client6, dst=SERVER6, tc=rng.randrange(256), fl=rng.randrange(1 << 20))
    extensions = rng.sample(
        [IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting(addresses=[SERVER6])],
        rng.randrange(0, 4),
    )
    chain = ip6
    for extension in extensions:
        chain = chain / extension
    yield (
        bytes(ether() / chain / TCP(sport=sport, dport=dport, options=options) / payload),
        ETHERNET,
    )
    yield bytes(ether() / ip6 / IPv6ExtHdrFragment(m=1) / udp(sport, dport) / payload), ETHERNET
    yield bytes(ether() / ip6 / IPv6ExtHdrFragment(offset=9, nh=6) / payload), ETHERNET
    yield bytes(ether() / ip6 / ICMPv6EchoRequest(id=rng.randrange(65536), seq=3)), ETHERNET
    yield bytes(ether() / ip6 / UDP(sport=sport, dport=53) / dns), ETHERNET
    yield bytes(ip / udp(sport, dport) / payload), RAW_IP
    yield bytes(CookedLinux(proto=0x86DD) / ip6 / TCP(sport=sport, dport=dport)), LINUX_SLL
    yield bytes(Loopback(type=2) / ip / ICMP()), NULL


def fuzzed_frames() -> Iterator[tuple[bytes, int]]:
    """scapy's fuzz(): random values in every field not given, lengths left consistent."""
    qd = DNSQR(qname="fuzz.example")
    makers = (
        lambda: fuzz(IP(src=CLIENT, dst=SERVER) / TCP()),
        lambda: IP(src=CLIENT, dst=SERVER) / fuzz(TCP()),
        lambda: fuzz(IP(src=CLIENT, dst=SERVER) / udp()),
        lambda: IP(src=CLIENT, dst=SERVER) / fuzz(ICMP()),
        lambda: IP(src=CLIENT, dst=SERVER) / UDP(sport=53) / fuzz(DNS(qd=qd)),
        lambda: IP(src=CLIENT, dst=SERVER) / fuzz(udp(dport=53) / DNS(qd=qd)),
    )
    for number in range(240):
        yield bytes(ether() / makers[number % len(makers)]()), ETHERNET


def corrupted_frames(rng: random.Random, frames: list[bytes]) -> Iterator[tuple[bytes, int]]:
    """Well-formed Ethernet frames with a few random bytes overwritten and some cut short."""
    for _ in range(400):
        frame = bytearray(rng.choice(frames))
        for _ in range(rng.randrange(1, 4)):
            frame[rng.randrange(14, len(frame))] = rng.randrange(256)
        if rng.random() < 0.3:
            frame = frame[: rng.randrange(14, len(frame) + 1)]
        yield bytes(frame), ETHERNET


@pytest.fixture(scope="module")
def sample_frames() -> dict[str, list[tuple[bytes, int]]]:
    """Varied, fuzzed and corrupted frames, the same on every run."""
    saved = random.getstate()
    random.seed(SEED)  # scapy's fuzz() draws from the random module
    try:
        rng = random.Random(SEED)
        varied = list(varied_frames(rng))
        fuzzed = list(fuzzed_frames())
        ethernet = [frame for frame, link in varied + fuzzed if link == ETHERNET]
        corrupted = list(corrupted_frames(rng, ethernet))
    finally:
        random.setstate(saved)
    return {"varied": varied, "fuzzed": fuzzed, "corrupted": corrupted}


def both_records(frame: bytes, link_type: int) -> tuple[dict | str, dict | str]:
    """The fast and the reference record of a frame, or the Undecodable reason of each."""
    try:
        values = FrameDecoder("ref0").decode(frame, link_type, TS_NS, len(frame))
        fast: dict | str = dict(zip(NAMES, values, strict=True))
    except Undecodable as err:
        fast = err.reason
    try:
        reference: dict | str = reference_record(frame, link_type, TS_NS, len(frame), "ref0")
    except Undecodable as err:
        reference = err.reason
    return fast, reference


def field_differences(fast: dict, reference: dict) -> list[str]:
    differences = []
    for name in NAMES:
        ours, theirs = fast[name], reference[name]
        if isinstance(ours, float) and isinstance(theirs, float):
            if abs(ours - theirs) <= FLOAT_TOLERANCE:
                continue
        elif ours == theirs:
            continue
        differences.append(f"{name}: fast={ours!r} reference={theirs!r}")
    return differences


class TestAgainstReference:
    @pytest.mark.parametrize("kind", ["varied", "fuzzed", "corrupted"])
    def test_fast_decoder_agrees_with_scapy_on_every_well_formed_frame(
        self, sample_frames: dict, kind: str
    ) -> None:
        """Where the reference finds nothing wrong, every field of the two records is equal."""
        compared, disagreements = 0, []
        for number, (frame, link_type) in enumerate(sample_frames[kind]):
            fast, reference = both_records(frame, link_type)
            if isinstance(fast, str) or isinstance(reference, str):
                if fast != reference:
                    disagreements.append(f"#{number}: undecodable fast={fast} ref={reference}")
                continue
            if reference["decode_error"]:
                continue
            compared += 1
            differences = field_differences(fast, reference)
            if differences:
                disagreements.append(f"#{number} {frame.hex()}: " + "; ".join(differences))

        assert [] == disagreements, "\n".join(disagreements)
        # The comparison must not shrink to nothing behind the well-formed filter.
        minimum = {"varied": len(sample_frames["varied"]), "fuzzed": 200, "corrupted": 200}[kind]
        assert compared >= minimum

    def test_every_header_problem_the_reference_finds_is_reported(
        self, sample_frames: dict
    ) -> None:
        """On broken input the fast decoder names a problem too, except the documented ones."""
        unreported = []
        for number, (frame, link_type) in enumerate(sample_frames["corrupted"]):
            fast, reference = both_records(frame, link_type)
            if isinstance(fast, str) or isinstance(reference, str):
                continue
            problem = reference["decode_error"]
            checked = problem and not problem.startswith(REFERENCE_ONLY_PROBLEMS)
            if checked and not fast["decode_error"]:
                unreported.append(f"#{number} {frame.hex()}: reference says {problem}")

        assert [] == unreported, "\n".join(unreported)
