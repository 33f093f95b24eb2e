"""The packet record, declared once: every field's name, type, layer, meaning and feature flag.

Extraction, encoding, validation, dataset columns and the docs table all read ``FIELDS``.
A field that a packet does not carry holds ``MISSING`` (numbers) or ``""`` (text) in the
record; JSON shows both as ``null``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 2
MISSING = -1

# Record types and how each is stored in a binary batch (numpy dtype).
_DTYPES = {
    "u8": "<i2",
    "u16": "<i4",
    "u32": "<i8",
    "u64": "<i8",
    "f32": "<f4",
    "mac": "S17",
    "ip": "S39",
    "text": "S48",
    "iface": "S32",
    "hex": "S16",
    "key": "S100",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One column of the packet record."""

    name: str
    type: str
    layer: str
    meaning: str
    feature: bool = False

    @property
    def is_text(self) -> bool:
        return self.type in ("mac", "ip", "text", "iface", "hex", "key", "payload")

    @property
    def missing(self) -> int | str:
        return "" if self.is_text else MISSING


_WINDOWS = (
    ("h100ms", "0.1 s half-life"),
    ("h1s", "1 s half-life"),
    ("h10s", "10 s half-life"),
    ("h60s", "60 s half-life"),
)


def _layer(layer: str, feature: bool, *rows: tuple[str, str, str]) -> list[Field]:
    return [Field(name, kind, layer, meaning, feature) for name, kind, meaning in rows]


