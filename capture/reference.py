"""Reference decoding of a frame through scapy's full dissection, the yardstick for the fast one.

``reference_record`` fills the same fields as ``capture.decode.FrameDecoder`` but reads every
header value from a scapy layer and every length from the headers' own length fields. It is
written for clarity, not speed, and shares no parsing code with the fast decoder, so that the
tests comparing the two catch a mistake in either.

On malformed input the reference is stricter: it also reports a UDP length that contradicts
the IP length (``malformed_udp:length ...``), where the fast decoder trusts the IP length, and
it marks what scapy cannot represent (``reference_limit:...``). Records whose reference
``decode_error`` is empty are the ones both decoders must agree on field by field.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import struct
from collections import Counter

from scapy.layers.dns import DNS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6Unknown,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1Q, Ether, Loopback
from scapy.packet import Packet

from capture.decode import Undecodable
from capture.schema import FIELDS, SCHEMA_VERSION

Value = int | float | str

_ETHERTYPE_IPV4, _ETHERTYPE_ARP, _ETHERTYPE_IPV6 = 0x0800, 0x0806, 0x86DD
_VLAN_ETHERTYPES = (0x8100, 0x88A8, 0x9100)
_RAW_IP_LINK_TYPES = (12, 14, 101, 228, 229)
_BSD_INET6_FAMILIES = (10, 24, 28, 30)
_PPP_PROTOCOLS = {0x0021: _ETHERTYPE_IPV4, 0x0057: _ETHERTYPE_IPV6}

# IPv6 extension headers the record walks through, with the scapy class that dissects each.
# Mobility (135), HIP (139) and Shim6 (140) share the generic layout of RFC 6564 (next header,
# length in 8-octet units), which scapy's destination-options class reads correctly.
_IPV6_EXTENSIONS: dict[int, type[Packet]] = {
    0: IPv6ExtHdrHopByHop,
    43: IPv6ExtHdrRouting,
    44: IPv6ExtHdrFragment,
    51: AH,
    60: IPv6ExtHdrDestOpt,
    135: IPv6ExtHdrDestOpt,
    139: IPv6ExtHdrDestOpt,
    140: IPv6ExtHdrDestOpt,
}
_MAX_IPV6_EXTENSIONS = 16
_ICMP_TYPES_WITH_ID = (0, 8, 13, 14, 15, 16, 17, 18)
_ICMPV6_ECHO_TYPES = (128, 129)  # request, reply
_DNS_PORT = 53
_MAX_DNS_POINTERS = 20  # scapy's own limit when it decompresses a name
_PRINTABLE = {9, 10, 13, *range(32, 127)}


class _Stop(Exception):
    """Decoding ends here; the message becomes the record's ``decode_error``."""


def _fields(layer_class: type[Packet], data: bytes) -> Packet:
    """The header fields at the start of ``data``, read by ``layer_class`` without its payload.

    Each layer is read from its own offset, so scapy need not dissect what follows; its guess
    at the payload's class is also a step that can fail on malformed input.
    """
    layer = layer_class()
    layer.do_dissect(data)
    return layer


def reference_record(
    frame: bytes,
    link_type: int,
    ts_ns: int,
    wire_len: int,
    iface: str = "",
    payload_bytes: int = 16,
) -> dict[str, Value]:
    """Decode ``frame`` with scapy into a dict keyed by the schema's field names.

    Raises ``Undecodable`` when not even the link-layer header can be read.
    """
    record: dict[str, Value] = {f.name: f.missing for f in FIELDS}
    record.update(
        schema_version=SCHEMA_VERSION,
        ts_ns=ts_ns,
        iface=iface,
        link_type=link_type,
        frame_len=wire_len,
        frame_caplen=len(frame),
    )
    network, ethertype = _link_layer(frame, link_type, record)
    try:
        if ethertype == _ETHERTYPE_IPV4:
            _ipv4(network, record, payload_bytes)
        elif ethertype == _ETHERTYPE_IPV6:
            _ipv6(network, record, payload_bytes)
        else:
            if ethertype == _ETHERTYPE_ARP:
                _arp(network, record)
            if ethertype is not None and record["eth_src"]:
                _link_flow(record, ethertype)
    except _Stop as stop:
        record["decode_error"] = str(stop)
    return record


# Link layer ----------------------------------------------------------------------------------


