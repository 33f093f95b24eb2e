"""Labelled dataset files: packet records plus label, attack_type, scenario and capture columns,
as CSV (optionally gzip), written in chunks and loaded back as numpy columns.

A dataset file has the record fields in schema order, then the four columns of ``META``:

    label        0 benign, 1 attack
    attack_type  ``benign`` or the attack type a label rule gave
    scenario     the name given with ``--scenario`` (default: the input's file name stem)
    capture      the input file the packet came from: packets of one capture share a session

Missing values are empty cells, as in the sensor's CSV; loaded back they are ``MISSING`` (-1)
in number columns and ``""`` in text columns.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from antinex.options import UsageError
from capture.schema import BY_NAME, FEATURES, NAMES, SCHEMA_VERSION
from models.progress import Progress

META = ("label", "attack_type", "scenario", "capture")
COLUMNS = (*NAMES, *META)
# Text columns kept in memory by default: those the splits, label rules and duplicate checks use.
DEFAULT_TEXT = (
    "eth_src",
    "eth_dst",
    "arp_psrc",
    "arp_pdst",
    "ip_src",
    "ip_dst",
    "ipv6_src",
    "ipv6_dst",
    "payload_hex",
    "flow_id",
    "attack_type",
    "scenario",
    "capture",
)
_CHUNK_ROWS = 20_000
csv.field_size_limit(1 << 24)  # v1 files keep whole payloads as hex in one cell


def column_kind(name: str) -> str:
    """``int``, ``float`` or ``text``: how a dataset column is held in memory."""
    if name == "label":
        return "int"
    if name in META:
        return "text"
    f = BY_NAME.get(name)
    if f is None:
        return "float"
    if f.is_text:
        return "text"
    return "float" if f.type == "f32" else "int"


@dataclass
class SourceFile:
    """One file a dataset was read from: its name, content hash and row count."""

    path: str
    sha256: str
    rows: int


@dataclass
class Dataset:
    """Columns of equal length, by name, and where they came from.

    ``kind`` is ``antinex`` (this project's records) or ``antinex-v1`` (an AntiNex v1 CSV read
    as it is); ``candidates`` are the columns a model or an audit may treat as features.
    """

    columns: dict[str, np.ndarray]
    sources: list[SourceFile] = field(default_factory=list)
    kind: str = "antinex"
    candidates: tuple[str, ...] = FEATURES

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def has(self, name: str) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def matrix(self, names: Sequence[str], rows: np.ndarray | None = None) -> np.ndarray:
        """The named number columns as a float32 matrix, all rows or the given ones."""
        picked = [self.columns[n] if rows is None else self.columns[n][rows] for n in names]
        if not picked:
            return np.zeros((self.n_rows if rows is None else len(rows), 0), dtype=np.float32)
        return np.column_stack(picked).astype(np.float32)

    def take(self, rows: np.ndarray) -> Dataset:
        return Dataset(
            {k: v[rows] for k, v in self.columns.items()}, self.sources, self.kind, self.candidates
        )

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data: each file's sha256 and rows, one combined sha256, rows."""
        if len(self.sources) == 1:
            combined = self.sources[0].sha256
        else:
            combined = hashlib.sha256(
                "\n".join(s.sha256 for s in self.sources).encode()
            ).hexdigest()
        return {
            "files": [
                {"name": os.path.basename(s.path), "sha256": s.sha256, "rows": s.rows}
                for s in self.sources
            ],
            "sha256": combined,
            "rows": self.n_rows,
        }


# Files --------------------------------------------------------------------------------------


def open_text(path: str | Path, mode: str) -> IO[str]:
    """A text stream of ``path``; ``.gz`` files are (de)compressed on the fly."""
    if str(path).endswith(".gz"):
        return gzip.open(path, mode + "t", newline="", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, newline="", encoding="utf-8")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cells(name: str, values: np.ndarray) -> list[str]:
    """A column as CSV cells, missing values as empty cells."""
    kind = column_kind(name)
    if kind == "text":
        return [str(v) for v in values.tolist()]
    if kind == "int" or name == "label":
        return ["" if v == -1 else str(v) for v in values.astype(np.int64).tolist()]
    return ["" if v == -1 else repr(v) for v in values.astype(np.float64).tolist()]


class DatasetWriter:
    """Writes dataset rows to a CSV (or ``.csv.gz``) file, chunk by chunk.

    Rows go to a hidden ``.partial-`` file beside ``path``, renamed to ``path`` when the writer
    closes after success, so a failed build never leaves a file that looks complete.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self._partial = self.path.with_name(".partial-" + self.path.name)
        try:
            self._stream = open_text(self._partial, "w")
        except OSError as err:
            raise UsageError(f"cannot write {path}: {err.strerror}; choose another --out") from err
        self._csv = csv.writer(self._stream)
        self._csv.writerow(COLUMNS)

    def write(self, columns: dict[str, np.ndarray]) -> None:
        n = len(columns["label"])
        cells = [_cells(name, columns[name]) if name in columns else [""] * n for name in COLUMNS]
        self._csv.writerows(zip(*cells, strict=True))
        self.rows += n

    def close(self, complete: bool = True) -> None:
        """Close the file; keep it under its name when ``complete``, else delete it."""
        self._stream.close()
        if complete:
            os.replace(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(complete=exc_type is None)


def records_to_columns(records: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Packet record lists (schema order) as numpy columns."""
    transposed = list(zip(*records, strict=True)) if records else [()] * len(NAMES)
    columns: dict[str, np.ndarray] = {}
    for name, values in zip(NAMES, transposed, strict=True):
        kind = column_kind(name)
        if kind == "text":
            columns[name] = np.array(values, dtype=object)
        else:
            columns[name] = np.array(values, dtype=np.float64 if kind == "float" else np.int64)
    return columns


