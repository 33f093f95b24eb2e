"""Parts of the processor that need no broker: explanations, scored marks, bulk histograms, the
model watcher, alert documents, the alerts table, the outbox and the poll backoff while no broker
answers."""

from __future__ import annotations

import itertools
import json
import logging
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import REGISTRY
from support import tiny_model

from models.artifact import KERAS_MODEL, MANIFEST, SCALER, ModelRefused, Scaler
from stream_processor.alerts import alert_document, evidence_of, iso_time
from stream_processor.clients import PollBackoff
from stream_processor.explain import BenignBaseline, log_odds_gradients, top_features
from stream_processor.intake import DeadLetter
from stream_processor.metrics import BulkHistogram
from stream_processor.offsets import ScoredMarks
from stream_processor.outbox import Outbox
from stream_processor.reload import ModelWatcher
from stream_processor.tail import format_row, table_cells
from stream_processor.windows import NEW, Raised


def dense_layers(sizes: list[int], last: str, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        activation = last if i == len(sizes) - 2 else "tanh"
        layers.append((rng.normal(size=(n_in, n_out)), rng.normal(size=n_out), activation))
    return layers


def log_odds(layers: list, x: np.ndarray) -> np.ndarray:
    out = x
    for kernel, bias, activation in layers:
        z = out @ kernel + bias
        if activation == "tanh":
            out = np.tanh(z)
        elif activation == "sigmoid":
            return z[:, 0]  # the logit is the log-odds
        else:
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            return np.log((1 - p[:, 0]) / p[:, 0])
    raise AssertionError("no output layer")


class TestExplain:
    @pytest.mark.parametrize("last", ["sigmoid", "softmax"])
    def test_gradients_match_finite_differences(self, last: str) -> None:
        """The back-propagated log-odds gradient agrees with a numerical one."""
        layers = dense_layers([4, 5, 3 if last == "softmax" else 1], last)
        x = np.random.default_rng(1).normal(size=(2, 4))
        step = 1e-6

        numeric = np.stack(
            [
                (
                    log_odds(layers, x + step * np.eye(4)[j])
                    - log_odds(layers, x - step * np.eye(4)[j])
                )
                / (2 * step)
                for j in range(4)
            ],
            axis=1,
        )

        np.testing.assert_allclose(numeric, log_odds_gradients(layers, x), rtol=1e-5, atol=1e-7)

    def test_top_features_rank_by_contribution_and_report_raw_values(self) -> None:
        """Only the feature the model weighs and that departs from the benign mean comes first."""
        kernel = np.zeros((3, 1))
        kernel[1, 0] = 2.0
        model = SimpleNamespace(
            scaler=Scaler(np.zeros(3), np.full(3, 10.0)),
            forward=SimpleNamespace(layers=[(kernel, np.zeros(1), "sigmoid")]),
        )
        baseline = BenignBaseline(("a", "b", "c"))
        baseline.add(np.array([[5.0, 1.0, 5.0]], dtype=np.float32), np.array([True]))

        [top] = top_features(model, np.array([[9.0, 9.0, -1.0]], dtype=np.float32), baseline, 2)

        assert "b" == top[0]["name"]
        assert 9 == top[0]["value"]
        assert top[0]["contribution"] == pytest.approx(2 * (0.8 - -0.8), rel=1e-4)
        assert 0 == top[1]["contribution"]

    def test_with_a_log_column_the_benign_mean_is_a_mean_of_logs(self) -> None:
        """The distance to benign is measured where the network sees the feature: after the
        scaler's log step, from the mean of the logged benign values."""
        kernel = np.array([[2.0]])
        scaler = Scaler(np.zeros(1), np.full(1, 8.0), log_columns=(0,))
        model = SimpleNamespace(
            scaler=scaler, forward=SimpleNamespace(layers=[(kernel, np.zeros(1), "sigmoid")])
        )
        baseline = BenignBaseline(("rate",), scaler.compress)
        baseline.add(np.array([[0.0], [np.expm1(4.0)]], dtype=np.float32), np.array([True, True]))

        [top] = top_features(model, np.array([[np.expm1(6.0)]], dtype=np.float32), baseline, 1)

        # logs 0 and 4: mean 2, scaled -0.5; the alerted row's log 6 scales to 0.5
        assert pytest.approx([2.0]) == baseline.mean().tolist()
        assert round(float(np.float32(np.expm1(6.0))), 4) == top[0]["value"]
        assert pytest.approx(2.0 * (0.5 - -0.5), rel=1e-4) == top[0]["contribution"]


class TestScoredMarks:
    def test_offsets_at_or_below_the_mark_are_duplicates_after_a_restart(self, tmp_path: Path):
        """A mark written by one processor is read by the next owner of the partition."""
        first = ScoredMarks(tmp_path, "group/1", "packets")
        first.advance(2, 41)
        first.advance(2, 40)  # never moves back

        second = ScoredMarks(tmp_path, "group/1", "packets")

        assert 41 == second.load(2)
        assert second.is_duplicate(2, 41)
        assert not second.is_duplicate(2, 42)
        assert not second.is_duplicate(0, 0)

    def test_a_mark_past_the_partition_end_is_stale_and_dropped(self, tmp_path: Path) -> None:
        """A topic recreated under the same name does not make every record a duplicate."""
        ScoredMarks(tmp_path, "g", "packets").advance(0, 500)
        marks = ScoredMarks(tmp_path, "g", "packets")

        assert marks.load(0, end_offset=10) is None
        assert not marks.is_duplicate(0, 5)


class TestOutbox:
    def test_a_send_no_broker_takes_in_time_fails_the_batch_instead_of_raising(self) -> None:
        """A dead letter the producer cannot even queue (no broker answers within max_block_ms)
        makes ``settle`` report the batch as not acknowledged."""
        from kafka import KafkaProducer

        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        producer = KafkaProducer(
            bootstrap_servers=f"127.0.0.1:{port}", max_block_ms=300, api_version=(2, 8)
        )
        outbox = Outbox(producer, "alerts", "dead", 60.0)
        failures = REGISTRY.get_sample_value("antinex_processor_publish_failures_total") or 0.0
        try:
            outbox.send_dead_letters([DeadLetter("bad_json", "", "packets", 0, 7, None, b"{")])
            acked = outbox.settle()
        finally:
            outbox.close(timeout_s=1.0)

        assert not acked
        assert failures + 1 == REGISTRY.get_sample_value("antinex_processor_publish_failures_total")


class TestPollBackoff:
    def test_failed_polls_wait_longer_each_time_and_are_logged_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The waits double up to the cap; one event when the failures start, one at recovery."""
        backoff = PollBackoff(first_s=0.5, most_s=3.0)
        error = ConnectionError("refused")

        with caplog.at_level(logging.INFO, logger="antinex.processor"):
            waits = [backoff.failed(error) for _ in range(5)]
            backoff.succeeded()
            backoff.succeeded()

        events = [(r.getMessage(), getattr(r, "failures", None)) for r in caplog.records]
        assert [0.5, 1.0, 2.0, 3.0, 3.0] == waits
        assert [("poll_failed", None), ("poll_recovered", 5)] == events
        assert 0 == backoff.failures


class TestBulkHistogram:
    def test_counts_land_in_inclusive_upper_buckets(self) -> None:
        histogram = BulkHistogram("antinex_test_bulk_seconds", "test", [0.1, 1.0])
        try:
            histogram.observe_many(np.array([0.05, 0.1, 0.5, 2.0]))

            def sample(suffix: str, **labels: str) -> float | None:
                return REGISTRY.get_sample_value(f"antinex_test_bulk_seconds{suffix}", labels)

            assert 2 == sample("_bucket", le="0.1")
            assert 3 == sample("_bucket", le="1.0")
            assert 4 == sample("_bucket", le="+Inf")
            assert 4 == sample("_count")
            assert 2.65 == pytest.approx(sample("_sum"))
        finally:
            REGISTRY.unregister(histogram)


def fake_model_dir(root: Path, name: str) -> Path:
    directory = root / name
    directory.mkdir()
    for file in (MANIFEST, SCALER, KERAS_MODEL):
        (directory / file).write_text(name)
    return directory


class TestModelWatcher:
    def reloads(self, result: str) -> float:
        value = REGISTRY.get_sample_value(
            "antinex_processor_model_reloads_total", {"result": result}
        )
        return value or 0.0

    def test_a_new_version_behind_current_is_loaded_once(self, tmp_path: Path) -> None:
        fake_model_dir(tmp_path, "v1")
        fake_model_dir(tmp_path, "v2")
        (tmp_path / "current").symlink_to("v1")
        loaded = []
        model = SimpleNamespace(version="v2")
        watcher = ModelWatcher(
            tmp_path, 1.0, clock=lambda: 100.0, loader=lambda p: loaded.append(p) or model
        )
        watcher._next_check = 0
        before = self.reloads("loaded")

        (tmp_path / "current").unlink()
        (tmp_path / "current").symlink_to("v2")

        assert model is watcher.poll("v1")
        watcher._next_check = 0
        assert watcher.poll("v2") is None  # unchanged since
        assert [tmp_path] == loaded
        assert 1 == self.reloads("loaded") - before

    def test_a_refused_version_is_counted_and_not_retried_until_it_changes(
        self, tmp_path: Path
    ) -> None:
        directory = fake_model_dir(tmp_path, "v1")
        attempts = []

        def refuse(path: Path) -> None:
            attempts.append(path)
            raise ModelRefused("scaler has 3 columns, the manifest lists 4 features")

        watcher = ModelWatcher(tmp_path / "v1", 1.0, clock=lambda: 100.0, loader=refuse)
        before = self.reloads("refused")
        (directory / SCALER).write_text("changed")
        watcher._next_check = 0

        assert watcher.poll("v1") is None
        watcher._next_check = 0
        assert watcher.poll("v1") is None
        assert 1 == len(attempts)
        assert 1 == self.reloads("refused") - before


class TestAlertDocument:
    def test_an_alert_uses_ecs_names_nested_as_objects(self) -> None:
        records = tiny_model.synthetic_records(1, [tiny_model.PORTSCAN])
        top = [{"name": "tcp_flag_syn", "value": 1, "contribution": 1.5}]
        evidence = evidence_of(records[0], 0.97, "portscan", top, ("packets", 2, 17))
        raised = Raised(
            NEW, records["flow_id"][0].decode(), 2, 12, 1_000_000_000, 2_000_000_000, evidence
        )

        alert = json.loads(json.dumps(alert_document(raised, "v9", 0.5, 60.0)))

        assert "alert" == alert["event"]["kind"]
        assert ["network"] == alert["event"]["category"]
        assert "antinex" == alert["event"]["module"]
        assert records["ip_src"][0].decode() == alert["source"]["ip"]
        assert int(records["tcp_sport"][0]) == alert["source"]["port"]
        assert "203.0.113.9" == alert["destination"]["ip"]
        assert "tcp" == alert["network"]["transport"]
        assert "portscan" == alert["rule"]["name"]
        assert "v9" == alert["rule"]["version"]
        assert {"count": 12, "first_seen": iso_time(10**9), "last_seen": iso_time(2 * 10**9)} == (
            alert["antinex"]["packets"]
        )
        assert 0.97 == alert["antinex"]["score"]
        assert 0.5 == alert["antinex"]["threshold"]
        assert top == alert["antinex"]["top_features"]
        assert {"topic": "packets", "partition": 2, "offset": 17} == alert["antinex"]["record"]
        assert "1970-01-01T00:00:01.000Z" == alert["event"]["start"]

    def test_the_alerts_table_shows_time_rule_route_score_and_packets(self) -> None:
        alert = {
            "@timestamp": "2025-01-02T03:04:05.678Z",
            "rule": {"name": "portscan"},
            "source": {"ip": "198.51.100.7", "port": 40000},
            "destination": {"ip": "2001:db8::1", "port": 22},
            "network": {"transport": "tcp"},
            "antinex": {"score": 0.98765, "packets": {"count": 12}},
        }

        line = format_row(table_cells(alert))

        assert line.startswith("2025-01-02 03:04:05  portscan")
        assert "198.51.100.7:40000 → [2001:db8::1]:22 tcp" in line
        assert line.endswith("0.988       12")