def _link_layer(frame: bytes, link_type: int, record: dict) -> tuple[bytes, int | None]:
    """The bytes after the link-layer header and the EtherType they carry (None: unknown)."""
    if link_type == 1:
        return _ethernet(frame, record)
    if link_type in _RAW_IP_LINK_TYPES:
        if not frame:
            raise Undecodable("truncated_link_header")
        version = frame[0] >> 4
        return frame, {4: _ETHERTYPE_IPV4, 6: _ETHERTYPE_IPV6}.get(version)
    if link_type == 113:
        _need(frame, 16)
        return frame[16:], CookedLinux(frame[:16]).proto
    if link_type == 276:
        _need(frame, 20)
        return frame[20:], CookedLinuxV2(frame[:20]).proto
    if link_type in (0, 108):
        _need(frame, 4)
        family = _loopback_family(frame[:4], little_endian=link_type == 0)
        if family == 2:
            return frame[4:], _ETHERTYPE_IPV4
        return frame[4:], _ETHERTYPE_IPV6 if family in _BSD_INET6_FAMILIES else None
    if link_type == 104 or (link_type == 9 and frame[:1] in (b"\x0f", b"\x8f")):
        # Cisco HDLC: address, control, EtherType; some routers write it under the PPP type.
        _need(frame, 4)
        return frame[4:], struct.unpack("!H", frame[2:4])[0]
    if link_type == 9:
        start = 2 if frame[:2] == b"\xff\x03" else 0
        _need(frame, start + 2)
        protocol = struct.unpack("!H", frame[start : start + 2])[0]
        return frame[start + 2 :], _PPP_PROTOCOLS.get(protocol)
    raise Undecodable(f"link_type_{link_type}")


def _need(frame: bytes, size: int) -> None:
    if len(frame) < size:
        raise Undecodable("truncated_link_header")


def _loopback_family(header: bytes, little_endian: bool) -> int:
    """The address family of a BSD loopback header, whichever byte order the writer used."""
    # scapy's Loopback layer reads the family in the host order of the BSD that wrote it.
    family = Loopback(header).type if little_endian else struct.unpack("!I", header)[0]
    if family > 0xFFFF:
        family = struct.unpack("!I" if little_endian else "<I", header)[0]
    return family


def _ethernet(frame: bytes, record: dict) -> tuple[bytes, int | None]:
    _need(frame, 14)
    ether = _fields(Ether, frame[:14])
    record["eth_dst"], record["eth_src"] = ether.dst, ether.src
    ethertype = struct.unpack("!H", frame[12:14])[0]
    offset = 14
    while ethertype in _VLAN_ETHERTYPES:
        _need(frame, offset + 4)
        tag = Dot1Q(frame[offset : offset + 4])
        if record["vlan_id"] == -1:
            record["vlan_id"] = tag.vlan
        ethertype = tag.type
        offset += 4
    if ethertype < 0x0600:  # an 802.3 length, not an EtherType
        return frame[offset:], None
    record["eth_type"] = ethertype
    return frame[offset:], ethertype


def _arp(data: bytes, record: dict) -> None:
    if len(data) < 8:
        raise _Stop("truncated_arp")
    try:
        arp = _fields(ARP, data)
    except struct.error:  # scapy wants every address; the fixed header is read all the same
        arp = _fields(ARP, data[:8] + bytes(2 * (data[4] + data[5])))
    record.update(
        arp_hwtype=arp.hwtype,
        arp_ptype=arp.ptype,
        arp_hwlen=arp.hwlen,
        arp_plen=arp.plen,
        arp_op=arp.op,
    )
    if arp.hwlen == 6 and arp.plen == 4:
        if len(data) < 28:
            raise _Stop("truncated_arp")
        record.update(
            arp_hwsrc=_colon_hex(arp.hwsrc),
            arp_psrc=_dotted(arp.psrc),
            arp_hwdst=_colon_hex(arp.hwdst),
            arp_pdst=_dotted(arp.pdst),
        )


# scapy gives ARP addresses as raw bytes when hwtype is not Ethernet or ptype is not IPv4; the
# record reads any 6-byte and 4-byte address as a MAC and an IPv4 address.
def _colon_hex(address: str | bytes) -> str:
    return address.hex(":") if isinstance(address, bytes) else address


def _dotted(address: str | bytes) -> str:
    return str(ipaddress.IPv4Address(address)) if isinstance(address, bytes) else address


def _link_flow(record: dict, ethertype: int) -> None:
    low, high = sorted((record["eth_src"], record["eth_dst"]))
    key = f"eth-{ethertype:04x} {low} {high}"
    _set_flow(record, key, 0 if record["eth_src"] == low else 1)


# Network layer -------------------------------------------------------------------------------