# Identifiers and session fingerprints (addresses, source ports, ids, checksums, sequence
# numbers, raw timestamps, payload bytes) are declared with feature=False: a model that sees
# them learns which capture a packet came from, not what the packet does.
FIELDS: tuple[Field, ...] = tuple(
    _layer(
        "meta",
        False,
        ("schema_version", "u16", "Version of this record layout"),
        ("ts_ns", "u64", "Capture timestamp, nanoseconds since the Unix epoch"),
        ("iface", "iface", "Interface or file the packet was read from"),
        ("link_type", "u16", "Link-layer header type of the capture (DLT number)"),
        ("decode_error", "text", "Why decoding stopped early; empty when it did not"),
    )
    + _layer(
        "frame",
        True,
        ("frame_len", "u32", "Length of the frame on the wire, bytes"),
        ("frame_caplen", "u32", "Bytes of the frame that were captured"),
    )
    + _layer(
        "eth",
        False,
        ("eth_src", "mac", "Ethernet source address"),
        ("eth_dst", "mac", "Ethernet destination address"),
    )
    + _layer(
        "eth",
        True,
        ("eth_type", "u16", "EtherType of the payload after any VLAN tags"),
        ("vlan_id", "u16", "802.1Q VLAN identifier of the outer tag"),
    )
    + _layer(
        "arp",
        True,
        ("arp_hwtype", "u16", "ARP hardware type"),
        ("arp_ptype", "u16", "ARP protocol type"),
        ("arp_hwlen", "u8", "ARP hardware address length"),
        ("arp_plen", "u8", "ARP protocol address length"),
        ("arp_op", "u16", "ARP operation (1 request, 2 reply)"),
    )
    + _layer(
        "arp",
        False,
        ("arp_hwsrc", "mac", "ARP sender hardware address"),
        ("arp_psrc", "ip", "ARP sender protocol address"),
        ("arp_hwdst", "mac", "ARP target hardware address"),
        ("arp_pdst", "ip", "ARP target protocol address"),
    )
    + _layer(
        "ipv4",
        True,
        ("ip_version", "u8", "IP version field of the IPv4 header"),
        ("ip_ihl", "u8", "IPv4 header length, 32-bit words"),
        ("ip_tos", "u8", "IPv4 type of service / DSCP+ECN byte"),
        ("ip_len", "u16", "IPv4 total length, bytes"),
    )
    + _layer("ipv4", False, ("ip_id", "u16", "IPv4 identification"))
    + _layer(
        "ipv4",
        True,
        ("ip_flags", "u8", "IPv4 flags (bit 1 DF, bit 0 MF)"),
        ("ip_frag", "u16", "IPv4 fragment offset, 8-byte units"),
        ("ip_ttl", "u8", "IPv4 time to live"),
        ("ip_proto", "u8", "IPv4 protocol of the payload"),
    )
    + _layer(
        "ipv4",
        False,
        ("ip_src", "ip", "IPv4 source address"),
        ("ip_dst", "ip", "IPv4 destination address"),
    )
    + _layer(
        "ipv4",
        True,
        ("ip_options_len", "u8", "Bytes of IPv4 options"),
    )
    + _layer(
        "ipv6",
        True,
        ("ipv6_version", "u8", "IP version field of the IPv6 header"),
        ("ipv6_tc", "u8", "IPv6 traffic class"),
    )
    + _layer("ipv6", False, ("ipv6_fl", "u32", "IPv6 flow label"))
    + _layer(
        "ipv6",
        True,
        ("ipv6_plen", "u16", "IPv6 payload length, bytes"),
        ("ipv6_nh", "u8", "IPv6 next header of the fixed header"),
        ("ipv6_hlim", "u8", "IPv6 hop limit"),
    )
    + _layer(
        "ipv6",
        False,
        ("ipv6_src", "ip", "IPv6 source address"),
        ("ipv6_dst", "ip", "IPv6 destination address"),
        ("ipv6_ext_headers", "text", "Extension header numbers seen, in order, joined by '-'"),
    )
    + _layer("ipv6", True, ("ipv6_ext_count", "u8", "Number of IPv6 extension headers"))
    + _layer(
        "ip",
        True,
        ("l4_proto", "u8", "Transport protocol after IPv4 or IPv6 and its extension headers"),
        ("ip_fragment", "u8", "1 when the IP packet is a fragment (IPv4 MF/offset or IPv6 frag)"),
    )
    + _layer("tcp", False, ("tcp_sport", "u16", "TCP source port"))
    + _layer("tcp", True, ("tcp_dport", "u16", "TCP destination port"))
    + _layer(
        "tcp",
        False,
        ("tcp_seq", "u32", "TCP sequence number"),
        ("tcp_ack", "u32", "TCP acknowledgment number"),
    )
    + _layer(
        "tcp",
        True,
        ("tcp_dataofs", "u8", "TCP header length, 32-bit words"),
        ("tcp_flags", "u16", "TCP flag bits (FIN=1 ... CWR=128, NS=256)"),
        ("tcp_flag_fin", "u8", "TCP FIN flag"),
        ("tcp_flag_syn", "u8", "TCP SYN flag"),
        ("tcp_flag_rst", "u8", "TCP RST flag"),
        ("tcp_flag_psh", "u8", "TCP PSH flag"),
        ("tcp_flag_ack", "u8", "TCP ACK flag"),
        ("tcp_flag_urg", "u8", "TCP URG flag"),
        ("tcp_flag_ece", "u8", "TCP ECE flag"),
        ("tcp_flag_cwr", "u8", "TCP CWR flag"),
        ("tcp_window", "u16", "TCP window field (unscaled)"),
        ("tcp_urgptr", "u16", "TCP urgent pointer"),
        ("tcp_opt_mss", "u16", "TCP MSS option value"),
        ("tcp_opt_wscale", "u8", "TCP window scale option shift"),
        ("tcp_opt_sackok", "u8", "1 when the SACK-permitted option is present"),
        ("tcp_opt_timestamp", "u8", "1 when the timestamp option is present (values not kept)"),
        ("tcp_opt_nop_count", "u8", "Number of NOP options"),
    )
    + _layer("udp", False, ("udp_sport", "u16", "UDP source port"))
    + _layer(
        "udp",
        True,
        ("udp_dport", "u16", "UDP destination port"),
        ("udp_len", "u16", "UDP length field, bytes"),
    )
    + _layer(
        "icmp",
        True,
        ("icmp_type", "u8", "ICMP type"),
        ("icmp_code", "u8", "ICMP code"),
    )
    + _layer(
        "icmp",
        False,
        ("icmp_id", "u16", "ICMP echo identifier"),
        ("icmp_seq", "u16", "ICMP echo sequence number"),
    )
    + _layer(
        "icmpv6",
        True,
        ("icmpv6_type", "u8", "ICMPv6 type"),
        ("icmpv6_code", "u8", "ICMPv6 code"),
    )
    + _layer(
        "icmpv6",
        False,
        ("icmpv6_id", "u16", "ICMPv6 echo identifier"),
        ("icmpv6_seq", "u16", "ICMPv6 echo sequence number"),
    )
    + _layer("dns", False, ("dns_id", "u16", "DNS transaction id"))
    + _layer(
        "dns",
        True,
        ("dns_qr", "u8", "DNS QR bit (1 response)"),
        ("dns_opcode", "u8", "DNS opcode"),
        ("dns_aa", "u8", "DNS authoritative answer bit"),
        ("dns_tc", "u8", "DNS truncation bit"),
        ("dns_rd", "u8", "DNS recursion desired bit"),
        ("dns_ra", "u8", "DNS recursion available bit"),
        ("dns_z", "u8", "DNS reserved Z bit"),
        ("dns_ad", "u8", "DNS authenticated data bit"),
        ("dns_cd", "u8", "DNS checking disabled bit"),
        ("dns_rcode", "u8", "DNS response code"),
        ("dns_qdcount", "u16", "DNS question count"),
        ("dns_ancount", "u16", "DNS answer count"),
        ("dns_nscount", "u16", "DNS authority count"),
        ("dns_arcount", "u16", "DNS additional count"),
        ("dns_qname_len", "u16", "Length of the first query name, dotted text form"),
        ("dns_qname_labels", "u8", "Labels in the first query name"),
        ("dns_qtype", "u16", "Type of the first query"),
    )
    + _layer(
        "payload",
        True,
        ("payload_len", "u32", "Bytes after the last decoded header (by header lengths)"),
        ("payload_entropy", "f32", "Shannon entropy of the captured payload, bits per byte"),
        ("payload_printable", "f32", "Share of captured payload bytes that are printable ASCII"),
    )
    + _layer("payload", False, ("payload_hex", "payload", "First payload bytes as hex"))
    + _layer(
        "flow",
        False,
        ("flow_key", "key", "Protocol and both endpoints, lower endpoint first"),
        ("flow_id", "hex", "Stable 64-bit hash of flow_key, hex"),
    )
    + _layer("flow", True, ("flow_dir", "u8", "0 when the source is the lower endpoint, else 1"))
    + _layer(
        "context",
        True,
        *(
            (f"ctx_src_{what}_rate_{window}", "f32", f"Source host {unit} per second, {half}")
            for what, unit in (("pkt", "packets"), ("byte", "bytes"))
            for window, half in _WINDOWS
        ),
        ("ctx_src_size_mean", "f32", "Source host mean frame size, 10 s half-life"),
        ("ctx_src_size_std", "f32", "Source host frame size spread, 10 s half-life"),
        ("ctx_src_gap_mean", "f32", "Source host mean seconds between packets, 10 s half-life"),
        ("ctx_src_gap_std", "f32", "Source host spread of seconds between packets, 10 s"),
        (
            "ctx_src_new_port_rate",
            "f32",
            "New (destination, port) pairs per second from the source",
        ),
        ("ctx_src_new_host_rate", "f32", "New destination hosts per second from the source"),
        ("ctx_src_syn_ratio", "f32", "Share of the source's packets that are SYN without ACK"),
        ("ctx_src_synack_ratio", "f32", "Share of the source's packets that are SYN-ACK"),
        ("ctx_src_rst_ratio", "f32", "Share of the source's packets with RST"),
        ("ctx_src_fin_ratio", "f32", "Share of the source's packets with FIN"),
        *(
            (
                f"ctx_pair_pkt_rate_{window}",
                "f32",
                f"Packets per second source to destination, {half}",
            )
            for window, half in _WINDOWS
        ),
        ("ctx_pair_size_mean", "f32", "Mean frame size source to destination, 10 s half-life"),
        ("ctx_pair_size_std", "f32", "Frame size spread source to destination, 10 s half-life"),
        ("ctx_flow_pkts", "u32", "Packets of this flow so far, this one included"),
        ("ctx_flow_age_s", "f32", "Seconds since the flow's first packet"),
        ("ctx_flow_first_dir_share", "f32", "Share of the flow's packets sent the first one's way"),
        ("ctx_flow_size_mean", "f32", "Mean frame size of the flow so far"),
        ("ctx_flow_gap_mean", "f32", "Mean seconds between the flow's packets so far"),
    )
)

NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
INDEX: dict[str, int] = {name: i for i, name in enumerate(NAMES)}
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
FEATURES: tuple[str, ...] = tuple(f.name for f in FIELDS if f.feature)

if len(INDEX) != len(FIELDS):  # pragma: no cover - a declaration error, caught at import
    raise RuntimeError("the packet record declares a field twice")


def layer_slice(layer: str) -> slice:
    """The contiguous run of record positions that belong to ``layer``."""
    positions = [i for i, f in enumerate(FIELDS) if f.layer == layer]
    if positions != list(range(positions[0], positions[-1] + 1)):
        raise RuntimeError(f"fields of layer {layer!r} are not declared next to each other")
    return slice(positions[0], positions[-1] + 1)


def empty_record() -> list[int | float | str]:
    """A record with every field missing; decoders copy it and fill what they find."""
    record: list[int | float | str] = [f.missing for f in FIELDS]
    record[INDEX["schema_version"]] = SCHEMA_VERSION
    return record


def batch_dtype(payload_bytes: int) -> np.dtype:
    """The numpy record type of a binary batch that keeps ``payload_bytes`` of payload."""
    columns = []
    for f in FIELDS:
        kind = f"S{max(1, 2 * payload_bytes)}" if f.type == "payload" else _DTYPES[f.type]
        columns.append((f.name, kind))
    return np.dtype(columns)
