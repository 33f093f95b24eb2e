"""Scored marks: the highest offset scored per partition, kept in small files to count duplicates.

Offsets are committed only after a batch's alerts are acknowledged, so a processor that dies
between scoring and committing leaves records that the next owner of the partition scores again.
Before a batch is published and committed, its highest offset is written to
``STATE_DIR/GROUP/TOPIC/PARTITION.json``; a message at or below that mark is a re-delivery and
its records are counted as duplicates. One file per partition lets processors of one group share
a state directory (a partition has one owner at a time). A mark is rewritten in place (one
``pwrite`` of a fixed-width line) rather than through a rename: this runs for every batch.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from antinex.logs import event

log = logging.getLogger("antinex.processor")

# Limitation: processors on different hosts count duplicates after a rebalance only when they
# share the state directory; marks are not fsynced, so a machine crash (not a process crash) can
# lose the last mark and under-count.

_WIDTH = 63  # bytes of a mark line before its newline: room for any 64-bit offset


class ScoredMarks:
    """Highest scored offset per partition of one topic, for one consumer group."""

    def __init__(self, state_dir: Path, group_id: str, topic: str) -> None:
        safe_group = re.sub(r"[^A-Za-z0-9._-]", "_", group_id)
        self.directory = Path(state_dir).expanduser() / safe_group / topic
        self._marks: dict[int, int] = {}
        self._files: dict[int, int] = {}

    def load(self, partition: int, end_offset: int | None = None) -> int | None:
        """Read the mark of ``partition`` from disk; a mark at or past the partition's end
        offset is stale (the topic was recreated) and is dropped."""
        path = self._path(partition)
        try:
            mark = int(json.loads(path.read_text())["scored_through"])
        except FileNotFoundError:
            self._marks.pop(partition, None)
            return None
        except (ValueError, KeyError, TypeError, OSError) as err:
            event(log, logging.WARNING, "scored_mark_unreadable", path=str(path), error=str(err))
            self._marks.pop(partition, None)
            return None
        if end_offset is not None and mark >= end_offset:
            event(
                log,
                logging.WARNING,
                "scored_mark_stale",
                path=str(path),
                mark=mark,
                end_offset=end_offset,
            )
            self._marks.pop(partition, None)
            return None
        self._marks[partition] = mark
        return mark

    def forget(self, partition: int) -> None:
        self._marks.pop(partition, None)
        fd = self._files.pop(partition, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for partition in list(self._files):
            self.forget(partition)

    def is_duplicate(self, partition: int, offset: int) -> bool:
        mark = self._marks.get(partition)
        return mark is not None and offset <= mark

    def advance(self, partition: int, offset: int) -> None:
        """Record that ``offset`` of ``partition`` was scored (written to disk at once)."""
        if offset <= self._marks.get(partition, -1):
            return
        self._marks[partition] = offset
        fd = self._files.get(partition)
        if fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path(partition), os.O_WRONLY | os.O_CREAT, 0o644)
            self._files[partition] = fd
        line = json.dumps({"scored_through": offset}).ljust(_WIDTH) + "\n"
        os.pwrite(fd, line.encode(), 0)

    def _path(self, partition: int) -> Path:
        return self.directory / f"{partition}.json"