def _ipv4(data: bytes, record: dict, payload_bytes: int) -> None:
    if len(data) < 20:
        raise _Stop("truncated_ipv4")
    ip = _fields(IP, data)
    record.update(
        ip_version=ip.version,
        ip_ihl=ip.ihl,
        ip_tos=ip.tos,
        ip_len=ip.len,
        ip_id=ip.id,
        ip_flags=int(ip.flags),
        ip_frag=ip.frag,
        ip_ttl=ip.ttl,
        ip_proto=ip.proto,
        ip_src=ip.src,
        ip_dst=ip.dst,
    )
    if ip.ihl < 5:
        raise _Stop(f"malformed_ipv4:ihl={ip.ihl}")
    header_len = ip.ihl * 4
    record.update(
        ip_options_len=header_len - 20,
        l4_proto=ip.proto,
        ip_fragment=1 if ip.frag or int(ip.flags) & 1 else 0,
    )
    if len(data) < header_len:
        raise _Stop("truncated_ipv4")

    # A total length shorter than the header is what segmentation offload leaves behind;
    # the packet then runs to the end of the frame.
    end = ip.len if ip.len >= header_len else len(data)
    proto = -1 if ip.frag else ip.proto  # a later fragment starts with no transport header
    segment = data[header_len:end]
    _above_network(proto, segment, end - header_len, (ip.src, ip.dst), record, payload_bytes)


def _ipv6(data: bytes, record: dict, payload_bytes: int) -> None:
    if len(data) < 40:
        raise _Stop("truncated_ipv6")
    ip6 = _fields(IPv6, data)
    record.update(
        ipv6_version=ip6.version,
        ipv6_tc=ip6.tc,
        ipv6_fl=ip6.fl,
        ipv6_plen=ip6.plen,
        ipv6_nh=ip6.nh,
        ipv6_hlim=ip6.hlim,
        ipv6_src=ip6.src,
        ipv6_dst=ip6.dst,
    )
    end = 40 + ip6.plen if ip6.plen else len(data)
    offset, nh, fragment = 40, ip6.nh, 0
    seen: list[str] = []
    while nh in _IPV6_EXTENSIONS:
        if len(seen) == _MAX_IPV6_EXTENSIONS:
            raise _Stop("malformed_ipv6:too many extension headers")
        header = _dissect_extension(nh, data[offset:])
        seen.append(str(nh))
        offset += _extension_length(header)
        if isinstance(header, IPv6ExtHdrFragment):
            fragment = 1
            if header.offset:  # a later fragment starts with no transport header
                record["l4_proto"] = header.nh
                nh = -1
                break
        nh = header.nh
    else:
        record["l4_proto"] = nh
    record.update(ipv6_ext_headers="-".join(seen), ipv6_ext_count=len(seen))
    record["ip_fragment"] = fragment
    if offset > min(end, len(data)):
        raise _Stop("truncated_ipv6")

    segment = data[offset:end]
    declared = max(end - offset, 0)
    _above_network(nh, segment, declared, (ip6.src, ip6.dst), record, payload_bytes)


def _dissect_extension(nh: int, data: bytes) -> Packet:
    needed = 8 if nh == 44 else 2
    if len(data) < needed:
        raise _Stop("truncated_ipv6")
    try:
        return _fields(_IPV6_EXTENSIONS[nh], data)
    except Exception as err:  # scapy raises struct.error and others on a cut header
        raise _Stop("truncated_ipv6") from err


def _extension_length(header: Packet) -> int:
    if isinstance(header, IPv6ExtHdrFragment):
        return 8
    if isinstance(header, AH):
        return (header.payloadlen + 2) * 4
    return (header.len + 1) * 8


# Transport layer and above ------------------------------------------------------------------


def _above_network(
    proto: int,
    segment: bytes,
    declared: int,
    addresses: tuple[str, str],
    record: dict,
    payload_bytes: int,
) -> None:
    """Decode the transport header, the flow, the payload and DNS of one IP packet.

    ``segment`` holds the captured bytes of the IP payload; ``declared`` is its length by the
    IP header, which is larger than ``len(segment)`` when the capture was cut short.
    """
    ports, header_len = (0, 0), 0
    if proto == 6:
        ports, header_len = _tcp(segment, record)
    elif proto == 17:
        ports, header_len = _udp(segment, declared, record)
    elif proto == 1:
        _icmp(segment, record)
        header_len = 8
    elif proto == 58:
        _icmpv6(segment, record)
        header_len = 8

    _flow(record, addresses, ports)
    payload = segment[header_len:]
    _payload(record, payload, max(declared - header_len, 0), payload_bytes)
    if _DNS_PORT in ports:
        _dns_in(record, proto, payload, max(declared - header_len, 0))


