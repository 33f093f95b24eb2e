"""Synthetic packet records and a small Keras model trained on them, for the processor's tests and
benchmark.

The records are IPv4/TCP in the packet record layout (``capture.schema``), everything a packet
would not carry left ``MISSING``. Benign records are established-connection segments (ACK, often
PSH, to 80/443, full-size frames with payload and the timestamp option). Attack records are a
SYN scan: SYN without ACK to random ports, 58-byte frames, no payload. A multi-class variant adds
a FIN scan. Every address is in a documentation range (RFC 5737).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from capture.schema import FEATURES, MISSING, SCHEMA_VERSION, batch_dtype

BENIGN, PORTSCAN, FINSCAN = 0, 1, 2
BINARY_CLASSES = ("benign", "attack")
MULTI_CLASSES = ("benign", "portscan", "finscan")


def empty_records(n: int, payload_bytes: int = 16) -> np.ndarray:
    """``n`` records with every number MISSING and every text empty."""
    records = np.zeros(n, dtype=batch_dtype(payload_bytes))
    for name in records.dtype.names:
        if records.dtype[name].kind in "iuf":
            records[name] = MISSING
    records["schema_version"] = SCHEMA_VERSION
    return records


def _flow(src: str, sport: int, dst: str, dport: int) -> tuple[str, str]:
    lo, hi = sorted([(src, sport), (dst, dport)])
    key = f"6 {lo[0]}:{lo[1]} {hi[0]}:{hi[1]}"
    return key, hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def synthetic_records(
    n: int,
    kinds: Sequence[int] | np.ndarray,
    *,
    seed: int = 0,
    flows: int = 0,
    ts_ns: int | None = None,
    first_host: int = 0,
) -> np.ndarray:
    """``n`` TCP records whose kind (BENIGN, PORTSCAN, FINSCAN) is ``kinds[i % len(kinds)]``.

    With ``flows`` = 0 every record is its own flow (its own source host and port); otherwise
    the records share ``flows`` flows per kind, round robin. ``first_host`` shifts the source
    addresses so that calls can make disjoint flows.
    """
    rng = np.random.default_rng(seed)
    kind = np.resize(np.asarray(kinds, dtype=np.int64), n)
    records = empty_records(n)
    attack = kind != BENIGN
    start = ts_ns if ts_ns is not None else 1_700_000_000 * 10**9
    records["ts_ns"] = start + np.arange(n, dtype=np.int64) * 1000
    records["iface"] = b"synthetic0"
    records["link_type"] = 1
    records["eth_src"] = b"02:00:00:00:00:01"
    records["eth_dst"] = b"02:00:00:00:00:02"
    records["eth_type"] = 0x0800
    records["ip_version"], records["ip_ihl"], records["ip_tos"] = 4, 5, 0
    records["ip_proto"] = records["l4_proto"] = 6
    records["ip_fragment"] = 0
    records["ip_options_len"] = 0
    records["ip_frag"] = 0
    records["ip_id"] = rng.integers(0, 65536, n)
    records["ip_ttl"] = np.where(attack, rng.integers(37, 60, n), 64)
    records["ip_flags"] = np.where(attack, 0, 2)
    records["tcp_dataofs"] = np.where(attack, 6, 8)
    records["tcp_seq"] = rng.integers(0, 2**32, n)
    records["tcp_ack"] = np.where(attack, 0, rng.integers(0, 2**32, n))
    records["tcp_urgptr"] = 0

    syn, fin = kind == PORTSCAN, kind == FINSCAN
    psh = (~attack) & (rng.random(n) < 0.6)
    flags = np.where(syn, 0x02, np.where(fin, 0x01, np.where(psh, 0x18, 0x10)))
    records["tcp_flags"] = flags
    for bit, name in enumerate(("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")):
        records[f"tcp_flag_{name}"] = (flags >> bit) & 1
    records["tcp_window"] = np.where(attack, 1024, rng.integers(500, 65535, n))
    records["tcp_opt_mss"] = np.where(syn, 1460, MISSING)
    records["tcp_opt_timestamp"] = np.where(attack, 0, 1)
    records["tcp_opt_nop_count"] = np.where(attack, 0, 2)
    records["tcp_opt_sackok"] = 0
    payload = np.where(attack, 0, rng.integers(0, 1449, n))
    records["payload_len"] = payload
    records["payload_entropy"] = np.where(payload > 0, rng.uniform(4.0, 8.0, n), MISSING)
    records["payload_printable"] = np.where(payload > 0, rng.uniform(0.1, 1.0, n), MISSING)
    records["ip_len"] = 20 + records["tcp_dataofs"] * 4 + payload
    records["frame_len"] = records["frame_caplen"] = 14 + records["ip_len"]

    _address(records, kind, rng, flows, first_host)
    return records


def _address(
    records: np.ndarray, kind: np.ndarray, rng: np.random.Generator, flows: int, first_host: int
) -> None:
    """Endpoints, ports and flow keys: one flow per record, or ``flows`` flows per kind."""
    n = len(records)
    slot = np.arange(n) if not flows else (np.arange(n) % flows) + kind * flows
    distinct, first, which = np.unique(slot, return_index=True, return_inverse=True)
    attack_port = rng.integers(1, 65536, len(distinct))
    table = []
    for i, s in enumerate(distinct):
        host = first_host + int(s)
        src = f"198.51.{(host // 250) % 250}.{host % 250 + 1}"
        sport = 32768 + (host * 7) % 28000
        is_attack = kind[first[i]] != BENIGN
        dst, dport = ("203.0.113.9", int(attack_port[i])) if is_attack else ("203.0.113.80", 443)
        key, flow_id = _flow(src, sport, dst, dport)
        direction = 0 if (src, sport) < (dst, dport) else 1
        table.append((src, sport, dst, dport, key, flow_id, direction))
    columns = list(zip(*table, strict=True))
    for name, column in zip(
        ("ip_src", "tcp_sport", "ip_dst", "tcp_dport", "flow_key", "flow_id", "flow_dir"),
        columns,
        strict=True,
    ):
        records[name] = np.asarray(column)[which]


def training_set(
    rows: int, classes: Sequence[str], seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records, their class index, and their feature matrix in ``FEATURES`` order."""
    from stream_processor.features import FeatureColumns

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.resize(np.arange(len(classes)), rows))
    records = synthetic_records(rows, labels, seed=seed)
    matrix = FeatureColumns(FEATURES).build([records]).copy()
    return records, labels, matrix


