"""Sensor throughput: scapy dissection, the fast decoder, pcap to Kafka, and live capture on a veth.

Every figure comes from one synthetic capture (tests/support/traffic.py):

  scapy      PcapReader on the first --scapy-packets frames, every field of every layer read
  extract    PcapSource + FrameDecoder, records built and thrown away (also with ContextTracker,
             which the sensor runs by default)
  kafka      ``antinex sensor --pcap`` publishing to the local broker; records read back
  live       ``antinex sensor --interface`` on a veth while tcpreplay sends at each of --rates
             from a fresh network namespace (root, ``ip netns`` and tcpreplay needed)

Run as root from the repository: ``python bench/bench_sensor.py [--json results.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import netns, topics, traffic

ANTINEX = str(Path(sys.executable).with_name("antinex"))
CAPTURED = "antinex_sensor_packets_captured_total"


def scapy_rate(pcap: Path, limit: int) -> dict[str, Any]:
    """Full scapy dissection of the first ``limit`` frames, reading every field.

    scapy.all is imported so that every layer scapy knows is registered, as in a scapy-based
    sensor; without it PcapReader hands back undissected Raw packets.
    """
    import scapy.all  # noqa: F401 - registers every layer
    from scapy.layers.l2 import Ether
    from scapy.packet import Packet
    from scapy.utils import PcapReader

    started = time.perf_counter()
    count = 0
    with PcapReader(str(pcap)) as reader:
        for packet in reader:
            if not isinstance(packet, Ether):
                raise RuntimeError(f"scapy did not dissect the frames: got {packet.summary()}")
            layer: Packet = packet
            while layer:  # the last layer's payload is NoPayload, which is false
                for f in layer.fields_desc:
                    getattr(layer, f.name)
                layer = layer.payload
            count += 1
            if count == limit:
                break
    seconds = time.perf_counter() - started
    return {"packets": count, "seconds": seconds, "pps": count / seconds}


def extract_rate(pcap: Path, with_context: bool) -> dict[str, Any]:
    """Frames of the pcap through PcapSource and FrameDecoder (and ContextTracker), no output."""
    from capture.context import ContextTracker
    from capture.decode import FrameDecoder, Undecodable
    from capture.sources import PcapSource

    source = PcapSource(str(pcap))
    decode = FrameDecoder(source.name).decode
    update = ContextTracker().update if with_context else None
    started = time.perf_counter()
    count = undecodable = 0
    for frame in source:
        try:
            record = decode(*frame)
        except Undecodable:
            undecodable += 1
            continue
        if update:
            update(record)
        count += 1
    seconds = time.perf_counter() - started
    return {"packets": count + undecodable, "seconds": seconds, "pps": count / seconds}


# The sensor as a subprocess ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _events(log_path: Path) -> Iterator[dict[str, Any]]:
    for line in log_path.read_text().splitlines():
        if line.startswith("{"):
            yield json.loads(line)


def _event(log_path: Path, name: str) -> dict[str, Any]:
    found = [e for e in _events(log_path) if e.get("event") == name]
    if not found:
        tail = log_path.read_text()[-2000:]
        raise RuntimeError(f"the sensor logged no {name} event; its log ends with:\n{tail}")
    return found[-1]


def _stamp(logged: dict[str, Any]) -> float:
    return datetime.strptime(logged["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _read_topic(bootstrap: str, topic: str) -> tuple[int, int]:
    """Rows in every batch of ``topic`` and how many of them fail validation."""
    from capture.encoding import BatchCodec, invalid_rows

    codec = BatchCodec()
    rows = bad = 0
    for value in topics.read_values(bootstrap, topic, timeout=120.0):
        batch = codec.decode(value)
        rows += len(batch)
        bad += len(invalid_rows(batch))
    return rows, bad


def sensor_pcap_rate(pcap: Path, output: str, bootstrap: str, workdir: Path) -> dict[str, Any]:
    """``antinex sensor --pcap`` to a fresh Kafka topic or to JSON lines in /dev/null.

    The rate counts records the broker acknowledged (or the sink wrote) between the sensor's
    started and stopped events, so it includes waiting for the last acknowledgements.
    """
    topic = f"antinex.bench.{uuid.uuid4().hex[:8]}"
    log_path = workdir / f"pcap-{output}.log"
    command = [ANTINEX, "--log-format", "json", "sensor", "--pcap", str(pcap), "--metrics-port"]
    command.append("0")
    if output == "kafka":
        command += ["--bootstrap-servers", bootstrap, "--packets-topic", topic]
    else:
        command += ["--output", "jsonl", "--out", os.devnull]
    started = time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.run(command, stderr=log, stdout=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - started
    stopped = _event(log_path, "sensor_stopped")
    seconds = _stamp(stopped) - _stamp(_event(log_path, "sensor_started"))
    result = {
        "exit_code": code,
        "captured": stopped["captured"],
        "published": stopped["published"],
        "seconds": seconds,
        "wall_seconds": wall,
        "pps": stopped["published"] / seconds,
    }
    if output == "kafka":
        try:
            result["read_back"], result["invalid_rows"] = _read_topic(bootstrap, topic)
        finally:
            topics.delete_topics(bootstrap, [topic])
    return result


def live_rate(
    pcap: Path,
    pcap_packets: int,
    rate: int,
    seconds: float,
    output: str,
    bootstrap: str,
    workdir: Path,
) -> dict[str, Any]:
    """Replay ``rate * seconds`` frames at ``rate`` into a veth the sensor captures on.

    Records go to Kafka or, as JSON lines, to /dev/null: the sensor's own count of written
    records is what the table shows, and half a million JSON records would fill a disk.
    """
    count = max(1, round(rate * seconds))
    log_path = workdir / f"live-{rate}-{output}.log"
    topic = f"antinex.bench.live.{uuid.uuid4().hex[:8]}"
    port = _free_port()
    with netns.veth_in_namespace() as pair, log_path.open("w") as log:
        command = [ANTINEX, "--log-format", "json", "sensor", "--interface", pair.host_end]
        command += ["--metrics-port", str(port)]
        if output == "kafka":
            command += ["--bootstrap-servers", bootstrap, "--packets-topic", topic]
        else:
            command += ["--output", "jsonl", "--out", os.devnull]
        sensor = subprocess.Popen(command, stderr=log, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while _metric(port, CAPTURED) is None:
                if sensor.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the sensor did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.1)
            cpu_before = _cpu_seconds(sensor.pid)
            loops = math.ceil(count / pcap_packets)
            sent = netns.replay(pair, pcap, rate, limit=count, loops=loops)
            replay_done = time.monotonic()
            drain = _wait_for_capture(port, sent.sent)
            cpu = _cpu_seconds(sensor.pid) - cpu_before
            load = os.getloadavg()[0]  # other work on the machine competes for the same cores
        finally:
            sensor.send_signal(signal.SIGTERM)
            code = sensor.wait(timeout=120)
    stopped = _event(log_path, "sensor_stopped")
    result = {
        "rate": rate,
        "output": output,
        "exit_code": code,
        "sent": sent.sent,
        "tcpreplay_pps": sent.pps,
        "captured": stopped["captured"],
        "kernel_drops": stopped["kernel_drops"],
        "published": stopped["published"],
        "output_drops": stopped.get("dropped") or {},
        "drain_s": drain - replay_done,
        "sensor_pps": stopped["captured"] / (drain - replay_done + sent.seconds),
        "load_1m": load,
        "sensor_cpu_us_per_packet": 1e6 * cpu / max(stopped["captured"], 1),
        "sensor_cpu_pct": 100.0 * cpu / (drain - replay_done + sent.seconds),
    }
    delivered = stopped["published"]
    if output == "kafka":
        try:
            delivered, result["invalid_rows"] = _read_topic(bootstrap, topic)
        finally:
            topics.delete_topics(bootstrap, [topic])
    result["delivered"] = delivered
    result["lost"] = sent.sent - delivered
    result["lost_pct"] = 100.0 * result["lost"] / sent.sent
    return result


def _wait_for_capture(port: int, expected: int, quiet_s: float = 3.0) -> float:
    """Wait until the sensor counted ``expected`` frames or its count stopped moving."""
    last, last_change = -1.0, time.monotonic()
    while True:
        captured = _metric(port, CAPTURED) or 0.0
        now = time.monotonic()
        if captured >= expected:
            return now
        if captured != last:
            last, last_change = captured, now
        elif now - last_change > quiet_s:
            return last_change
        time.sleep(0.05)


# Report -------------------------------------------------------------------------------------


def _crc32c_kind() -> str:
    """kafka-python checksums every record batch; without the crc32c package it does so in
    pure Python, which caps the Kafka figures."""
    from kafka.record import util

    return "C (crc32c package)" if util.crc32c_c is not None else "pure Python"


def print_report(results: dict[str, Any]) -> None:
    rows = [("scapy PcapReader, every field read", results.get("scapy"))]
    rows.append(("FrameDecoder (PcapSource, no output)", results.get("extract")))
    rows.append(("FrameDecoder + ContextTracker", results.get("extract_context")))
    rows.append(("sensor --pcap to Kafka (records acked)", results.get("kafka")))
    rows.append(("sensor --pcap to JSON lines (/dev/null)", results.get("jsonl")))
    print(f"\n{results['packets']:,} synthetic packets; {results['machine']}")
    if any(row for _, row in rows):
        print(f"{'offline path':<42} {'packets':>9} {'seconds':>8} {'packets/s':>10}")
    for name, row in rows:
        if row:
            count = row.get("published", row.get("packets", 0))
            print(f"{name:<42} {count:>9,} {row['seconds']:>8.2f} {row['pps']:>10,.0f}")
    kafka = results.get("kafka")
    if kafka:
        print(
            f"  kafka: read back {kafka['read_back']:,} records, {kafka['invalid_rows']} invalid, "
            f"process wall time {kafka['wall_seconds']:.1f} s, exit {kafka['exit_code']}"
        )
    live = results.get("live")
    if live:
        print("\nLive capture on a veth pair (tcpreplay --pps from a network namespace)")
        print("  delivered: JSON lines written, or records read back from the Kafka topic")
        print("  drain s: seconds the sensor needed after tcpreplay ended to catch up")
        print("  sensor pps: captured / (sending + drain seconds); cpu %: of one core, same span")
        print("  cpu us/pkt: the sensor's CPU time per captured packet, all threads")
        columns = ["rate", "output", "sent", "replay pps", "captured", "kernel drops"]
        columns += ["delivered", "lost", "lost %", "drain s", "sensor pps", "cpu %", "cpu us/pkt"]
        columns += ["load"]
        widths = (7, 6, 8, 10, 9, 12, 9, 8, 7, 7, 10, 6, 10, 5)
        print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
        for r in live:
            print(
                f"{r['rate']:>7,} {r['output']:>6} {r['sent']:>8,} {r['tcpreplay_pps']:>10,.0f} "
                f"{r['captured']:>9,} {r['kernel_drops']:>12,} {r['delivered']:>9,} "
                f"{r['lost']:>8,} {r['lost_pct']:>7.2f} {r['drain_s']:>7.2f} "
                f"{r['sensor_pps']:>10,.0f} {r['sensor_cpu_pct']:>6.0f} "
                f"{r['sensor_cpu_us_per_packet']:>10.1f} {r['load_1m']:>5.1f}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000, help="Packets in the pcap")
    parser.add_argument("--scapy-packets", type=int, default=20_000, help="Packets scapy reads")
    parser.add_argument("--rates", default="1000,10000,20000,50000", help="Live rates, pps")
    parser.add_argument("--live-seconds", type=float, default=10.0, help="Seconds sent per rate")
    parser.add_argument(
        "--live-outputs", default="jsonl,kafka", help="Sensor outputs to run live: jsonl, kafka"
    )
    parser.add_argument("--skip-live", action="store_true", help="No live capture")
    parser.add_argument("--skip-kafka", action="store_true", help="No pcap-to-Kafka run")
    parser.add_argument(
        "--skip-offline", action="store_true", help="Only live capture: no scapy, decoder, Kafka"
    )
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--json", help="Write the results to this file")
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",") if r]
    outputs = [o for o in args.live_outputs.split(",") if o]
    if not set(outputs) <= {"jsonl", "kafka"}:
        parser.error(
            f"--live-outputs {args.live_outputs!r} names an output other than jsonl, kafka"
        )

    results: dict[str, Any] = {
        "packets": args.packets,
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}, "
        f"kafka-python CRC32C in {_crc32c_kind()}",
    }
    with tempfile.TemporaryDirectory(prefix="antinex-bench-") as tmp:
        workdir = Path(tmp)
        pcap = traffic.write_pcap(workdir / "synthetic.pcap", args.packets)
        if not args.skip_offline:
            results["scapy"] = scapy_rate(pcap, args.scapy_packets)
            results["extract"] = extract_rate(pcap, with_context=False)
            results["extract_context"] = extract_rate(pcap, with_context=True)
        if not (args.skip_kafka or args.skip_offline):
            results["kafka"] = sensor_pcap_rate(pcap, "kafka", args.bootstrap_servers, workdir)
        if not args.skip_offline:
            results["jsonl"] = sensor_pcap_rate(pcap, "jsonl", args.bootstrap_servers, workdir)
        if not args.skip_live:
            reason = netns.netns_unavailable()
            if reason:
                print(f"live capture skipped: {reason}", file=sys.stderr)
            else:
                results["live"] = [
                    live_rate(
                        pcap,
                        args.packets,
                        rate,
                        args.live_seconds,
                        output,
                        args.bootstrap_servers,
                        workdir,
                    )
                    for output in outputs
                    for rate in rates
                ]
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
