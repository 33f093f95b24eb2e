"""One ``antinex process`` against the real broker: records in, alerts and dead letters out,
metrics, the alerts command, kcat, hot reload and SIGTERM.

The tests share one processor subprocess (starting one costs seconds: it imports Keras) and run
in file order: the hot-reload test changes the model version the later tests see, and the
SIGTERM test, last, stops the processor.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from support import tiny_model

from antinex import cli
from capture.encoding import CONTENT_TYPE_BATCH, row_to_dict
from capture.publisher import partition_of

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
PARTITIONS = 3


def alerts_of(kafka_tools: Any, topic: str, least: int, timeout: float = 30) -> list[dict]:
    """Alert documents of the alerts topic, once at least ``least`` arrived (or timeout)."""
    return [json.loads(m.value) for m in kafka_tools.read(topic, least, timeout)]


def wait_for_alert(kafka_tools: Any, topic: str, flow_id: str, timeout: float = 60) -> dict:
    def found() -> dict | None:
        for alert in alerts_of(kafka_tools, topic, 10**9, timeout=1.0):
            if alert["antinex"]["flow"]["id"] == flow_id:
                return alert
        return None

    return kafka_tools.wait_until(found, timeout, f"an alert for flow {flow_id}")


def point_current(root: Path, target: Path) -> None:
    """Switch ``root/current`` to ``target`` atomically, as a deployment would."""
    scratch = root / "current.tmp"
    scratch.unlink(missing_ok=True)
    scratch.symlink_to(target)
    os.replace(scratch, root / "current")


@pytest.fixture(scope="module")
def live(
    trained_models: dict[str, Path], topics: Any, processors: Any, tmp_path_factory: Any
) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("model-root")
    point_current(root, trained_models["v1"])
    topic = topics.new("packets", PARTITIONS)
    alerts, dead, group = topics.name("alerts"), topics.name("dead"), topics.group("group")
    run = processors.start(root, topic, alerts_topic=alerts, dead_letter_topic=dead, group_id=group)
    run.wait_assigned()
    return SimpleNamespace(run=run, topic=topic, alerts=alerts, dead=dead, group=group, root=root)


def test_attack_flows_raise_one_alert_each_and_repeats_are_folded(
    live: SimpleNamespace, publisher: Any, kafka_tools: Any
) -> None:
    """Three attacking flows among benign ones give three ECS alerts; sending the same flows
    again within the window raises no new alert."""
    kinds = [tiny_model.BENIGN] * 3 + [tiny_model.PORTSCAN]
    records = tiny_model.synthetic_records(600, kinds, flows=3, first_host=100)
    attack_flows = {f.decode() for f in records["flow_id"][3::4]}

    publisher.batches(live.topic, records, PARTITIONS, per_message=100)
    kafka_tools.wait_until(lambda: live.run.scored() >= 600, 60, "600 records scored")
    alerts = alerts_of(kafka_tools, live.alerts, 3)

    assert attack_flows == {a["antinex"]["flow"]["id"] for a in alerts}
    assert 3 == len(alerts)
    alert = alerts[0]
    assert "alert" == alert["event"]["kind"]
    assert ["network"] == alert["event"]["category"]
    assert "antinex" == alert["event"]["module"]
    assert "tcp" == alert["network"]["transport"]
    assert {"ip", "port", "mac"} <= set(alert["source"]) | set(alert["destination"])
    assert "attack" == alert["rule"]["name"]
    assert "v1" == alert["antinex"]["model"]["version"]
    counts = [a["antinex"]["packets"]["count"] for a in alerts]
    assert all(1 <= count <= 50 for count in counts)
    assert alert["antinex"]["score"] >= alert["antinex"]["threshold"]
    assert 5 == len(alert["antinex"]["top_features"])

    publisher.batches(live.topic, records, PARTITIONS, per_message=100)
    kafka_tools.wait_until(lambda: live.run.scored() >= 1200, 60, "1200 records scored")

    assert 3 == len(alerts_of(kafka_tools, live.alerts, 4, timeout=3))
    suppressed = live.run.value("antinex_processor_alerts_suppressed_total")
    assert 300 - sum(counts) == suppressed


def test_bad_records_are_dead_lettered_with_their_reason_and_scoring_goes_on(
    live: SimpleNamespace, publisher: Any, kafka_tools: Any
) -> None:
    """Bad JSON, wrong types, NaN, a missing field, another schema version, a garbage batch and
    a bad row in a batch each land on the dead-letter topic; a good record after them is
    still scored and alerted."""
    good = row_to_dict(tiny_model.synthetic_records(1, [tiny_model.BENIGN], first_host=700)[0])
    bad_json = [
        b"{not json",
        json.dumps({**good, "tcp_dport": "80"}).encode(),
        json.dumps({**good, "payload_entropy": float("nan")}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "ip_ttl"}).encode(),
        json.dumps({**good, "schema_version": 99}).encode(),
    ]
    for value in bad_json:
        publisher.json(live.topic, value, partition=0)
    garbage = b"\x93NUMPY\x01\x00this is not a header"
    publisher.raw(live.topic, garbage, partition=1, content_type=CONTENT_TYPE_BATCH)
    mixed = tiny_model.synthetic_records(4, [tiny_model.BENIGN], first_host=800)
    mixed["payload_entropy"][2] = np.inf
    mixed_partition = partition_of(mixed["flow_id"][0].decode(), PARTITIONS)
    publisher.raw(live.topic, _npy(mixed), partition=mixed_partition)
    after = tiny_model.synthetic_records(5, [tiny_model.PORTSCAN], flows=1, first_host=900)
    publisher.batches(live.topic, after, PARTITIONS)

    wait_for_alert(kafka_tools, live.alerts, after["flow_id"][0].decode())
    letters = kafka_tools.read(live.dead, 7)

    by_reason = {}
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        by_reason[headers["reason"]] = (headers, letter.value)
    assert {
        "bad_json",
        "wrong_type",
        "not_finite",
        "missing_field",
        "schema_version",
        "bad_batch_header",
    } == set(by_reason)
    assert 7 == len(letters)
    headers, value = by_reason["bad_batch_header"]
    assert (live.topic, "1") == (headers["source-topic"], headers["source-partition"])
    assert "source-offset" in headers and headers["detail"]
    assert garbage == value
    row_letters = [m for m in letters if ("source-row", b"2") in m.headers]
    assert 1 == len(row_letters)
    assert "inf" == json.loads(row_letters[0].value)["payload_entropy"]
    assert 2 == live.run.value("antinex_processor_records_dead_lettered_total", reason="not_finite")


def _npy(records: np.ndarray) -> bytes:
    import io

    out = io.BytesIO()
    np.save(out, records, allow_pickle=False)
    return out.getvalue()


def test_metrics_are_served_in_the_prometheus_text_format(live: SimpleNamespace) -> None:
    """Counters, histograms, the lag gauge and the model info parse with prometheus_client."""
    families = {f.name: f for f in live.run.scrape()}

    def sample(family: str, name: str, **labels: str) -> float:
        values = [
            s.value
            for s in families[family].samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert values, f"{name} {labels} not exported"
        return values[0]

    consumed = sample(
        "antinex_processor_records_consumed", "antinex_processor_records_consumed_total"
    )
    scored = live.run.scored()
    dead = sum(
        s.value
        for s in families["antinex_processor_records_dead_lettered"].samples
        if s.name.endswith("_total")
    )
    assert "counter" == families["antinex_processor_records_consumed"].type
    assert consumed == scored + dead
    for name in ("antinex_processor_capture_to_verdict_seconds", "antinex_processor_score"):
        assert "histogram" == families[name].type
        assert scored == sample(name, f"{name}_count")
        assert scored == sample(name, f"{name}_bucket", le="+Inf")
    assert "histogram" == families["antinex_processor_batch_records"].type
    assert "histogram" == families["antinex_processor_score_seconds"].type
    assert {"0", "1", "2"} == {
        s.labels["partition"] for s in families["antinex_processor_consumer_lag"].samples
    }
    info = "antinex_processor_model_info"
    assert 1 == sample(info, info, version="v1")
    assert 0 == sample("antinex_processor_duplicates", "antinex_processor_duplicates_total")
    alerts = families["antinex_processor_alerts_published"].samples
    assert sum(s.value for s in alerts if s.name.endswith("_total")) >= 4
    assert all("attack_type" in s.labels for s in alerts)


def test_alerts_command_prints_a_table_or_json_lines(
    live: SimpleNamespace, capsys: pytest.CaptureFixture[str], kafka_bootstrap: str
) -> None:
    """``antinex alerts --from-beginning --limit N`` shows the first N alerts and exits 0."""
    common = ["alerts", "--bootstrap-servers", kafka_bootstrap, "--alerts-topic", live.alerts]
    common += ["--from-beginning", "--limit", "2"]

    assert 0 == cli.main([*common, "--json"])
    as_json = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 0 == cli.main(common)
    table = capsys.readouterr().out.splitlines()

    assert ["alert", "alert"] == [a["event"]["kind"] for a in as_json]
    assert table[0].split() == ["time", "rule/attack", "src", "→", "dst", "score", "packets"]
    assert 3 == len(table)
    assert "attack" in table[1] and "→ 203.0.113.9:" in table[1]
    assert table[1].split()[-1].isdigit()


def test_an_alert_is_readable_with_a_generic_kafka_client(
    live: SimpleNamespace, kcat: str, kafka_bootstrap: str
) -> None:
    """kcat (librdkafka) reads an alert and its content type; the value is plain JSON."""
    done = subprocess.run(
        [
            kcat,
            "-C",
            "-b",
            kafka_bootstrap,
            "-t",
            live.alerts,
            "-o",
            "beginning",
            "-c",
            "1",
            "-e",
            "-q",
            "-f",
            "%h\n%s\n",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert 0 == done.returncode, done.stderr.decode()
    headers, value = done.stdout.decode().split("\n", 1)
    assert "content-type=application/json" == headers
    assert "alert" == json.loads(value)["event"]["kind"]


def test_hot_reload_swaps_a_good_version_and_refuses_a_bad_one(
    live: SimpleNamespace,
    trained_models: dict[str, Path],
    publisher: Any,
    kafka_tools: Any,
) -> None:
    """A version whose scaler disagrees with its manifest is refused (ERROR, metric) and v1
    keeps scoring; then v2 is loaded between batches and its version is on the next alerts."""
    bad = live.root / "bad"
    shutil.copytree(trained_models["v1"], bad)
    scaler = json.loads((bad / "scaler.json").read_text())
    scaler["data_min"], scaler["data_max"] = scaler["data_min"][:-1], scaler["data_max"][:-1]
    (bad / "scaler.json").write_text(json.dumps(scaler))

    point_current(live.root, bad)
    kafka_tools.wait_until(
        lambda: live.run.value("antinex_processor_model_reloads_total", result="refused"),
        30,
        "the bad version refused",
    )
    flows = tiny_model.synthetic_records(5, [tiny_model.PORTSCAN], flows=1, first_host=2000)
    publisher.batches(live.topic, flows, PARTITIONS)
    still_v1 = wait_for_alert(kafka_tools, live.alerts, flows["flow_id"][0].decode())

    point_current(live.root, trained_models["v2"])
    kafka_tools.wait_until(
        lambda: live.run.value("antinex_processor_model_reloads_total", result="loaded"),
        60,
        "v2 loaded",
    )
    flows = tiny_model.synthetic_records(5, [tiny_model.PORTSCAN], flows=1, first_host=3000)
    publisher.batches(live.topic, flows, PARTITIONS)
    now_v2 = wait_for_alert(kafka_tools, live.alerts, flows["flow_id"][0].decode())

    assert "v1" == still_v1["rule"]["version"]
    assert "v2" == now_v2["rule"]["version"]
    refused = live.run.events("model_refused")
    assert 1 == len(refused)
    assert "error" == refused[0]["level"]
    assert "scaler has" in refused[0]["reason"]
    assert 1 == live.run.value("antinex_processor_model_info", version="v2")


def test_sigterm_commits_leaves_the_group_and_exits_zero(
    live: SimpleNamespace, kafka_tools: Any
) -> None:
    """After SIGTERM every partition is committed to its end and the group is empty."""
    code = live.run.stop(signal.SIGTERM)

    assert 0 == code, live.run.tail()
    assert kafka_tools.ends(live.topic, PARTITIONS) == kafka_tools.committed(live.group)
    stopped = live.run.events("processor_stopped")
    assert 1 == len(stopped)
    assert "Empty" == kafka_tools.group_state(live.group)
