"""``antinex alerts``: follow the alerts topic and print each alert for a person, or as JSON lines.

The tail reads without a consumer group (it commits nothing and disturbs no processor), from the
end of every partition of the alerts topic, or from the oldest kept alert with
``--from-beginning``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from antinex.logs import event
from antinex.options import RuntimeFailure

log = logging.getLogger("antinex.alerts")

_COLUMNS = ("time", "rule/attack", "src → dst", "score", "packets")
_WIDTHS = (19, 16, 52, 6, 7)


def format_row(cells: tuple[str, ...]) -> str:
    """One table line: fixed-width columns, the numbers right-aligned."""
    parts = []
    for i, (cell, width) in enumerate(zip(cells, _WIDTHS, strict=True)):
        text = cell if len(cell) <= width else cell[: width - 1] + "…"
        parts.append(text.rjust(width) if i >= 3 else text.ljust(width))
    return "  ".join(parts).rstrip()


def table_cells(alert: dict[str, Any]) -> tuple[str, ...]:
    """The table columns of one alert document."""
    stamp = str(alert.get("@timestamp", ""))[:19].replace("T", " ")
    rule = str(alert.get("rule", {}).get("name", "?"))
    extra = alert.get("antinex", {})
    if extra.get("alert", {}).get("kind") == "window_summary":
        rule += " (window)"
    transport = alert.get("network", {}).get("transport", "")
    route = f"{_endpoint(alert.get('source', {}))} → {_endpoint(alert.get('destination', {}))}"
    if transport:
        route += f" {transport}"
    score = extra.get("score")
    packets = extra.get("packets", {}).get("count")
    return (
        stamp,
        rule,
        route,
        f"{score:.3f}" if isinstance(score, int | float) else "?",
        str(packets) if packets is not None else "?",
    )


def _endpoint(side: dict[str, Any]) -> str:
    ip = side.get("ip") or side.get("mac") or "?"
    port = side.get("port")
    if port is None:
        return str(ip)
    return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"


class AlertTail:
    """Reads the alerts topic and prints what arrives."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        from_beginning: bool,
        client_options: dict[str, Any] | None = None,
        connect_timeout_s: float = 30.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.from_beginning = from_beginning
        self.client_options = client_options or {}
        self.connect_timeout_s = connect_timeout_s
        self.skipped = 0

    def run(
        self, as_json: bool, limit: int = 0, idle_exit_s: float = 0.0, out: TextIO | None = None
    ) -> int:
        out = out or sys.stdout
        consumer = self._connect()
        shown = 0
        last_alert = time.monotonic()
        try:
            if not self._assign(consumer, idle_exit_s):
                return 0
            if not as_json:
                print(format_row(_COLUMNS), file=out, flush=True)
            while not limit or shown < limit:
                polled = consumer.poll(timeout_ms=500)
                for message in (m for batch in polled.values() for m in batch):
                    if limit and shown >= limit:
                        break
                    if self._show(message.value, as_json, out):
                        shown += 1
                        last_alert = time.monotonic()
                if polled:
                    out.flush()
                if idle_exit_s and time.monotonic() - last_alert >= idle_exit_s:
                    break
        except BrokenPipeError:  # the reader went away (e.g. `| head`): nothing more to show
            pass
        finally:
            consumer.close()
        if self.skipped:
            event(log, logging.WARNING, "alerts_skipped", messages=self.skipped, reason="not JSON")
        return 0

    def _show(self, value: bytes, as_json: bool, out: TextIO) -> bool:
        try:
            alert = json.loads(value)
        except (ValueError, TypeError):
            self.skipped += 1
            return False
        if not isinstance(alert, dict):
            self.skipped += 1
            return False
        if as_json:
            print(json.dumps(alert, separators=(",", ":")), file=out)
        else:
            print(format_row(table_cells(alert)), file=out)
        return True

    def _connect(self) -> Any:
        from kafka import KafkaConsumer

        deadline = time.monotonic() + self.connect_timeout_s
        delay = 0.5
        while True:
            try:
                return KafkaConsumer(
                    bootstrap_servers=self.bootstrap_servers.split(","),
                    group_id=None,
                    enable_auto_commit=False,
                    client_id="antinex-alerts",
                    bootstrap_timeout_ms=5000,
                    **self.client_options,
                )
            except Exception as err:  # kafka-python raises many kinds for an absent broker
                if time.monotonic() + delay > deadline:
                    raise RuntimeFailure(
                        f"cannot reach the Kafka broker at {self.bootstrap_servers} "
                        f"({type(err).__name__}); start it (antinex kafka start) or fix "
                        "--bootstrap-servers"
                    ) from err
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _assign(self, consumer: Any, idle_exit_s: float) -> bool:
        """Assign every partition of the topic, waiting for the topic to exist (False when
        ``idle_exit_s`` passed first)."""
        from kafka import TopicPartition

        started = time.monotonic()
        waiting_logged = False
        while True:
            partitions = consumer.partitions_for_topic(self.topic)
            if partitions:
                break
            if not waiting_logged:
                event(log, logging.INFO, "waiting_for_topic", topic=self.topic)
                waiting_logged = True
            if idle_exit_s and time.monotonic() - started >= idle_exit_s:
                return False
            time.sleep(1.0)
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        if self.from_beginning:
            consumer.seek_to_beginning(*assigned)
        else:
            consumer.seek_to_end(*assigned)
        return True
