"""End to end: live capture on a veth, Kafka, the stream processor, verdicts.

Three measurements, each against the local broker:

  latency     ``antinex sensor --interface`` on the host end of a veth (Kafka output), one
              ``antinex process`` on its topic, tcpreplay --pps into the namespace end at each of
              --rates for --seconds. Capture-to-verdict p50/p95/p99 come from the processor's
              ``antinex_processor_capture_to_verdict_seconds`` histogram: the difference of its
              buckets over the run, interpolated within buckets as histogram_quantile does. The
              clock starts at each record's capture timestamp, so the sensor's batching
              (--linger-ms) is included.
  throughput  one and then two processors of one group on a --partitions topic; once the group
              has settled the topic is filled with --records records (lz4, with
              bench_processor.py's kcat prefill) and records/s are taken from the first scrape
              after the fill ended to the last scrape that saw the scored count grow.
  soak        (--soak-seconds N) the live pipeline at --soak-rate for N seconds, VmRSS of the
              sensor and the processor sampled every 5 s; RSS after --warmup-seconds against
              RSS at the end.

Run as root from the repository: ``python bench/bench_pipeline.py [--json results.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import bench_processor as processor_bench
import bench_sensor as sensor_bench
from support import netns, tiny_model, topics, traffic

from capture.publisher import KafkaSettings

CONTEXT_ENTRIES = "antinex_sensor_context_entries"
LATENCY_TARGET_S = 0.100
LATENCY_TARGET_RATE = 10_000
DRIFT_TARGET_PCT = 5.0
RSS_SAMPLE_S = 5.0


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


def _percentiles(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> dict:
    window = [(bound, a - b) for (bound, a), (_, b) in zip(after, before, strict=True)]
    figures: dict[str, Any] = {"observed": int(window[-1][1]) if window else 0}
    for q in (0.5, 0.95, 0.99):
        value = processor_bench.quantile(q, window) if window else float("nan")
        figures[f"p{int(q * 100)}_ms"] = round(value * 1000, 1)
    return figures


# The live pipeline --------------------------------------------------------------------------


class LivePipeline:
    """A veth pair, a processor on a fresh topic and a sensor on the host end; torn down on exit.

    The processor comes up first and a short burst goes through before anything is measured,
    so the group join and the model's first call are not in the figures.
    """

    def __init__(self, args: argparse.Namespace, model: Path, pcap: Path, workdir: Path) -> None:
        self.args, self.model, self.pcap = args, model, pcap
        self.workdir = workdir / f"live-{uuid.uuid4().hex[:6]}"
        self.workdir.mkdir()
        self.topic = f"bench-pipeline-{uuid.uuid4().hex[:8]}"
        self.group = f"{self.topic}-group"
        self.sensor_port = sensor_bench._free_port()
        self.processor_port = processor_bench._free_port()
        self.sensor_log = self.workdir / "sensor.log"
        self._pair_context = netns.veth_in_namespace()

    def __enter__(self) -> LivePipeline:
        self.pair = self._pair_context.__enter__()
        self.sensor: subprocess.Popen | None = None
        self.processor: subprocess.Popen | None = None
        try:
            self._start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _start(self) -> None:
        args = self.args
        topics.create_topic(args.bootstrap_servers, self.topic, args.live_partitions)
        options = SimpleNamespace(
            bootstrap_servers=args.bootstrap_servers,
            processor_args=f"--auto-offset-reset earliest {args.processor_args}",
        )
        self.processor = processor_bench.start_processor(
            options, self.model, self.topic, self.group, self.workdir, self.processor_port
        )
        processor_bench.wait_for_endpoint(self.processor_port, self.processor)

        command = [sensor_bench.ANTINEX, "--log-format", "json", "sensor"]
        command += ["--interface", self.pair.host_end, "--metrics-port", str(self.sensor_port)]
        command += ["--bootstrap-servers", args.bootstrap_servers, "--packets-topic", self.topic]
        command += ["--linger-ms", str(args.linger_ms), *args.sensor_args.split()]
        with self.sensor_log.open("w") as log:
            self.sensor = subprocess.Popen(command, stderr=log, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while sensor_bench._metric(self.sensor_port, sensor_bench.CAPTURED) is None:
            if self.sensor.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the sensor did not start: {self.sensor_log.read_text()[-2000:]}"
                )
            time.sleep(0.1)

        warm = netns.replay(self.pair, self.pcap, 1000, limit=args.warmup_packets)
        self.wait_scored(warm.sent, timeout=90)

    def scored(self) -> float:
        return processor_bench.scored(processor_bench.scrape(self.processor_port))

    def buckets(self) -> list[tuple[float, float]]:
        return processor_bench.latency_buckets(processor_bench.scrape(self.processor_port))

    def context_entries(self) -> int:
        """Entries in the sensor's context tables, summed over the tables."""
        samples = processor_bench.scrape(self.sensor_port)
        return int(sum(v for key, v in samples.items() if key.startswith(CONTEXT_ENTRIES + "{")))

    def captured(self) -> float:
        return sensor_bench._metric(self.sensor_port, sensor_bench.CAPTURED) or 0.0

    def wait_scored(self, at_least: float, timeout: float = 60, quiet_s: float = 5.0) -> float:
        """Wait until the processor scored ``at_least`` records or its count stood still."""
        deadline = time.monotonic() + timeout
        last, last_change = -1.0, time.monotonic()
        while time.monotonic() < deadline:
            count = self.scored()
            now = time.monotonic()
            if count >= at_least:
                return count
            if count != last:
                last, last_change = count, now
            elif now - last_change > quiet_s:
                break
            time.sleep(0.1)
        return self.scored()

    def stop_sensor(self) -> dict[str, Any]:
        """SIGTERM the sensor and return its sensor_stopped event."""
        assert self.sensor is not None
        self.sensor.send_signal(signal.SIGTERM)
        self.sensor.wait(timeout=120)
        return sensor_bench._event(self.sensor_log, "sensor_stopped")

    def __exit__(self, *exc: object) -> None:
        for proc in (self.sensor, self.processor):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        created = [self.topic, f"{self.topic}-alerts", f"{self.topic}-dead"]
        topics.delete_topics(self.args.bootstrap_servers, created, [self.group])
        self._pair_context.__exit__(None, None, None)