def train(
    directory: Path,
    *,
    version: str = "v1",
    classes: Sequence[str] = BINARY_CLASSES,
    hidden: Sequence[int] = (16,),
    rows: int = 3000,
    epochs: int = 4,
    threshold: float = 0.5,
    seed: int = 0,
    log_columns: Sequence[int] = (),
) -> Path:
    """Train a Dense model on synthetic records and save it as a model directory; its scaler
    takes ``log_columns`` (indices into ``FEATURES``) through the log step."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from models.artifact import Manifest, Scaler, save

    keras.utils.set_random_seed(seed)
    _records, labels, matrix = training_set(rows, classes, seed)
    scaler = Scaler.fit(matrix, log_columns=tuple(log_columns))
    scaled = scaler.transform(matrix)
    layers: list = [keras.Input((len(FEATURES),))]
    layers += [keras.layers.Dense(width, activation="relu") for width in hidden]
    if len(classes) == 2:
        layers.append(keras.layers.Dense(1, activation="sigmoid"))
        target = (labels != BENIGN).astype(np.float32)
        loss = "binary_crossentropy"
    else:
        layers.append(keras.layers.Dense(len(classes), activation="softmax"))
        target = labels
        loss = "sparse_categorical_crossentropy"
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.fit(scaled, target, epochs=epochs, batch_size=128, verbose=0)
    manifest = Manifest(
        model_version=version,
        features=list(FEATURES),
        threshold=threshold,
        classes=list(classes),
    )
    return save(Path(directory), model, scaler, manifest)
