"""Fast decoding of raw frame bytes into packet records, with ``struct`` and no dissection.

This is the sensor's hot path. scapy's full dissection (``capture.reference``) is the slow
reference that the tests hold this decoder to.
"""

from __future__ import annotations

import hashlib
import math
import socket
import struct

import numpy as np

from capture.schema import INDEX, MISSING, empty_record

# Link-layer header types (pcap LINKTYPE_* numbers) this decoder reads.
LINK_NULL = 0
LINK_ETHERNET = 1
LINK_PPP = 9
LINK_RAW_ALIASES = (12, 14, 101, 228, 229)
LINK_C_HDLC = 104
LINK_LOOP = 108
LINK_LINUX_SLL = 113
LINK_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
_PPP_TO_ETHERTYPE = {0x0021: ETH_IPV4, 0x0057: ETH_IPV6}
# Cisco HDLC unicast and broadcast addresses. Both are odd, which the first byte of a PPP
# protocol number never is, so they tell Cisco HDLC frames apart under the PPP link type.
_C_HDLC_ADDRESSES = (0x0F, 0x8F)
_BSD_AF_INET6 = (10, 24, 28, 30)

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
_IPV6_EXT_8 = (0, 43, 60, 135, 139, 140)  # length in 8-octet units, not counting the first 8
_IPV6_FRAG = 44
_IPV6_AH = 51
_MAX_EXT_HEADERS = 16
_ICMP_WITH_ID = (0, 8, 13, 14, 15, 16, 17, 18)
_ICMPV6_WITH_ID = (128, 129)
DNS_PORT = 53

_U16 = struct.Struct("!H").unpack_from
_ETH = struct.Struct("!H").unpack_from
_ARP = struct.Struct("!HHBBH").unpack_from
_IPV4 = struct.Struct("!BBHHHBB").unpack_from
_IPV6 = struct.Struct("!IHBB").unpack_from
_TCP = struct.Struct("!HHIIHHxxH").unpack_from
_UDP = struct.Struct("!HHH").unpack_from
_ICMP = struct.Struct("!BB").unpack_from
_ICMP_ID = struct.Struct("!HH").unpack_from
_DNS = struct.Struct("!HHHHHH").unpack_from

_PRINTABLE = bytes([9, 10, 13, *range(32, 127)])
# c * log2(c) for every count a captured payload can reach, so entropy is a table lookup.
_MAX_CAPTURE = 1 << 18
_C_LOG_C = np.zeros(_MAX_CAPTURE + 1)
_C_LOG_C[1:] = np.arange(1, _MAX_CAPTURE + 1) * np.log2(np.arange(1, _MAX_CAPTURE + 1))

# Record positions, looked up once: the decoder writes fields by position.
_I = INDEX
TS_NS, LINK_TYPE, DECODE_ERROR = _I["ts_ns"], _I["link_type"], _I["decode_error"]
FRAME_LEN, FRAME_CAPLEN = _I["frame_len"], _I["frame_caplen"]
ETH_SRC, ETH_DST, ETH_TYPE, VLAN_ID = _I["eth_src"], _I["eth_dst"], _I["eth_type"], _I["vlan_id"]
ARP_FIRST, ARP_HWSRC = _I["arp_hwtype"], _I["arp_hwsrc"]
IP_FIRST, IP_ID, IP_FLAGS, IP_SRC = _I["ip_version"], _I["ip_id"], _I["ip_flags"], _I["ip_src"]
IP_OPTIONS_LEN = _I["ip_options_len"]
IPV6_FIRST, IPV6_SRC, IPV6_EXT = _I["ipv6_version"], _I["ipv6_src"], _I["ipv6_ext_headers"]
L4_PROTO, IP_FRAGMENT = _I["l4_proto"], _I["ip_fragment"]
TCP_FIRST, TCP_DATAOFS, TCP_OPT_MSS = _I["tcp_sport"], _I["tcp_dataofs"], _I["tcp_opt_mss"]
UDP_FIRST, ICMP_FIRST, ICMPV6_FIRST = _I["udp_sport"], _I["icmp_type"], _I["icmpv6_type"]
DNS_FIRST, DNS_QNAME_LEN = _I["dns_id"], _I["dns_qname_len"]
PAYLOAD_LEN, PAYLOAD_HEX = _I["payload_len"], _I["payload_hex"]
FLOW_KEY, FLOW_ID, FLOW_DIR = _I["flow_key"], _I["flow_id"], _I["flow_dir"]