def live_latency(
    args: argparse.Namespace, model: Path, pcap: Path, pcap_packets: int, rate: int, workdir: Path
) -> dict[str, Any]:
    """Capture-to-verdict percentiles while tcpreplay sends ``rate * --seconds`` frames."""
    count = max(1, round(rate * args.seconds))
    with LivePipeline(args, model, pcap, workdir) as pipe:
        before, scored_before = pipe.buckets(), pipe.scored()
        captured_before = pipe.captured()
        load_before = _load()
        sent = netns.replay(
            pipe.pair, pcap, rate, limit=count, loops=math.ceil(count / pcap_packets)
        )
        sensor_bench._wait_for_capture(pipe.sensor_port, captured_before + sent.sent)
        captured = pipe.captured() - captured_before
        scored = pipe.wait_scored(scored_before + captured) - scored_before
        after = pipe.buckets()
        stopped = pipe.stop_sensor()
        command = " ".join(pipe.sensor.args) if pipe.sensor else ""
    figures = _percentiles(before, after)
    return {
        "rate": rate,
        "sent": sent.sent,
        "tcpreplay_pps": round(sent.pps),
        "captured": int(captured),
        "scored": int(scored),
        "kernel_drops": stopped["kernel_drops"],
        "sensor_output_drops": stopped.get("dropped") or {},
        **figures,
        "p99_within_target": figures["p99_ms"] <= LATENCY_TARGET_S * 1000,
        "load_before": load_before,
        "load_after": _load(),
        "sensor_command": command,
    }


# Throughput with one and two processors -----------------------------------------------------


def _assignments(log_path: Path) -> list[int] | None:
    """The partitions of a processor's latest partitions_assigned event, if any."""
    found = None
    for logged in sensor_bench._events(log_path):
        if logged.get("event") == "partitions_assigned":
            found = list(logged.get("partitions") or [])
    return found