# Loading ------------------------------------------------------------------------------------


def read_header(path: str | Path) -> list[str]:
    """The first row of a CSV file (or ``.csv.gz``)."""
    try:
        with open_text(path, "r") as stream:
            return next(csv.reader(stream), [])
    except FileNotFoundError as err:
        raise UsageError(
            f"dataset {path} does not exist; build one with `antinex dataset build`"
        ) from err
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as err:
        raise UsageError(f"dataset {path} is not a readable CSV file ({err})") from err


def parse_column(kind: str, values: Sequence[str]) -> np.ndarray:
    """CSV cells of one column as a numpy array: empty cells become -1 (numbers) or ""."""
    if kind == "text":
        return np.array(values, dtype=object)
    cells = np.array(values, dtype=str)
    cells = np.where(cells == "", "-1", cells)
    if kind == "float":
        return cells.astype(np.float64)
    try:
        return cells.astype(np.int64)
    except ValueError:  # written as "6.0" by some tools
        return cells.astype(np.float64).astype(np.int64)


def iter_csv_chunks(
    path: str | Path, chunk_rows: int = _CHUNK_ROWS
) -> Iterator[tuple[list[str], list[tuple[str, ...]]]]:
    """(header, rows as column tuples) for successive chunks of a CSV file."""
    with open_text(path, "r") as stream:
        reader = csv.reader(stream)
        header = next(reader, [])
        while True:
            rows = [row for _, row in zip(range(chunk_rows), reader, strict=False)]
            if not rows:
                return
            width = len(header)
            bad = next((i for i, row in enumerate(rows) if len(row) != width), None)
            if bad is not None:
                raise UsageError(
                    f"{path}: a row has {len(rows[bad])} cells, the header {width}; "
                    "the file is damaged or not a dataset"
                )
            yield header, list(zip(*rows, strict=True))


def load_dataset(
    paths: Iterable[str | Path],
    text: Sequence[str] = DEFAULT_TEXT,
    progress: bool = True,
) -> Dataset:
    """Load dataset files (this project's format) into one Dataset.

    Number columns are all loaded; of the text columns only ``text`` (the rest are large and
    no model or check reads them).
    """
    # Limitation: every row is held in memory (about 1 KB per row with the default text
    # columns); a dataset larger than memory has to be sampled before training.
    parts: list[dict[str, np.ndarray]] = []
    sources: list[SourceFile] = []
    for path in paths:
        header = read_header(path)
        _check_header(path, header)
        wanted = [(i, name) for i, name in enumerate(header) if name in COLUMNS]
        wanted = [(i, n) for i, n in wanted if column_kind(n) != "text" or n in text]
        meter = Progress(f"loading {os.path.basename(str(path))}") if progress else None
        chunks: list[dict[str, np.ndarray]] = []
        rows = 0
        for _, cells in iter_csv_chunks(path):
            try:
                chunk = {name: parse_column(column_kind(name), cells[i]) for i, name in wanted}
            except ValueError as err:
                raise UsageError(f"{path} holds a cell that is not a number ({err})") from err
            chunks.append(chunk)
            rows += len(cells[0])
            if meter:
                meter.update(rows)
        if meter:
            meter.finish()
        if chunks:
            part = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
            _check_schema_version(path, part["schema_version"])
            parts.append(part)
        sources.append(SourceFile(str(path), sha256_of(path), rows))
    if not parts:
        raise UsageError("the dataset files hold no rows; build them from captures with labels")
    common = set(parts[0]).intersection(*parts[1:])
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k in common}
    return Dataset(columns, sources)


def _check_header(path: str | Path, header: list[str]) -> None:
    missing = [name for name in ("schema_version", *META) if name not in header]
    if missing:
        raise UsageError(
            f"{path} lacks the columns {', '.join(missing)}: it is not a labelled dataset; "
            "build one with `antinex dataset build` (AntiNex v1 files: `dataset import-antinex`)"
        )
    absent = [name for name in NAMES if name not in header]
    if absent:
        raise UsageError(
            f"{path} lacks {len(absent)} record fields (first: {absent[0]}): it was built with "
            f"another record schema; rebuild it with this release's `antinex dataset build`"
        )


def _check_schema_version(path: str | Path, versions: np.ndarray) -> None:
    found = sorted(set(np.unique(versions).tolist()) - {SCHEMA_VERSION})
    if found:
        raise UsageError(
            f"{path} holds records of schema version {found[0]}, this release reads version "
            f"{SCHEMA_VERSION}; rebuild the dataset from its captures"
        )


def write_columns(path: str | Path, columns: dict[str, np.ndarray]) -> int:
    """Write complete columns (record fields and META) as one dataset file; returns rows."""
    with DatasetWriter(path) as writer:
        writer.write(columns)
        return writer.rows


def empty_columns(n: int) -> dict[str, np.ndarray]:
    """Columns of ``n`` rows with every record field missing (schema_version set)."""
    columns: dict[str, np.ndarray] = {}
    for name in NAMES:
        kind = column_kind(name)
        if kind == "text":
            columns[name] = np.full(n, "", dtype=object)
        else:
            columns[name] = np.full(n, -1, dtype=np.float64 if kind == "float" else np.int64)
    columns["schema_version"][:] = SCHEMA_VERSION
    return columns