class Undecodable(Exception):
    """The frame yields no record at all; ``reason`` is a short label for the metric."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Malformed(Exception):
    """A header is present but its values are impossible; decoding stops there."""


class FrameDecoder:
    """Turns (frame bytes, link type, timestamp, wire length) into a packet record list.

    The record keeps what could be decoded; ``decode_error`` names the layer where decoding
    stopped on a truncated or malformed header.
    """

    def __init__(self, iface: str = "", payload_bytes: int = 16) -> None:
        self.payload_bytes = payload_bytes
        self._template = empty_record()
        self._template[_I["iface"]] = iface[:32]  # the width of the iface column

    def decode(self, frame: bytes, link_type: int, ts_ns: int, wire_len: int) -> list:
        rec = self._template[:]
        rec[TS_NS] = ts_ns
        rec[LINK_TYPE] = link_type
        rec[FRAME_LEN] = wire_len
        rec[FRAME_CAPLEN] = len(frame)
        try:
            offset, ethertype = self._link(frame, link_type, rec)
        except (struct.error, IndexError) as err:
            raise Undecodable("truncated_link_header") from err

        stage = "network"
        try:
            net = None
            if ethertype == ETH_IPV4:
                stage = "ipv4"
                net = self._ipv4(frame, offset, rec)
            elif ethertype == ETH_IPV6:
                stage = "ipv6"
                net = self._ipv6(frame, offset, rec)
            elif ethertype == ETH_ARP:
                stage = "arp"
                self._arp(frame, offset, rec)
            if net is not None:
                proto, start, end, src, dst = net
                stage = _STAGE.get(proto, "ip_payload")
                sport, dport, payload_start = self._transport(frame, proto, start, end, rec)
                self._flow(rec, src, dst, sport, dport)
                if sport == DNS_PORT or dport == DNS_PORT:
                    # After the flow: a broken DNS message still belongs to a known flow.
                    stage = "dns"
                    self._dns_in(frame, proto, payload_start, end, rec)
            elif ethertype is not None and rec[ETH_SRC]:
                self._link_flow(rec, ethertype)
        except (struct.error, IndexError):
            rec[DECODE_ERROR] = f"truncated_{stage}"
        except _Malformed as err:
            rec[DECODE_ERROR] = f"malformed_{stage}:{err}"
        return rec

    # Link layer -----------------------------------------------------------------------------

    def _link(self, frame: bytes, link_type: int, rec: list) -> tuple[int, int | None]:
        """Return the offset of the network header and its EtherType (None: not IP/ARP)."""
        if link_type == LINK_ETHERNET:
            return self._ethernet(frame, rec)
        if link_type in LINK_RAW_ALIASES:
            return 0, _ethertype_of_version(frame[0] >> 4)
        if link_type == LINK_LINUX_SLL:
            return 16, _ETH(frame, 14)[0]
        if link_type == LINK_LINUX_SLL2:
            if len(frame) < 20:
                raise IndexError("sll2 header cut")
            return 20, _ETH(frame, 0)[0]
        if link_type in (LINK_NULL, LINK_LOOP):
            family = struct.unpack_from("<I" if link_type == LINK_NULL else "!I", frame, 0)[0]
            if family > 0xFFFF:  # written on a host of the other byte order
                family = struct.unpack_from(">I" if link_type == LINK_NULL else "<I", frame)[0]
            if family == 2:
                return 4, ETH_IPV4
            return 4, ETH_IPV6 if family in _BSD_AF_INET6 else None
        if link_type == LINK_PPP:
            if frame[0] in _C_HDLC_ADDRESSES:  # some routers write Cisco HDLC as PPP
                return 4, _ETH(frame, 2)[0]
            offset = 2 if frame[0] == 0xFF and frame[1] == 0x03 else 0
            return offset + 2, _PPP_TO_ETHERTYPE.get(_U16(frame, offset)[0])
        if link_type == LINK_C_HDLC:
            return 4, _ETH(frame, 2)[0]
        raise Undecodable(f"link_type_{link_type}")

    def _ethernet(self, frame: bytes, rec: list) -> tuple[int, int | None]:
        ethertype = _ETH(frame, 12)[0]
        rec[ETH_DST] = frame[0:6].hex(":")
        rec[ETH_SRC] = frame[6:12].hex(":")
        offset = 14
        if ethertype in _VLAN_TAGS:
            rec[VLAN_ID] = _U16(frame, 14)[0] & 0x0FFF
            while ethertype in _VLAN_TAGS:
                ethertype = _U16(frame, offset + 2)[0]
                offset += 4
        if ethertype < 0x0600:  # an 802.3 length field: LLC follows, no EtherType
            return offset, None
        rec[ETH_TYPE] = ethertype
        return offset, ethertype

    def _arp(self, frame: bytes, offset: int, rec: list) -> None:
        hwtype, ptype, hwlen, plen, op = _ARP(frame, offset)
        rec[ARP_FIRST : ARP_FIRST + 5] = (hwtype, ptype, hwlen, plen, op)
        if hwlen == 6 and plen == 4:
            body = frame[offset + 8 : offset + 28]
            if len(body) < 20:
                raise IndexError("arp addresses cut")
            rec[ARP_HWSRC : ARP_HWSRC + 4] = (
                body[0:6].hex(":"),
                socket.inet_ntoa(body[6:10]),
                body[10:16].hex(":"),
                socket.inet_ntoa(body[16:20]),
            )

    # Network layer --------------------------------------------------------------------------

    def _ipv4(self, frame: bytes, offset: int, rec: list) -> tuple[int, int, int, bytes, bytes]:
        first, tos, total_len, ident, flags_frag, ttl, proto = _IPV4(frame, offset)
        version, ihl = first >> 4, first & 0x0F
        src, dst = frame[offset + 12 : offset + 16], frame[offset + 16 : offset + 20]
        if len(dst) < 4:
            raise IndexError("ipv4 addresses cut")
        flags, frag = flags_frag >> 13, flags_frag & 0x1FFF
        rec[IP_FIRST : IP_FIRST + 4] = (version, ihl, tos, total_len)
        rec[IP_ID] = ident
        rec[IP_FLAGS : IP_FLAGS + 4] = (flags, frag, ttl, proto)
        rec[IP_SRC] = socket.inet_ntoa(src)
        rec[IP_SRC + 1] = socket.inet_ntoa(dst)
        if ihl < 5:
            raise _Malformed(f"ihl={ihl}")
        rec[IP_OPTIONS_LEN] = ihl * 4 - 20
        rec[L4_PROTO] = proto
        fragmented = frag > 0 or flags & 1
        rec[IP_FRAGMENT] = 1 if fragmented else 0
        start = offset + ihl * 4
        if start > len(frame):
            raise IndexError("ipv4 options cut")
        # A zero total length is what segmentation offload leaves in captured packets.
        end = offset + total_len if total_len >= ihl * 4 else len(frame)
        if frag > 0:
            return -1, start, end, src, dst  # a later fragment carries no transport header
        return proto, start, end, src, dst

    def _ipv6(self, frame: bytes, offset: int, rec: list) -> tuple[int, int, int, bytes, bytes]:
        first, plen, nh, hlim = _IPV6(frame, offset)
        src, dst = frame[offset + 8 : offset + 24], frame[offset + 24 : offset + 40]
        if len(dst) < 16:
            raise IndexError("ipv6 addresses cut")
        rec[IPV6_FIRST : IPV6_FIRST + 6] = (
            first >> 28,
            (first >> 20) & 0xFF,
            first & 0xFFFFF,
            plen,
            nh,
            hlim,
        )
        rec[IPV6_SRC] = socket.inet_ntop(socket.AF_INET6, src)
        rec[IPV6_SRC + 1] = socket.inet_ntop(socket.AF_INET6, dst)
        start = offset + 40
        end = start + plen if plen else len(frame)
        seen: list[str] = []
        fragment = 0
        while nh in _IPV6_EXT_8 or nh in (_IPV6_FRAG, _IPV6_AH):
            if len(seen) == _MAX_EXT_HEADERS:
                raise _Malformed("too many extension headers")
            seen.append(str(nh))
            next_nh, hdr_len = frame[start], frame[start + 1]
            if nh == _IPV6_FRAG:
                fragment = 1
                frag_offset = _U16(frame, start + 2)[0] >> 3
                start += 8
                if frag_offset:  # a later fragment carries no transport header
                    rec[L4_PROTO] = next_nh
                    nh = -1
                    break
            elif nh == _IPV6_AH:
                start += (hdr_len + 2) * 4
            else:
                start += (hdr_len + 1) * 8
            nh = next_nh
        else:
            rec[L4_PROTO] = nh
        rec[IPV6_EXT] = "-".join(seen)
        rec[IPV6_EXT + 1] = len(seen)
        rec[IP_FRAGMENT] = fragment
        if start > end or start > len(frame):
            raise IndexError("ipv6 extension header cut")
        return nh, start, end, src, dst

    # Transport layer ------------------------------------------------------------------------

    def _transport(
        self, frame: bytes, proto: int, start: int, end: int, rec: list
    ) -> tuple[int, int, int]:
        """Decode TCP, UDP, ICMP or ICMPv6 at ``start``, then the payload up to ``end``.

        Returns the ports (zero for protocols without them) and where the payload starts.
        A header that runs past ``end`` is cut, even where the frame goes on with padding.
        """
        sport = dport = 0
        payload_start = start
        if proto == PROTO_TCP:
            if start + 20 > end:
                raise IndexError("tcp header cut")
            sport, dport, seq, ack, offset_flags, window, urgptr = _TCP(frame, start)
            dataofs, flags = offset_flags >> 12, offset_flags & 0x01FF
            rec[TCP_FIRST : TCP_FIRST + 5] = (sport, dport, seq, ack, dataofs)
            rec[TCP_DATAOFS + 1 : TCP_DATAOFS + 12] = (
                flags,
                flags & 1,
                flags >> 1 & 1,
                flags >> 2 & 1,
                flags >> 3 & 1,
                flags >> 4 & 1,
                flags >> 5 & 1,
                flags >> 6 & 1,
                flags >> 7 & 1,
                window,
                urgptr,
            )
            if dataofs < 5:
                raise _Malformed(f"dataofs={dataofs}")
            payload_start = start + dataofs * 4
            self._tcp_options(frame, start + 20, payload_start, min(end, len(frame)), rec)
        elif proto == PROTO_UDP:
            if start + 8 > end or start + 8 > len(frame):
                raise IndexError("udp header cut")
            sport, dport, length = _UDP(frame, start)
            rec[UDP_FIRST : UDP_FIRST + 3] = (sport, dport, length)
            payload_start = start + 8
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            first = ICMP_FIRST if proto == PROTO_ICMP else ICMPV6_FIRST
            with_id = _ICMP_WITH_ID if proto == PROTO_ICMP else _ICMPV6_WITH_ID
            if start + 8 > end or start + 8 > len(frame):
                raise IndexError("icmp header cut")
            icmp_type, code = _ICMP(frame, start)
            rec[first : first + 2] = (icmp_type, code)
            if icmp_type in with_id:
                rec[first + 2 : first + 4] = _ICMP_ID(frame, start + 4)
            payload_start = start + 8
        if payload_start > end:
            payload_start = end
        self._payload(frame, payload_start, end, rec)
        return sport, dport, payload_start

    def _dns_in(self, frame: bytes, proto: int, start: int, end: int, rec: list) -> None:
        """Decode the DNS message between ``start`` and ``end``, the end of the IP packet."""
        limit = min(end, len(frame))
        if proto == PROTO_TCP:
            # Limitation: a DNS message split over several TCP segments is not reassembled;
            # only a segment that holds one whole length-prefixed message is decoded.
            if limit - start < 14 or _U16(frame, start)[0] != limit - start - 2:
                return
            start += 2
        if limit - start >= 12:
            self._dns(frame, start, limit, rec)
        elif end - start >= 12:  # a header is there, but the capture ends inside it
            raise IndexError("dns header cut")

    def _tcp_options(self, frame: bytes, pos: int, end: int, limit: int, rec: list) -> None:
        """Read the options between ``pos`` and ``end``, the end of the TCP header.

        ``limit`` is where the IP packet's captured bytes end. A cut or malformed option list
        is named in ``decode_error`` without raising: the options read so far, the payload and
        the flow are still good.
        """
        mss = wscale = MISSING
        sackok = timestamp = nops = 0
        problem = ""
        if end > limit:
            end = limit
            problem = "truncated_tcp"
        while pos < end:
            kind = frame[pos]
            if kind == 0:
                break
            if kind == 1:
                nops += 1
                pos += 1
                continue
            length = frame[pos + 1] if pos + 1 < end else 0
            if length < 2 or pos + length > end:
                # A malformed option hides the rest; keep what was read.
                problem = problem or "malformed_tcp:option length"
                break
            if kind == 2 and length == 4:
                mss = _U16(frame, pos + 2)[0]
            elif kind == 3 and length == 3:
                wscale = frame[pos + 2]
            elif kind == 4:
                sackok = 1
            elif kind == 8:
                timestamp = 1
            pos += length
        rec[TCP_OPT_MSS : TCP_OPT_MSS + 5] = (mss, wscale, sackok, timestamp, nops)
        if problem:
            rec[DECODE_ERROR] = problem

    def _payload(self, frame: bytes, start: int, end: int, rec: list) -> None:
        rec[PAYLOAD_LEN] = end - start
        data = frame[start:end]
        size = len(data)
        if size == 0:
            rec[PAYLOAD_LEN + 1 : PAYLOAD_LEN + 4] = (0.0, 0.0, "")
            return
        counts = np.bincount(np.frombuffer(data, dtype=np.uint8))
        entropy = math.log2(size) - float(_C_LOG_C[counts].sum()) / size
        printable = (size - len(data.translate(None, _PRINTABLE))) / size
        rec[PAYLOAD_LEN + 1] = round(max(entropy, 0.0), 4)
        rec[PAYLOAD_LEN + 2] = round(printable, 4)
        rec[PAYLOAD_HEX] = data[: self.payload_bytes].hex()

    def _dns(self, frame: bytes, start: int, end: int, rec: list) -> None:
        ident, flags, qd, an, ns, ar = _DNS(frame, start)
        rec[DNS_FIRST : DNS_FIRST + 16] = (
            ident,
            flags >> 15,
            flags >> 11 & 0x0F,
            flags >> 10 & 1,
            flags >> 9 & 1,
            flags >> 8 & 1,
            flags >> 7 & 1,
            flags >> 6 & 1,
            flags >> 5 & 1,
            flags >> 4 & 1,
            flags & 0x0F,
            qd,
            an,
            ns,
            ar,
            MISSING,
        )
        if qd == 0:
            return
        name_len, labels, after = _dns_name(frame, start, start + 12, end)
        if after + 4 > end:  # the question's type and class follow its name
            raise IndexError("dns question cut")
        rec[DNS_QNAME_LEN : DNS_QNAME_LEN + 3] = (name_len, labels, _U16(frame, after)[0])

    # Flow -----------------------------------------------------------------------------------

    def _flow(self, rec: list, src: bytes, dst: bytes, sport: int, dport: int) -> None:
        if (src, sport) <= (dst, dport):
            lo, lo_port, hi, hi_port, direction = src, sport, dst, dport, 0
        else:
            lo, lo_port, hi, hi_port, direction = dst, dport, src, sport, 1
        proto = rec[L4_PROTO]
        if len(src) == 4:
            key = f"{proto} {socket.inet_ntoa(lo)}:{lo_port} {socket.inet_ntoa(hi)}:{hi_port}"
        else:
            lo_text = socket.inet_ntop(socket.AF_INET6, lo)
            hi_text = socket.inet_ntop(socket.AF_INET6, hi)
            key = f"{proto} [{lo_text}]:{lo_port} [{hi_text}]:{hi_port}"
        rec[FLOW_KEY] = key
        rec[FLOW_ID] = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        rec[FLOW_DIR] = direction

    def _link_flow(self, rec: list, ethertype: int) -> None:
        src, dst = rec[ETH_SRC], rec[ETH_DST]
        lo, hi, direction = (src, dst, 0) if src <= dst else (dst, src, 1)
        key = f"eth-{ethertype:04x} {lo} {hi}"
        rec[FLOW_KEY] = key
        rec[FLOW_ID] = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        rec[FLOW_DIR] = direction


_STAGE = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmpv6"}


def _ethertype_of_version(version: int) -> int | None:
    return {4: ETH_IPV4, 6: ETH_IPV6}.get(version)


def _dns_name(frame: bytes, message: int, pos: int, end: int) -> tuple[int, int, int]:
    """Read a DNS name at ``pos``: (dotted length, label count, position after the name)."""
    length = labels = jumps = 0
    after = -1
    while True:
        if pos >= end:
            raise IndexError("dns name cut")
        size = frame[pos]
        if size == 0:
            pos += 1
            break
        if size & 0xC0 == 0xC0:
            if pos + 1 >= end:
                raise IndexError("dns pointer cut")
            jumps += 1
            if jumps > 32:
                raise _Malformed("dns name pointer loop")
            if after < 0:
                after = pos + 2
            pos = message + ((size & 0x3F) << 8 | frame[pos + 1])
            continue
        if size & 0xC0:
            raise _Malformed("dns label type")
        labels += 1
        length += size + (1 if labels > 1 else 0)
        pos += 1 + size
    return length, labels, after if after >= 0 else pos