def _wait_for_group(logs: list[Path], partitions: int, timeout: float = 90) -> float:
    """Wait until every processor holds partitions and together they hold them all."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        held = [_assignments(path) for path in logs]
        if all(held) and sorted(p for h in held if h for p in h) == list(range(partitions)):
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"the {len(logs)} processor(s) did not settle on {partitions} partitions")


def drain(
    args: argparse.Namespace, model: Path, messages: dict, processors: int, workdir: Path
) -> dict[str, Any]:
    """Let ``processors`` processors of one group drain a topic pre-filled after they joined.

    The processors start on the empty topic and the topic is filled once the group has settled
    (every processor holds partitions), so no rebalance falls inside the measurement. The
    processors start draining during the fill; the rate is taken only after it ended, over the
    records still waiting then.
    """
    bootstrap = args.bootstrap_servers
    topic = f"bench-pipeline-drain-{uuid.uuid4().hex[:8]}"
    group = f"{topic}-group"
    procs: list[subprocess.Popen] = []
    ports: list[int] = []
    logs: list[Path] = []
    try:
        topics.create_topic(bootstrap, topic, args.partitions)
        options = SimpleNamespace(
            bootstrap_servers=bootstrap,
            processor_args=f"--auto-offset-reset earliest {args.processor_args}",
        )
        for number in range(processors):
            own = workdir / f"{topic}-p{number}"
            own.mkdir()
            ports.append(processor_bench._free_port())
            logs.append(own / "processor.log")
            procs.append(
                processor_bench.start_processor(options, model, topic, group, own, ports[-1])
            )
        for port, proc in zip(ports, procs, strict=True):
            processor_bench.wait_for_endpoint(port, proc)
        settle_s = _wait_for_group(logs, args.partitions)

        fill_dir = workdir / f"{topic}-fill"
        fill_dir.mkdir()
        written_box: list[tuple[int, float]] = []
        filler = threading.Thread(
            target=lambda: written_box.append(
                processor_bench.prefill(bootstrap, topic, messages, args.records, fill_dir, "lz4")
            ),
            daemon=True,
        )
        filler.start()
        expected = sum(
            # the records prefill() will write: whole messages until each partition's share
            _planned_rows(batch, args.records // len(messages))
            for batch in messages.values()
        )

        # From the first scrape after the fill ended (kcat's compression competes for the same
        # cores) to the last one that saw the count grow.
        first = last = None
        per_processor: list[float] = []
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            now = time.perf_counter()
            per_processor = [processor_bench.scored(processor_bench.scrape(p)) for p in ports]
            total = sum(per_processor)
            if first is None and total and not filler.is_alive():
                first = (now, total)
            if first is not None and (last is None or total > last[1]):
                last = (now, total)
            if total >= expected:
                break
            time.sleep(0.05)
        filler.join(timeout=120)
        if first is None or last is None or last[1] <= first[1]:
            raise RuntimeError(f"{processors} processor(s) scored too little to measure")
        written, fill_s = written_box[0] if written_box else (expected, float("nan"))
        return {
            "processors": processors,
            "partitions": args.partitions,
            "group_settle_s": round(settle_s, 1),
            "prefilled": written,
            "prefill_s": round(fill_s, 1),
            "scored": int(last[1]),
            "scored_per_processor": [int(c) for c in per_processor],
            "measured_records": int(last[1] - first[1]),
            "seconds": round(last[0] - first[0], 2),
            "records_per_s": round((last[1] - first[1]) / (last[0] - first[0])),
            "load": _load(),
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        topics.delete_topics(bootstrap, [topic, f"{topic}-alerts", f"{topic}-dead"], [group])


def _planned_rows(batch: list[bytes], share: int) -> int:
    """Rows prefill() writes to one partition: its messages in turn until ``share`` is reached."""
    sizes = [processor_bench._rows_in(value) for value in batch]
    rows = count = 0
    while rows < share:
        rows += sizes[count % len(sizes)]
        count += 1
    return rows


# Soak ---------------------------------------------------------------------------------------


def soak(
    args: argparse.Namespace, model: Path, pcap: Path, pcap_packets: int, workdir: Path
) -> dict[str, Any]:
    """Run the live pipeline at --soak-rate for --soak-seconds, sampling both processes' RSS."""
    count = round(args.soak_rate * args.soak_seconds)
    samples: list[dict[str, float]] = []
    with LivePipeline(args, model, pcap, workdir) as pipe:
        assert pipe.sensor is not None and pipe.processor is not None
        before, scored_before = pipe.buckets(), pipe.scored()
        captured_before = pipe.captured()
        sent: list[netns.Replay] = []
        sender = threading.Thread(
            target=lambda: sent.append(
                netns.replay(
                    pipe.pair,
                    pcap,
                    args.soak_rate,
                    limit=count,
                    loops=math.ceil(count / pcap_packets),
                    timeout=args.soak_seconds + 300,
                )
            ),
            daemon=True,
        )
        started = time.monotonic()
        sender.start()
        while sender.is_alive():
            samples.append(
                {
                    "t": round(time.monotonic() - started, 1),
                    "sensor_mib": round(_rss_mib(pipe.sensor.pid), 1),
                    "processor_mib": round(_rss_mib(pipe.processor.pid), 1),
                    "context_entries": pipe.context_entries(),
                    "load_1m": round(os.getloadavg()[0], 2),
                }
            )
            sender.join(timeout=RSS_SAMPLE_S)
        if not sent:
            raise RuntimeError("tcpreplay failed during the soak; see the output above")
        captured = pipe.captured()
        scored = pipe.wait_scored(scored_before + captured) - scored_before
        after = pipe.buckets()
        stopped = pipe.stop_sensor()
    warm = [s for s in samples if s["t"] >= args.warmup_seconds]
    if not warm:
        raise RuntimeError(f"the soak ended before its {args.warmup_seconds} s warm-up")
    result: dict[str, Any] = {
        "rate": args.soak_rate,
        "seconds": args.soak_seconds,
        "warmup_seconds": args.warmup_seconds,
        "sent": sent[0].sent,
        "tcpreplay_pps": round(sent[0].pps),
        "captured": int(stopped["captured"] - captured_before),
        "kernel_drops": stopped["kernel_drops"],
        "scored": int(scored),
        "latency": _percentiles(before, after),
        "samples": samples,
    }
    # The sensor's context tables grow until they hold --context-table-size entries each (or
    # every live key of the traffic); the memory they take is bounded, not leaked. Drift is also
    # measured from the first sample at which they had reached their size.
    peak_entries = max(s["context_entries"] for s in samples)
    filled = next(s for s in samples if s["context_entries"] >= 0.99 * peak_entries)
    result["context_entries_peak"] = peak_entries
    result["tables_full_at_s"] = filled["t"]
    after_fill = [s for s in samples if s["t"] >= max(filled["t"], args.warmup_seconds)]
    for name in ("sensor", "processor"):
        start, end = warm[0][f"{name}_mib"], warm[-1][f"{name}_mib"]
        filled_mib = after_fill[0][f"{name}_mib"]
        drift = 100.0 * (end - start) / start
        # A step that levels off (tables filling up) and a steady climb (a leak) can give the
        # same drift; the second half of the run tells them apart.
        middle = warm[len(warm) // 2][f"{name}_mib"]
        result[name] = {
            "rss_after_warmup_mib": start,
            "rss_end_mib": end,
            "rss_peak_mib": max(s[f"{name}_mib"] for s in samples),
            "drift_pct": round(drift, 2),
            "drift_second_half_pct": round(100.0 * (end - middle) / middle, 2),
            "rss_tables_full_mib": filled_mib,
            "drift_after_tables_full_pct": round(100.0 * (end - filled_mib) / filled_mib, 2),
            "within_target": abs(drift) < DRIFT_TARGET_PCT,
        }
    return result


# Report -------------------------------------------------------------------------------------


def print_report(results: dict[str, Any]) -> None:
    print(f"\n{results['machine']}; command: {results['command']}")
    latency = results.get("latency")
    if latency:
        print("\nCapture-to-verdict on a veth (sensor live, Kafka, one processor)")
        columns = ("rate", "sent", "replay pps", "captured", "k.drops", "scored")
        columns += ("p50 ms", "p95 ms", "p99 ms", "load")
        widths = (7, 8, 10, 9, 8, 8, 7, 7, 7, 15)
        print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
        for r in latency:
            load = "/".join(f"{x:.1f}" for x in r["load_after"])
            print(
                f"{r['rate']:>7,} {r['sent']:>8,} {r['tcpreplay_pps']:>10,} {r['captured']:>9,} "
                f"{r['kernel_drops']:>8,} {r['scored']:>8,} {r['p50_ms']:>7.1f} "
                f"{r['p95_ms']:>7.1f} {r['p99_ms']:>7.1f} {load:>15}"
            )
        target = [r for r in latency if r["rate"] == LATENCY_TARGET_RATE]
        if target:
            met = "met" if target[0]["p99_within_target"] else "NOT met"
            print(
                f"target p99 <= {LATENCY_TARGET_S * 1000:.0f} ms at "
                f"{LATENCY_TARGET_RATE:,} packets/s: {met} ({target[0]['p99_ms']} ms)"
            )
    throughput = results.get("throughput")
    if throughput:
        print("\nDrain of a pre-filled topic (lz4), processors in one group")
        for r in throughput:
            print(
                f"  {r['processors']} processor(s), {r['partitions']} partitions: "
                f"{r['records_per_s']:,} records/s over {r['measured_records']:,} records "
                f"({r['seconds']} s; per processor {r['scored_per_processor']}); "
                f"load {'/'.join(f'{x:.1f}' for x in r['load'])}"
            )
    result = results.get("soak")
    if result:
        print(
            f"\nSoak: {result['rate']:,} packets/s for {result['seconds']:.0f} s, sent "
            f"{result['sent']:,}, captured {result['captured']:,}, kernel drops "
            f"{result['kernel_drops']:,}, scored {result['scored']:,}; latency p50/p95/p99 "
            f"{result['latency']['p50_ms']}/{result['latency']['p95_ms']}/"
            f"{result['latency']['p99_ms']} ms"
        )
        for name in ("sensor", "processor"):
            r = result[name]
            verdict = "within" if r["within_target"] else "OUTSIDE"
            print(
                f"  {name:<9} RSS {r['rss_after_warmup_mib']:.1f} MiB at "
                f"{result['warmup_seconds']:.0f} s, {r['rss_end_mib']:.1f} MiB at the end "
                f"(peak {r['rss_peak_mib']:.1f}): drift {r['drift_pct']:+.2f}% "
                f"({verdict} the {DRIFT_TARGET_PCT:.0f}% target); over the second half "
                f"{r['drift_second_half_pct']:+.2f}%; after the context tables filled "
                f"({result['tables_full_at_s']:.0f} s, {result['context_entries_peak']:,} "
                f"entries) {r['drift_after_tables_full_pct']:+.2f}%"
            )
        loads = [s["load_1m"] for s in result["samples"]]
        print(f"  load (1 min) during the soak: {min(loads):.1f} to {max(loads):.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,10000,20000", help="Live rates, packets/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="Seconds sent per rate")
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=KafkaSettings.linger_ms,
        help="The sensor's --linger-ms (default: the sensor's own)",
    )
    parser.add_argument("--live-partitions", type=int, default=3, help="Live topic partitions")
    parser.add_argument("--warmup-packets", type=int, default=500, help="Sent before measuring")
    parser.add_argument("--records", type=int, default=3_000_000, help="Records pre-filled")
    parser.add_argument("--partitions", type=int, default=4, help="Pre-filled topic partitions")
    parser.add_argument("--hidden", default="256,128", help="Hidden layer widths of the model")
    parser.add_argument("--soak-seconds", type=float, default=0, help="Soak length; 0: no soak")
    parser.add_argument("--soak-rate", type=int, default=5000, help="Soak rate, packets/s")
    parser.add_argument("--warmup-seconds", type=float, default=60.0, help="Soak warm-up")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--sensor-args", default="", help="Extra `antinex sensor` flags")
    parser.add_argument("--processor-args", default="", help="Extra `antinex process` flags")
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--json", help="Write the results to this file")
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",") if r]
    live = (rates and not args.skip_latency) or args.soak_seconds > 0
    if live:
        reason = netns.netns_unavailable()
        if reason:
            parser.error(f"live runs need a veth in a namespace, which fails here: {reason}")

    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, load {'/'.join(f'{x:.2f}' for x in _load())} at start",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_at_start": _load(),
    }
    with tempfile.TemporaryDirectory(prefix="antinex-bench-pipeline-") as tmp:
        workdir = Path(tmp)
        hidden = tuple(int(w) for w in args.hidden.split(","))
        model = tiny_model.train(workdir / "model", hidden=hidden, rows=20_000, epochs=2)
        pcap_packets = 200_000
        pcap = traffic.write_pcap(workdir / "synthetic.pcap", pcap_packets)
        if rates and not args.skip_latency:
            results["latency"] = []
            for rate in rates:
                row = live_latency(args, model, pcap, pcap_packets, rate, workdir)
                results["latency"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "sensor_command"}))
        if not args.skip_throughput:
            messages = processor_bench.batch_messages(
                min(args.records, 100_000), args.partitions, 500, 0.05, 2000
            )
            results["throughput"] = []
            for processors in (1, 2):
                row = drain(args, model, messages, processors, workdir)
                results["throughput"].append(row)
                print(json.dumps(row))
        if args.soak_seconds > 0:
            results["soak"] = soak(args, model, pcap, pcap_packets, workdir)
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