def _tcp(segment: bytes, record: dict) -> tuple[tuple[int, int], int]:
    if len(segment) < 20:
        raise _Stop("truncated_tcp")
    tcp = _fields(TCP, segment[:20])  # the options are read one by one below
    flags = int(tcp.flags)
    record.update(
        tcp_sport=tcp.sport,
        tcp_dport=tcp.dport,
        tcp_seq=tcp.seq,
        tcp_ack=tcp.ack,
        tcp_dataofs=tcp.dataofs,
        tcp_flags=flags,
        tcp_window=tcp.window,
        tcp_urgptr=tcp.urgptr,
    )
    for bit, name in enumerate(("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")):
        record[f"tcp_flag_{name}"] = flags >> bit & 1
    if tcp.dataofs < 5:
        raise _Stop(f"malformed_tcp:dataofs={tcp.dataofs}")
    header_len = tcp.dataofs * 4
    _tcp_options(tcp, segment[20:header_len], header_len - 20, record)
    return (tcp.sport, tcp.dport), header_len


def _tcp_options(tcp: Packet, captured: bytes, declared: int, record: dict) -> None:
    """The options scapy reads, up to the first malformed one (which scapy would read past)."""
    chunks, problem = _split_options(captured)
    if len(captured) < declared:
        problem = "truncated_tcp"
    parser = tcp.get_field("options")
    mss = wscale = -1
    sackok = timestamp = nops = 0
    for chunk in chunks:
        try:
            ((name, value),) = parser.m2i(tcp, chunk)
        except Exception:  # scapy fails on some short option values (TCP-AO); none kept here
            continue
        if name == "NOP":
            nops += 1
        elif name == "MSS" and isinstance(value, int):
            mss = value
        elif name == "WScale" and isinstance(value, int):
            wscale = value
        elif name == "SAckOK":
            sackok = 1
        elif name == "Timestamp":
            timestamp = 1
    record.update(
        tcp_opt_mss=mss,
        tcp_opt_wscale=wscale,
        tcp_opt_sackok=sackok,
        tcp_opt_timestamp=timestamp,
        tcp_opt_nop_count=nops,
    )
    if problem:
        record["decode_error"] = problem


def _split_options(options: bytes) -> tuple[list[bytes], str]:
    """The bytes of each option before the end of the list or the first impossible length."""
    chunks: list[bytes] = []
    pos = 0
    while pos < len(options):
        kind = options[pos]
        if kind == 0:
            break
        if kind == 1:
            chunks.append(options[pos : pos + 1])
            pos += 1
            continue
        length = options[pos + 1] if pos + 1 < len(options) else 0
        if length < 2 or pos + length > len(options):
            return chunks, "malformed_tcp:option length"
        chunks.append(options[pos : pos + length])
        pos += length
    return chunks, ""


def _udp(segment: bytes, declared: int, record: dict) -> tuple[tuple[int, int], int]:
    if len(segment) < 8:
        raise _Stop("truncated_udp")
    udp = _fields(UDP, segment)
    record.update(udp_sport=udp.sport, udp_dport=udp.dport, udp_len=udp.len)
    if udp.len != declared and not record["ip_fragment"]:  # a fragment holds part of it
        raise _Stop(f"malformed_udp:length {udp.len} in an IP payload of {declared}")
    return (udp.sport, udp.dport), 8


def _icmp(segment: bytes, record: dict) -> None:
    if len(segment) < 8:
        raise _Stop("truncated_icmp")
    try:
        icmp = _fields(ICMP, segment)
    except struct.error:
        # A timestamp message (type 13 or 14) cut after its first 8 bytes: scapy wants the
        # timestamps too, which the record does not keep, so read the first 8 bytes alone.
        icmp = _fields(ICMP, segment[:8] + bytes(12))
    record.update(icmp_type=icmp.type, icmp_code=icmp.code)
    if icmp.type in _ICMP_TYPES_WITH_ID:
        record.update(icmp_id=icmp.id, icmp_seq=icmp.seq)


def _icmpv6(segment: bytes, record: dict) -> None:
    if len(segment) < 8:
        raise _Stop("truncated_icmpv6")
    # scapy's class for unknown types reads the type and code every message starts with; not
    # every type-specific class calls its second byte "code".
    header = _fields(ICMPv6Unknown, segment)
    record.update(icmpv6_type=header.type, icmpv6_code=header.code)
    if header.type in _ICMPV6_ECHO_TYPES:
        echo = _fields(ICMPv6EchoRequest, segment)  # a reply has the same layout
        record.update(icmpv6_id=echo.id, icmpv6_seq=echo.seq)


# Flow, payload and DNS -----------------------------------------------------------------------


