"""Context features: damped statistics of each packet's source host, host pair and flow.

One SYN of a port scan looks like any other SYN; what tells it apart is the source's recent
behaviour. For every packet this module updates exponentially damped counters (half-lives
0.1 s, 1 s, 10 s, 60 s) of its source host and its directed host pair, plus running counts of
its flow, and writes the results into the record's ``ctx_*`` fields. The work per packet is a
fixed number of float operations and dictionary lookups; the tables are bounded and expire
idle entries.
"""

from __future__ import annotations

import math

from capture.schema import INDEX

HALF_LIVES = (0.1, 1.0, 10.0, 60.0)
_LAMBDAS = tuple(math.log(2) / h for h in HALF_LIVES)
_RATE = tuple(math.log(2) / h for h in HALF_LIVES)  # damped weight → events per second
_STATS = 2  # index of the 10 s window, the one the size/timing/ratio statistics use
_NEW_AFTER_S = 60.0  # a port or host unseen for this long counts as new again
_FLOW_IDLE_S = 300.0

_I = INDEX
_TS, _FRAME_LEN, _FLOW_ID, _FLOW_DIR = _I["ts_ns"], _I["frame_len"], _I["flow_id"], _I["flow_dir"]
_IP_SRC, _IP_DST, _IPV6_SRC, _IPV6_DST = _I["ip_src"], _I["ip_dst"], _I["ipv6_src"], _I["ipv6_dst"]
_ETH_SRC, _ETH_DST = _I["eth_src"], _I["eth_dst"]
_TCP_DPORT, _UDP_DPORT, _TCP_FLAGS = _I["tcp_dport"], _I["udp_dport"], _I["tcp_flags"]
_SRC_FIRST = _I["ctx_src_pkt_rate_h100ms"]
_PAIR_FIRST = _I["ctx_pair_pkt_rate_h100ms"]
_FLOW_FIRST = _I["ctx_flow_pkts"]

# Source state: last time, damped packet weights (4), damped bytes (4), then at the 10 s window:
# size sum, size square sum, gap sum, gap square sum, new ports, new hosts, SYN, SYN-ACK, RST, FIN.
_S_LEN = 19
# Pair state: last time, damped packet weights (4), size sum, size square sum (10 s window).
_P_LEN = 7


class _BoundedTable(dict):
    """A dict that, past ``limit`` entries, drops idle ones (and failing that, the oldest)."""

    def __init__(self, limit: int, idle_s: float) -> None:
        super().__init__()
        self.limit = limit
        self.idle_s = idle_s
        self.evicted = 0

    def prune(self, now: float, last_seen: int = 0) -> None:
        if len(self) <= self.limit:
            return
        cutoff = now - self.idle_s
        stale = [k for k, v in self.items() if (v[last_seen] if last_seen >= 0 else v) < cutoff]
        for key in stale:
            del self[key]
        excess = len(self) - int(self.limit * 0.8)
        if excess > 0:  # still too full: drop the oldest entries (dicts keep insertion order)
            oldest = list(self)[:excess]
            for key in oldest:
                del self[key]
            stale.extend(oldest)
        self.evicted += len(stale)


