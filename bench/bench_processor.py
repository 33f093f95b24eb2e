"""Stream processor throughput and capture-to-verdict latency against the local Kafka broker.

1. A Dense model of the benchmark's size (features → 256 → 128 → 1) is trained on synthetic
   records (tests/support/tiny_model.py).
2. A topic of --partitions partitions is pre-filled with --records records as the sensor writes
   them: binary batch messages of --batch-records records, each flow on its partition. The
   messages are produced with kcat (librdkafka): kafka-python checksums in pure Python unless the
   crc32c package is installed, and would take minutes to write a million records.
3. ``antinex process`` drains the topic; its Prometheus endpoint is scraped every 50 ms and the
   rate is taken between the first and the last scrape that saw records scored (so start-up,
   model loading and the group join are not counted).
4. Latency: with the topic drained, records are produced at each of --latency-rates for
   --latency-seconds (through kcat's standard input, one kcat per partition), each message's
   ts_ns stamped when it is handed to kcat, and the
   processor's ``antinex_processor_capture_to_verdict_seconds`` histogram (differences of the
   buckets before and after) gives p50/p95/p99, interpolated within buckets as Prometheus'
   histogram_quantile does. The sensor's own batching delay (its --linger-ms) is not included.

Run from the repository with the broker up: ``python bench/bench_processor.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import tiny_model, topics

ANTINEX = str(Path(sys.executable).with_name("antinex"))
KCAT = shutil.which("kcat") or "/usr/bin/kcat"
CONTENT_TYPE = "content-type=application/vnd.antinex.batch+npy"
DELIMITER = b"\n~~antinex-bench-message-end~~\n"
LATENCY = "antinex_processor_capture_to_verdict_seconds"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[str, Any]:
    """Samples of the processor's endpoint: {name: value} and {name{labels}: value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
        text = reply.read().decode()
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def scored(samples: dict[str, Any]) -> float:
    name = "antinex_processor_records_scored_total"
    return sum(v for k, v in samples.items() if k.startswith(name))


