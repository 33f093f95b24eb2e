"""Malformed records on the packets topic: each lands in the dead-letter topic under its reason,
and the good records around them are all scored."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rigs import ProcessorRun, Topics, read_topic, sample_total, wait_until

from capture.encoding import CONTENT_TYPE_BATCH, CONTENT_TYPE_JSON, row_to_dict

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.faults]

PARTITIONS = 3
MALFORMED = 10_000
OVERSIZED_BYTES = 7 << 20  # the broker takes messages up to 8 MiB
SCORED = "antinex_processor_records_scored_total"
CONSUMED = "antinex_processor_records_consumed_total"
DEAD_LETTERED = "antinex_processor_records_dead_lettered_total"


class Message:
    """One message to publish and what the processor should make of it."""

    def __init__(self, value: bytes, content_type: bytes, bad: Counter[str], good: int) -> None:
        self.value = value
        self.content_type = content_type
        self.bad = bad  # dead letters it should give, by reason
        self.good = good  # records it should get scored


def good_records(count: int, seed: int) -> np.ndarray:
    from support import tiny_model

    kinds = [tiny_model.BENIGN, tiny_model.PORTSCAN]
    return tiny_model.synthetic_records(count, kinds, seed=seed)


def npy(array: np.ndarray) -> bytes:
    import io

    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def json_message(record: dict[str, Any], reason: str | None = None) -> Message:
    value = json.dumps(record).encode()
    return Message(value, CONTENT_TYPE_JSON, Counter({reason: 1} if reason else {}), not reason)


def malformed_json(record: dict[str, Any], number: int) -> Message:
    """The ``number``-th kind of broken JSON record, made from a good one."""
    kind = number % 15
    broken = dict(record)
    raw: bytes | None = None
    if kind == 0:
        raw, reason = json.dumps(record).encode()[:200], "bad_json"
    elif kind == 1:
        raw, reason = b"\x80\x81 not text at all", "bad_json"
    elif kind == 2:
        raw, reason = b"[1, 2, 3]", "bad_json"
    elif kind == 3:
        broken["schema_version"], reason = 99, "schema_version"
    elif kind == 4:
        del broken["schema_version"]
        reason = "schema_version"
    elif kind == 5:
        del broken["tcp_window"]
        reason = "missing_field"
    elif kind == 6:
        broken["tcp_dport"], reason = "80", "wrong_type"
    elif kind == 7:
        broken["ip_ttl"], reason = True, "wrong_type"
    elif kind == 8:
        broken["payload_entropy"], reason = float("nan"), "not_finite"
    elif kind == 9:
        broken["ctx_src_pkt_rate_h1s"], reason = float("-inf"), "not_finite"
    elif kind == 10:
        broken["ctx_flow_age_s"], reason = 1e39, "not_finite"
    elif kind == 11:
        broken["ts_ns"], reason = 2**70, "out_of_range"
    elif kind == 12:
        broken["tcp_seq"], reason = -5, "out_of_range"
    elif kind == 13:
        broken["flow_key"], reason = "é" * 20, "bad_text"
    else:
        value = json.dumps(record).encode()
        return Message(value, b"text/plain", Counter({"unknown_content_type": 1}), 0)
    value = raw if raw is not None else json.dumps(broken).encode()
    return Message(value, CONTENT_TYPE_JSON, Counter({reason: 1}), 0)


def garbage_batch(number: int, records: np.ndarray) -> Message:
    """The ``number``-th kind of batch message that is not a valid batch."""
    kind = number % 3
    if kind == 0:
        value, reason = os.urandom(64 + number), "not_a_batch"
    elif kind == 1:
        value, reason = npy(np.arange(10 + number, dtype="<f8")), "schema_mismatch"
    else:
        value, reason = npy(records)[:-7], "batch_size_mismatch"
    return Message(value, CONTENT_TYPE_BATCH, Counter({reason: 1}), 0)


def batch_with_bad_rows(records: np.ndarray, number: int) -> Message:
    """A batch of which some rows carry NaN or another schema version."""
    rows = records.copy()
    rng = np.random.default_rng(number)
    picked = rng.choice(len(rows), size=70, replace=False)
    rows["payload_printable"][picked[:40]] = np.nan
    rows["schema_version"][picked[40:]] = 7
    bad = Counter({"not_finite": 40, "schema_version": 30})
    return Message(npy(rows), CONTENT_TYPE_BATCH, bad, len(rows) - 70)


def oversized(record: dict[str, Any]) -> list[Message]:
    """Messages close to the broker's limit: a JSON record and a batch of noise."""
    huge = dict(record, flow_key="k" * OVERSIZED_BYTES)
    return [
        Message(json.dumps(huge).encode(), CONTENT_TYPE_JSON, Counter({"bad_text": 1}), 0),
        Message(os.urandom(OVERSIZED_BYTES), CONTENT_TYPE_BATCH, Counter({"not_a_batch": 1}), 0),
    ]