class ContextTracker:
    """Updates the ``ctx_*`` fields of each record from the packets seen before it."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.sources = _BoundedTable(max_entries, 600.0)
        self.pairs = _BoundedTable(max_entries, 600.0)
        self.flows = _BoundedTable(max_entries, _FLOW_IDLE_S)
        self.seen_ports = _BoundedTable(max_entries, _NEW_AFTER_S)
        self._checks = 0

    def sizes(self) -> dict[str, int]:
        """Entries per table, for the sensor's metrics."""
        return {
            "sources": len(self.sources),
            "pairs": len(self.pairs),
            "flows": len(self.flows),
            "ports": len(self.seen_ports),
        }

    def update(self, rec: list) -> None:
        now = rec[_TS] / 1e9
        size = rec[_FRAME_LEN]
        src = rec[_IP_SRC] or rec[_IPV6_SRC] or rec[_ETH_SRC]
        dst = rec[_IP_DST] or rec[_IPV6_DST] or rec[_ETH_DST]
        flags = rec[_TCP_FLAGS]
        dport = rec[_TCP_DPORT] if rec[_TCP_DPORT] >= 0 else rec[_UDP_DPORT]

        # Distinct destination ports and hosts, as damped counts of first sightings.
        new_port = new_host = 0
        if dport >= 0:
            key = (src, dst, dport)
            last = self.seen_ports.get(key)
            if last is None or now - last > _NEW_AFTER_S:
                new_port = 1
            self.seen_ports[key] = now
        pair_key = (src, dst)
        pair = self.pairs.get(pair_key)
        if pair is None:
            new_host = 1
            pair = self.pairs[pair_key] = [now] + [0.0] * (_P_LEN - 1)

        s = self.sources.get(src)
        if s is None:
            s = self.sources[src] = [now] + [0.0] * (_S_LEN - 1)
            gap = 0.0
        else:
            gap = max(now - s[0], 0.0)
        _decay(s, gap, 1, 9, 19)
        s[0] = now
        for i in range(4):
            s[1 + i] += 1.0
            s[5 + i] += size
        s[9] += size
        s[10] += size * size
        s[11] += gap
        s[12] += gap * gap
        s[13] += new_port
        s[14] += new_host
        if flags >= 0:
            syn, ack = flags & 2, flags & 16
            s[15] += 1.0 if syn and not ack else 0.0
            s[16] += 1.0 if syn and ack else 0.0
            s[17] += (flags >> 2) & 1
            s[18] += flags & 1

        pair_gap = max(now - pair[0], 0.0)
        _decay(pair, pair_gap, 1, 5, 7)
        pair[0] = now
        for i in range(4):
            pair[1 + i] += 1.0
        pair[5] += size
        pair[6] += size * size

        weight = s[1 + _STATS]
        mean = s[9] / weight
        pair_weight = pair[1 + _STATS]
        pair_mean = pair[5] / pair_weight
        rec[_SRC_FIRST : _SRC_FIRST + 18] = (
            s[1] * _RATE[0],
            s[2] * _RATE[1],
            s[3] * _RATE[2],
            s[4] * _RATE[3],
            s[5] * _RATE[0],
            s[6] * _RATE[1],
            s[7] * _RATE[2],
            s[8] * _RATE[3],
            mean,
            _spread(s[10], weight, mean),
            s[11] / weight,
            _spread(s[12], weight, s[11] / weight),
            s[13] * _RATE[_STATS],
            s[14] * _RATE[_STATS],
            s[15] / weight,
            s[16] / weight,
            s[17] / weight,
            s[18] / weight,
        )
        rec[_PAIR_FIRST : _PAIR_FIRST + 6] = (
            pair[1] * _RATE[0],
            pair[2] * _RATE[1],
            pair[3] * _RATE[2],
            pair[4] * _RATE[3],
            pair_mean,
            _spread(pair[6], pair_weight, pair_mean),
        )
        self._flow(rec, now, size)

        self._checks += 1
        if self._checks >= 4096:
            self._checks = 0
            self.sources.prune(now)
            self.pairs.prune(now)
            self.flows.prune(now, 1)
            self.seen_ports.prune(now, -1)

    def _flow(self, rec: list, now: float, size: int) -> None:
        flow_id = rec[_FLOW_ID]
        if not flow_id:
            return
        flow = self.flows.get(flow_id)
        direction = rec[_FLOW_DIR]
        if flow is None or now - flow[1] > _FLOW_IDLE_S:
            # first time, last time, packets, packets in the first packet's direction, bytes, dir
            flow = self.flows[flow_id] = [now, now, 0, 0, 0, direction]
        flow[1] = now
        flow[2] += 1
        flow[3] += direction == flow[5]
        flow[4] += size
        packets = flow[2]
        age = now - flow[0]
        rec[_FLOW_FIRST : _FLOW_FIRST + 5] = (
            packets,
            age,
            flow[3] / packets,
            flow[4] / packets,
            age / (packets - 1) if packets > 1 else 0.0,
        )


def _decay(state: list, gap: float, first: int, windowed_end: int, end: int) -> None:
    """Age the damped sums by ``gap`` seconds: per window for the first block, then the 10 s
    factor for the per-window statistics that follow."""
    if gap <= 0.0:
        return
    factors = [math.exp(-gap * lam) for lam in _LAMBDAS]
    width = windowed_end - first
    per_window = width // 4 if width >= 4 else 1
    for block in range(per_window):
        base = first + block * 4
        for i in range(4):
            state[base + i] *= factors[i]
    stats = factors[_STATS]
    for i in range(windowed_end, end):
        state[i] *= stats


def _spread(square_sum: float, weight: float, mean: float) -> float:
    variance = square_sum / weight - mean * mean
    return math.sqrt(variance) if variance > 0 else 0.0