def latency_buckets(samples: dict[str, Any]) -> list[tuple[float, float]]:
    prefix = f"{LATENCY}_bucket{{le="
    buckets = [(float(k[len(prefix) : -1]), v) for k, v in samples.items() if k.startswith(prefix)]
    return sorted(buckets)


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """histogram_quantile over cumulative (upper bound, count) pairs."""
    total = buckets[-1][1]
    if total <= 0:
        return float("nan")
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per thread of ``pid`` (the main thread's id is the pid)."""
    seconds = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# Records and topics ---------------------------------------------------------------------------


def batch_messages(
    records: int, partitions: int, batch: int, attack_share: float, flows: int, seed: int = 1
) -> dict[int, list[bytes]]:
    """Distinct batch messages per partition, for ``records`` records at most."""
    from capture.publisher import partition_of

    every = max(1, round(1 / attack_share)) if attack_share > 0 else 0
    kinds = [tiny_model.BENIGN] * max(every - 1, 1) + ([tiny_model.PORTSCAN] if every else [])
    pool = tiny_model.synthetic_records(records, kinds, seed=seed, flows=flows)
    owner = np.array([partition_of(f.decode(), partitions) for f in pool["flow_id"]])
    messages: dict[int, list[bytes]] = {}
    for partition in range(partitions):
        rows = pool[owner == partition]
        for start in range(0, len(rows), batch):
            out = io.BytesIO()
            np.save(out, rows[start : start + batch], allow_pickle=False)
            messages.setdefault(partition, []).append(out.getvalue())
    return messages


def prefill(
    bootstrap: str,
    topic: str,
    messages: dict[int, list[bytes]],
    total: int,
    workdir: Path,
    compression: str = "none",
) -> tuple[int, float]:
    """Produce messages (cycling through the distinct ones) until ``total`` records are written;
    returns the records written and the seconds it took."""
    per_partition = total // len(messages)
    started = time.perf_counter()
    written = 0
    procs = []
    for partition, batch in messages.items():
        files = []
        for i, value in enumerate(batch):
            path = workdir / f"p{partition}-{i}.npy"
            path.write_bytes(value)
            files.append((str(path), _rows_in(value)))
        order, rows = [], 0
        while rows < per_partition:
            name, count = files[len(order) % len(files)]
            order.append(name)
            rows += count
        written += rows
        command = [KCAT, "-P", "-b", bootstrap, "-t", topic, "-p", str(partition)]
        command += ["-H", CONTENT_TYPE, "-X", "message.max.bytes=8388608"]
        command += ["-z", compression, *order]
        procs.append(subprocess.Popen(command, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"kcat failed: {err.decode(errors='replace').strip()}")
    return written, time.perf_counter() - started


def _rows_in(value: bytes) -> int:
    header_end = 10 + int.from_bytes(value[8:10], "little")
    shape = value[:header_end].split(b"'shape': (")[1].split(b",")[0]
    return int(shape)


# The processor --------------------------------------------------------------------------------


def start_processor(
    args: argparse.Namespace, model: Path, topic: str, group: str, workdir: Path, port: int
) -> subprocess.Popen:
    command = [ANTINEX, "--log-format", "json", "process", "--model", str(model)]
    command += ["--bootstrap-servers", args.bootstrap_servers, "--packets-topic", topic]
    command += ["--alerts-topic", f"{topic}-alerts", "--dead-letter-topic", f"{topic}-dead"]
    command += ["--group-id", group, "--state-dir", str(workdir / "state")]
    command += ["--metrics-port", str(port), *args.processor_args.split()]
    log = (workdir / "processor.log").open("w")
    return subprocess.Popen(command, stderr=log, stdout=log)


def wait_for_endpoint(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the processor exited with {proc.returncode} before serving")
        try:
            scrape(port)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the processor's metrics endpoint did not come up")


def measure_drain(port: int, proc: subprocess.Popen, total: int) -> dict[str, Any]:
    """Records/s between the first and last scrape that saw records scored."""
    first = last = None
    cpu_first = cpu_last = 0.0
    threads_first: dict[int, float] = {}
    threads_last: dict[int, float] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        now = time.perf_counter()
        count = scored(scrape(port))
        if count and first is None:
            first, cpu_first = (now, count), cpu_seconds(proc.pid)
            threads_first = thread_cpu(proc.pid)
        if count and (last is None or count > last[1]):
            last, cpu_last = (now, count), cpu_seconds(proc.pid)
            threads_last = thread_cpu(proc.pid)
        if count >= total:
            break
        time.sleep(0.05)
    if first is None or last is None or last[1] <= first[1]:
        raise RuntimeError("the processor scored too little to measure")
    seconds = last[0] - first[0]
    records = last[1] - first[1]
    used = {t: threads_last[t] - threads_first.get(t, 0.0) for t in threads_last}
    main = used.pop(proc.pid, 0.0)
    others = sorted(used.values(), reverse=True)
    return {
        "main_thread_us_per_record": round(main / records * 1e6, 2),
        "busiest_other_thread_us_per_record": round(others[0] / records * 1e6, 2) if others else 0,
        "all_other_threads_us_per_record": round(sum(others) / records * 1e6, 2),
        "load_average": load_average(),
        "records": int(last[1]),
        "measured_records": int(records),
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds),
        "cpu_share": round((cpu_last - cpu_first) / seconds, 2),
    }


def measure_latency(
    args: argparse.Namespace,
    port: int,
    topic: str,
    messages: dict[int, list[bytes]],
    rate: int,
) -> dict[str, Any]:
    """Produce at ``rate`` records/s for --latency-seconds and read the latency histogram."""
    before = latency_buckets(scrape(port))
    done_before = scored(scrape(port))
    pipes = {}
    for partition in messages:
        command = [KCAT, "-P", "-b", args.bootstrap_servers, "-t", topic, "-p", str(partition)]
        command += ["-H", CONTENT_TYPE, "-D", DELIMITER.decode(), "-X", "linger.ms=1"]
        command += ["-X", "message.max.bytes=8388608"]
        pipes[partition] = subprocess.Popen(command, stdin=subprocess.PIPE)
    arrays = {p: [np.load(io.BytesIO(v)) for v in batch] for p, batch in messages.items()}
    empty = io.BytesIO()
    np.save(empty, next(iter(arrays.values()))[0][:0], allow_pickle=False)

    def send(partition: int, batch: np.ndarray) -> int:
        batch = batch.copy()
        batch["ts_ns"] = time.time_ns()
        out = io.BytesIO()
        np.save(out, batch, allow_pickle=False)
        # kcat hands a message to librdkafka only once it has read bytes past its delimiter,
        # i.e. when the next message arrives; an empty batch (no records, nothing scored)
        # right behind each message lets it go at once.
        pipes[partition].stdin.write(out.getvalue() + DELIMITER + empty.getvalue() + DELIMITER)
        pipes[partition].stdin.flush()
        return len(batch)

    sent = 0
    started = time.perf_counter()
    turn = 0
    while time.perf_counter() - started < args.latency_seconds:
        due = rate * (time.perf_counter() - started)
        if sent >= due:
            time.sleep(min(0.002, (sent - due) / rate))
            continue
        partition = turn % len(arrays)
        batch = arrays[partition][(turn // len(arrays)) % len(arrays[partition])]
        turn += 1
        sent += send(partition, batch)
    for pipe in pipes.values():
        pipe.stdin.close()
        pipe.wait()
    deadline = time.monotonic() + 60
    while scored(scrape(port)) < done_before + sent and time.monotonic() < deadline:
        time.sleep(0.1)
    after = latency_buckets(scrape(port))
    window = [(b, a - c) for (b, a), (_, c) in zip(after, before, strict=True)]
    return {
        "rate": rate,
        "sent_records": sent,
        "achieved_rate": round(sent / args.latency_seconds),
        **{f"p{int(q * 100)}_ms": round(quantile(q, window) * 1000, 1) for q in (0.5, 0.95, 0.99)},
    }


def _native_crc32c() -> bool:
    from kafka.record import util

    return getattr(util, "crc32c_c", None) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="Records pre-filled")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--batch-records", type=int, default=500, help="Records per message")
    parser.add_argument("--attack-share", type=float, default=0.05, help="Share of attacks")
    parser.add_argument("--flows", type=int, default=2000, help="Distinct flows per kind")
    parser.add_argument("--hidden", default="256,128", help="Hidden layer widths")
    parser.add_argument("--latency-rates", default="20000,100000", help="records/s, comma list")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--processor-args", default="", help="Extra `antinex process` flags")
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument(
        "--compression",
        default="lz4",
        choices=["none", "lz4", "gzip"],
        help="Compression of the pre-filled messages, as the sensor's --compression",
    )
    parser.add_argument("--json", help="Write the results to this file")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="antinex-bench-processor-"))
    topic = f"bench-processor-{uuid.uuid4().hex[:8]}"
    group = f"{topic}-group"
    results: dict[str, Any] = {
        "records": args.records,
        "partitions": args.partitions,
        "cpus": os.cpu_count(),
        "load_average_at_start": load_average(),
        "native_crc32c": _native_crc32c(),
    }
    proc = None
    try:
        hidden = tuple(int(w) for w in args.hidden.split(","))
        started = time.perf_counter()
        model = tiny_model.train(workdir / "model", hidden=hidden, rows=20_000, epochs=2)
        results["model"] = {"hidden": hidden, "train_s": round(time.perf_counter() - started, 1)}
        pool = min(args.records, 100_000)
        messages = batch_messages(
            pool, args.partitions, args.batch_records, args.attack_share, args.flows
        )
        topics.create_topic(args.bootstrap_servers, topic, args.partitions)
        written, fill_s = prefill(
            args.bootstrap_servers, topic, messages, args.records, workdir, args.compression
        )
        results["prefill"] = {"records": written, "seconds": round(fill_s, 1)}
        print(f"pre-filled {written:,} records in {fill_s:.1f} s", flush=True)

        port = _free_port()
        proc = start_processor(args, model, topic, group, workdir, port)
        wait_for_endpoint(port, proc)
        results["drain"] = measure_drain(port, proc, written)
        drain = results["drain"]
        print(
            f"drain: {drain['records_per_s']:,} records/s over {drain['measured_records']:,} "
            f"records ({drain['seconds']} s), processor CPU {drain['cpu_share']:.0%} of a core; "
            f"CPU per record: main thread {drain['main_thread_us_per_record']} us, "
            f"Kafka IO thread {drain['busiest_other_thread_us_per_record']} us; "
            f"load average {drain['load_average']}",
            flush=True,
        )
        results["latency"] = []
        for rate in (int(r) for r in args.latency_rates.split(",") if r):
            row = measure_latency(args, port, topic, messages, rate)
            results["latency"].append(row)
            print(
                f"latency at {row['achieved_rate']:,} records/s: p50 {row['p50_ms']} ms, "
                f"p95 {row['p95_ms']} ms, p99 {row['p99_ms']} ms",
                flush=True,
            )
        final = scrape(port)
        results["alerts"] = sum(
            v for k, v in final.items() if k.startswith("antinex_processor_alerts_published_total")
        )
        results["dead_lettered"] = sum(
            v
            for k, v in final.items()
            if k.startswith("antinex_processor_records_dead_lettered_total")
        )
        proc.send_signal(signal.SIGTERM)
        results["exit_code"] = proc.wait(timeout=60)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        topics.delete_topics(
            args.bootstrap_servers, [topic, f"{topic}-alerts", f"{topic}-dead"], [group]
        )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps(results), flush=True)
        print(f"work dir (processor log): {workdir}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