def mixed_messages() -> list[Message]:
    """Exactly ``MALFORMED`` malformed records among about as many good ones, shuffled."""
    records = good_records(12_000, seed=11)
    as_dicts = [row_to_dict(row) for row in records[:4_000]]
    messages = [json_message(record) for record in as_dicts]
    messages += [
        Message(npy(records[start : start + 500]), CONTENT_TYPE_BATCH, Counter(), 500)
        for start in range(4_000, 8_000, 500)
    ]
    messages += [
        batch_with_bad_rows(records[start : start + 500], start)
        for start in range(8_000, 10_000, 500)
    ]
    messages += [garbage_batch(n, records[:20]) for n in range(99)]
    messages += oversized(as_dicts[0])
    bad_so_far = sum(sum(m.bad.values()) for m in messages)
    messages += [malformed_json(as_dicts[n % 4_000], n) for n in range(MALFORMED - bad_so_far)]
    random.Random(5).shuffle(messages)
    return messages


def publish(bootstrap: str, topic: str, messages: list[Message]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=8 << 20, linger_ms=5
    )
    try:
        for number, message in enumerate(messages):
            producer.send(
                topic,
                value=message.value,
                partition=number % PARTITIONS,
                headers=[("content-type", message.content_type)],
            )
        producer.flush(timeout=120)
    finally:
        producer.close()


@pytest.fixture
def processor(
    shared_topics: Topics, kafka_bootstrap: str, tiny_model_dir: Path, tmp_path: Path
) -> Iterator[tuple[ProcessorRun, str, str]]:
    """A processor on fresh topics of the shared broker: (run, packets topic, dead letters)."""
    packets = shared_topics.new("faults-packets", PARTITIONS)
    dead_letters = shared_topics.name("faults-dlq")
    run = ProcessorRun(
        tmp_path,
        kafka_bootstrap,
        tiny_model_dir,
        packets,
        alerts_topic=shared_topics.name("faults-alerts"),
        dead_letter_topic=dead_letters,
        group_id=shared_topics.group("faults"),
        auto_offset_reset="earliest",
        state_dir=str(tmp_path / "state"),
    )
    try:
        yield run, packets, dead_letters
    finally:
        run.kill()


def test_every_malformed_record_is_dead_lettered_with_its_reason_and_every_good_one_scored(
    processor: tuple[ProcessorRun, str, str], kafka_bootstrap: str
) -> None:
    """Bad JSON, wrong types, NaN and infinities, missing fields, other schema versions, huge
    values, messages near the broker's limit and garbage batches, shuffled among good records."""
    run, packets, dead_letters = processor
    messages = mixed_messages()
    expected_bad: Counter[str] = Counter()
    for message in messages:
        expected_bad.update(message.bad)
    expected_good = sum(m.good for m in messages)

    publish(kafka_bootstrap, packets, messages)
    wait_until(
        lambda: (
            run.proc.poll() is not None or sample_total(run, CONSUMED) >= MALFORMED + expected_good
        ),
        150,
        "the processor to consume every record",
        every=0.5,
    )
    assert run.proc.poll() is None, run.tail()
    letters = read_topic(kafka_bootstrap, dead_letters, MALFORMED, timeout=90)
    by_reason = Counter(dict(letter.headers)["reason"].decode() for letter in letters)

    assert MALFORMED == sum(expected_bad.values())
    assert expected_bad == by_reason
    assert expected_good == wait_until(
        lambda: sample_total(run, SCORED) >= expected_good and sample_total(run, SCORED),
        60,
        f"{expected_good} records scored",
    )
    assert MALFORMED + expected_good == sample_total(run, CONSUMED)


def test_batch_header_with_unbalanced_brackets_is_dead_lettered(
    processor: tuple[ProcessorRun, str, str], kafka_bootstrap: str
) -> None:
    """A batch whose .npy header is cut mid-dictionary is refused as bad_batch_header."""
    run, packets, dead_letters = processor
    header = b"{'descr': [('schema_version', '<u2'),\n"
    value = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    good = good_records(100, seed=3)
    publish(
        kafka_bootstrap,
        packets,
        [
            Message(value, CONTENT_TYPE_BATCH, Counter(), 0),
            Message(npy(good), CONTENT_TYPE_BATCH, Counter(), 100),
        ],
    )

    wait_until(
        lambda: run.proc.poll() is not None or sample_total(run, DEAD_LETTERED) >= 1,
        90,
        "a dead letter or the processor's exit",
        every=0.5,
    )
    assert run.proc.poll() is None, run.tail()
    letters = read_topic(kafka_bootstrap, dead_letters, 1, timeout=60)

    assert ["bad_batch_header"] == [dict(m.headers)["reason"].decode() for m in letters]
    assert 100 == wait_until(lambda: sample_total(run, SCORED), 60, "the good batch scored")