def _flow(record: dict, addresses: tuple[str, str], ports: tuple[int, int]) -> None:
    # Endpoints order by address bytes, then port; the text is scapy's (inet_ntop's) spelling.
    src, dst = (
        (ipaddress.ip_address(text).packed, port, text)
        for text, port in zip(addresses, ports, strict=True)
    )
    low, high = sorted((src, dst))

    def endpoint(side: tuple[bytes, int, str]) -> str:
        packed, port, text = side
        return f"[{text}]:{port}" if len(packed) == 16 else f"{text}:{port}"

    key = f"{record['l4_proto']} {endpoint(low)} {endpoint(high)}"
    _set_flow(record, key, 0 if src <= dst else 1)


def _set_flow(record: dict, key: str, direction: int) -> None:
    record["flow_key"] = key
    record["flow_id"] = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
    record["flow_dir"] = direction


def _payload(record: dict, data: bytes, declared: int, payload_bytes: int) -> None:
    record["payload_len"] = declared
    record["payload_hex"] = data[:payload_bytes].hex()
    if not data:
        record["payload_entropy"] = record["payload_printable"] = 0.0
        return
    shares = [count / len(data) for count in Counter(data).values()]
    entropy = -sum(share * math.log2(share) for share in shares)
    record["payload_entropy"] = round(max(entropy, 0.0), 4)
    record["payload_printable"] = round(sum(b in _PRINTABLE for b in data) / len(data), 4)


def _dns_in(record: dict, proto: int, payload: bytes, declared: int) -> None:
    """DNS in the captured ``payload`` of a TCP or UDP packet whose payload is ``declared`` long."""
    message = payload
    if proto == 6:
        # Only a segment holding exactly one length-prefixed message is read as DNS.
        if len(payload) < 14 or struct.unpack("!H", payload[:2])[0] != len(payload) - 2:
            return
        message = payload[2:]
    if len(message) >= 12:
        _dns(message, record)
    elif proto == 17 and declared >= 12:  # the capture ends inside the DNS header
        raise _Stop("truncated_dns")


def _dns(message: bytes, record: dict) -> None:
    header = DNS(message[:12])  # the header alone: the questions are checked first
    record.update(
        dns_id=header.id,
        dns_qr=header.qr,
        dns_opcode=header.opcode,
        dns_aa=header.aa,
        dns_tc=header.tc,
        dns_rd=header.rd,
        dns_ra=header.ra,
        dns_z=header.z,
        dns_ad=header.ad,
        dns_cd=header.cd,
        dns_rcode=header.rcode,
        dns_qdcount=header.qdcount,
        dns_ancount=header.ancount,
        dns_nscount=header.nscount,
        dns_arcount=header.arcount,
    )
    if header.qdcount == 0:
        return
    problem, after, dots_in_labels = _dns_name_problem(message, 12)
    if problem:
        raise _Stop(problem)
    if after + 4 > len(message):  # the question's type and class follow its name
        raise _Stop("truncated_dns")
    question = DNS(message).qd[0]
    name = question.qname
    record.update(
        dns_qname_len=max(len(name) - 1, 0),
        dns_qname_labels=len([label for label in name.split(b".") if label]),
        dns_qtype=question.qtype,
    )
    if dots_in_labels:
        # Limitation: scapy joins labels with dots, so a label that itself holds a '.' byte
        # reads as two labels here, while the fast decoder counts the length bytes. The name
        # is marked so that comparisons leave it out.
        record["decode_error"] = "reference_limit:dns label holding a dot"


def _dns_name_problem(message: bytes, pos: int) -> tuple[str, int, bool]:
    """What is wrong with the name at ``pos``, where its question goes on, any dotted label.

    scapy reads past a broken name silently, so its structure is checked here first: the
    problem ("" for none), the position after the name, and whether a label holds a '.'.
    """
    after, dots = -1, False
    visited: set[int] = set()
    while True:
        if pos >= len(message):
            return "truncated_dns", after, dots
        size = message[pos]
        if size == 0:
            return "", after if after >= 0 else pos + 1, dots
        if size & 0xC0 == 0xC0:
            if pos + 1 >= len(message):
                return "truncated_dns", after, dots
            if after < 0:
                after = pos + 2
            pos = (size & 0x3F) << 8 | message[pos + 1]
            if pos in visited or len(visited) == _MAX_DNS_POINTERS:
                return "malformed_dns:dns name pointer loop", after, dots
            visited.add(pos)
            continue
        if size & 0xC0:
            return "malformed_dns:dns label type", after, dots
        dots = dots or b"." in message[pos + 1 : pos + 1 + size]
        pos += 1 + size
