"""Reference decoding of a frame through scapy's full dissection, the yardstick for the fast one.

``reference_record`` fills the same fields as ``capture.decode.FrameDecoder`` but reads every
header value from a scapy layer and every length from the headers' own length fields. It is
written for clarity, not speed, and shares no parsing code with the fast decoder, so that the
tests comparing the two catch a mistake in either.

Where the input is malformed the reference is stricter than the fast decoder: it also reports
length fields that disagree with each other (a UDP length that does not match the IP length, a
TCP header that runs past the end of its IP packet), which the fast decoder takes on trust.
Records whose reference ``decode_error`` is empty are the ones both must agree on exactly.
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
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6Unknown,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    icmp6typescls,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1Q, Ether, Loopback
from scapy.packet import Packet, Raw

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
_DNS_PORT = 53
_MAX_DNS_POINTERS = 20  # scapy's own limit when it decompresses a name
_PRINTABLE = {9, 10, 13, *range(32, 127)}


class _Stop(Exception):
    """Decoding ends here; the message becomes the record's ``decode_error``."""


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
    if link_type == 9:
        start = 2 if frame[:2] == b"\xff\x03" else 0
        _need(frame, start + 2)
        protocol = struct.unpack("!H", frame[start : start + 2])[0]
        return frame[start + 2 :], _PPP_PROTOCOLS.get(protocol)
    if link_type == 104:
        _need(frame, 4)
        return frame[4:], struct.unpack("!H", frame[2:4])[0]
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
    ether = Ether(frame)  # scapy turns it into Dot3 when the type field is a length
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
    arp = ARP(data)
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
            arp_hwsrc=arp.hwsrc, arp_psrc=arp.psrc, arp_hwdst=arp.hwdst, arp_pdst=arp.pdst
        )


def _link_flow(record: dict, ethertype: int) -> None:
    low, high = sorted((record["eth_src"], record["eth_dst"]))
    key = f"eth-{ethertype:04x} {low} {high}"
    _set_flow(record, key, 0 if record["eth_src"] == low else 1)


# Network layer -------------------------------------------------------------------------------


def _ipv4(data: bytes, record: dict, payload_bytes: int) -> None:
    if len(data) < 20:
        raise _Stop("truncated_ipv4")
    ip = IP(data)
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
    ip6 = IPv6(data)
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
    offset, nh, seen, fragment = 40, ip6.nh, [], 0
    try:
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
    finally:
        record.update(ipv6_ext_headers="-".join(seen), ipv6_ext_count=len(seen))
        record["ip_fragment"] = fragment
    if offset > len(data):
        raise _Stop("truncated_ipv6")

    segment = data[offset:end]
    declared = max(end - offset, 0)
    _above_network(nh, segment, declared, (ip6.src, ip6.dst), record, payload_bytes)


def _dissect_extension(nh: int, data: bytes) -> Packet:
    needed = 8 if nh == 44 else 2
    if len(data) < needed:
        raise _Stop("truncated_ipv6")
    try:
        return _IPV6_EXTENSIONS[nh](data)
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
        _dns_in(record, proto, payload)


def _tcp(segment: bytes, record: dict) -> tuple[tuple[int, int], int]:
    if len(segment) < 20:
        raise _Stop("truncated_tcp")
    tcp = TCP(segment)
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


def _tcp_options(tcp: TCP, captured: bytes, declared: int, record: dict) -> None:
    """Options scapy parsed, up to the first malformed one (which scapy would read past)."""
    usable, problem = _well_formed_options(captured)
    if len(captured) < declared:
        problem = "truncated_tcp"
    mss = wscale = -1
    sackok = timestamp = nops = 0
    for name, value in tcp.options[:usable]:
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


def _well_formed_options(options: bytes) -> tuple[int, str]:
    """How many options come before the first one whose length is impossible, and why."""
    count = pos = 0
    while pos < len(options):
        kind = options[pos]
        if kind == 0:
            return count + 1, ""
        if kind == 1:
            count, pos = count + 1, pos + 1
            continue
        length = options[pos + 1] if pos + 1 < len(options) else 0
        if length < 2 or pos + length > len(options):
            return count, "malformed_tcp:option length"
        count, pos = count + 1, pos + length
    return count, ""


def _udp(segment: bytes, declared: int, record: dict) -> tuple[tuple[int, int], int]:
    if len(segment) < 8:
        raise _Stop("truncated_udp")
    udp = UDP(segment)
    record.update(udp_sport=udp.sport, udp_dport=udp.dport, udp_len=udp.len)
    if udp.len != declared:
        raise _Stop(f"malformed_udp:length {udp.len} in an IP payload of {declared}")
    return (udp.sport, udp.dport), 8


def _icmp(segment: bytes, record: dict) -> None:
    if len(segment) < 8:
        raise _Stop("truncated_icmp")
    icmp = ICMP(segment)
    record.update(icmp_type=icmp.type, icmp_code=icmp.code)
    if icmp.type in _ICMP_TYPES_WITH_ID:
        record.update(icmp_id=icmp.id, icmp_seq=icmp.seq)


def _icmpv6(segment: bytes, record: dict) -> None:
    if len(segment) < 8:
        raise _Stop("truncated_icmpv6")
    message_class = icmp6typescls.get(segment[0], Raw)
    if message_class is Raw:  # node information queries, and types scapy does not know
        message_class = ICMPv6Unknown
    try:
        icmp6 = message_class(segment)
    except Exception:  # a message too short for its type's class: its first bytes still count
        icmp6 = ICMPv6Unknown(segment)
    record.update(icmpv6_type=icmp6.type, icmpv6_code=icmp6.code)
    if isinstance(icmp6, ICMPv6EchoRequest | ICMPv6EchoReply):
        record.update(icmpv6_id=icmp6.id, icmpv6_seq=icmp6.seq)


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


def _dns_in(record: dict, proto: int, payload: bytes) -> None:
    message = payload
    if proto == 6:
        # Only a segment holding exactly one length-prefixed message is read as DNS.
        if len(payload) < 14 or struct.unpack("!H", payload[:2])[0] != len(payload) - 2:
            return
        message = payload[2:]
    if len(message) >= 12:
        _dns(message, record)


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
    problem, after = _dns_name_problem(message, 12)
    if problem:
        raise _Stop(problem)
    if after + 2 > len(message):
        raise _Stop("truncated_dns")
    question = DNS(message).qd[0]
    name = question.qname
    # Limitation: scapy joins labels with dots, so a label that itself holds a '.' byte is
    # counted as two labels here; the fast decoder counts the length bytes instead.
    record.update(
        dns_qname_len=max(len(name) - 1, 0),
        dns_qname_labels=len([label for label in name.split(b".") if label]),
        dns_qtype=question.qtype,
    )


def _dns_name_problem(message: bytes, pos: int) -> tuple[str, int]:
    """Whether the name at ``pos`` can be read whole, and where the question goes on after it.

    scapy reads past a broken name silently, so its structure is checked here first.
    """
    after, visited = -1, set()
    while True:
        if pos >= len(message):
            return "truncated_dns", after
        size = message[pos]
        if size == 0:
            return "", after if after >= 0 else pos + 1
        if size & 0xC0 == 0xC0:
            if pos + 1 >= len(message):
                return "truncated_dns", after
            if after < 0:
                after = pos + 2
            pos = (size & 0x3F) << 8 | message[pos + 1]
            if pos in visited or len(visited) == _MAX_DNS_POINTERS:
                return "malformed_dns:dns name pointer loop", after
            visited.add(pos)
            continue
        if size & 0xC0:
            return "malformed_dns:dns label type", after
        pos += 1 + size
