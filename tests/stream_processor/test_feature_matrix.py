"""Building the feature matrix from record arrays, and reading messages into records and dead
letters (no broker)."""

from __future__ import annotations

import io
import json
from collections import namedtuple

import numpy as np
import pytest
from support import tiny_model

from capture.encoding import CONTENT_TYPE_BATCH, CONTENT_TYPE_JSON, row_to_dict
from capture.schema import FEATURES, MISSING, SCHEMA_VERSION
from stream_processor.features import FeatureColumns
from stream_processor.intake import MessageReader

Message = namedtuple("Message", "topic partition offset key value headers")


def batch_message(records: np.ndarray, offset: int = 0, partition: int = 0) -> Message:
    out = io.BytesIO()
    np.save(out, records, allow_pickle=False)
    return Message(
        "packets", partition, offset, None, out.getvalue(), [("content-type", CONTENT_TYPE_BATCH)]
    )


def json_message(value: bytes, offset: int = 0) -> Message:
    return Message("packets", 0, offset, b"k", value, [("content-type", CONTENT_TYPE_JSON)])


def json_record(row: np.void) -> dict:
    return row_to_dict(row)


class TestFeatureColumns:
    def test_columns_follow_the_order_the_model_lists(self) -> None:
        """Column j holds the j-th feature of the manifest, whatever the schema order."""
        records = tiny_model.synthetic_records(4, [tiny_model.PORTSCAN])
        columns = FeatureColumns(["tcp_dport", "frame_len", "tcp_flag_syn"])

        matrix = columns.build([records])

        assert np.float32 == matrix.dtype
        assert records["tcp_dport"].tolist() == matrix[:, 0].tolist()
        assert records["frame_len"].tolist() == matrix[:, 1].tolist()
        assert [1.0] * 4 == matrix[:, 2].tolist()

    def test_missing_fields_are_minus_one(self) -> None:
        """A field the packet does not carry scores as -1."""
        records = tiny_model.empty_records(3)

        matrix = FeatureColumns(FEATURES).build([records])

        assert (3, len(FEATURES)) == matrix.shape
        assert {float(MISSING)} == set(np.unique(matrix).tolist())

    def test_several_arrays_stack_in_order(self) -> None:
        """Rows of consecutive messages follow each other in the matrix."""
        first = tiny_model.synthetic_records(2, [tiny_model.BENIGN])
        second = tiny_model.synthetic_records(3, [tiny_model.PORTSCAN], seed=3)
        columns = FeatureColumns(["payload_len", "tcp_flag_syn"])

        matrix = columns.build([first, second])

        expected = first["payload_len"].tolist() + second["payload_len"].tolist()
        assert expected == matrix[:, 0].tolist()
        assert [0, 0, 1, 1, 1] == matrix[:, 1].tolist()

    def test_float_features_keep_their_fraction(self) -> None:
        """payload_entropy is copied as a float, not truncated."""
        records = tiny_model.synthetic_records(5, [tiny_model.BENIGN], seed=4)

        matrix = FeatureColumns(["payload_entropy"]).build([records])

        assert records["payload_entropy"].tolist() == pytest.approx(matrix[:, 0].tolist())

    def test_a_text_column_in_place_of_a_feature_is_named(self) -> None:
        """A batch whose feature column is not numeric is refused with the column's name."""
        dtype = np.dtype([("tcp_dport", "S8"), ("frame_len", "<i8")])

        assert "tcp_dport has type |S8, not a number" == FeatureColumns(
            ["frame_len", "tcp_dport"]
        ).wrong_column(dtype)

    def test_unknown_feature_names_are_refused(self) -> None:
        with pytest.raises(ValueError, match="not_a_field"):
            FeatureColumns(["frame_len", "not_a_field"])


class TestMessageReader:
    def reader(self) -> MessageReader:
        return MessageReader(FeatureColumns(FEATURES))

    def test_batch_and_json_messages_both_become_records(self) -> None:
        """One batch of 3 and two JSON records give 5 records to score and no dead letters."""
        records = tiny_model.synthetic_records(5, [tiny_model.BENIGN])
        messages = [batch_message(records[:3], offset=0)]
        messages += [
            json_message(json.dumps(json_record(r)).encode(), i + 1)
            for i, r in enumerate(records[3:])
        ]

        intake = self.reader().read(messages)

        assert 5 == intake.consumed
        assert [] == intake.dead_letters
        assert 5 == sum(len(c.records) for c in intake.chunks)
        assert [(0, 0, 3), (0, 1, 1), (0, 2, 1)] == intake.sizes
        scored = FeatureColumns(FEATURES).build([c.records for c in intake.chunks])
        expected = FeatureColumns(FEATURES).build([records])
        np.testing.assert_allclose(scored, expected, atol=1e-4)  # JSON keeps 4 decimals

    def test_a_message_without_content_type_is_recognised_by_its_bytes(self) -> None:
        records = tiny_model.synthetic_records(2, [tiny_model.BENIGN])
        message = batch_message(records)._replace(headers=[])

        intake = self.reader().read([message])

        assert 2 == sum(len(c.records) for c in intake.chunks)

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            (lambda r: b"{not json", "bad_json"),
            (lambda r: json.dumps({**r, "tcp_dport": "80"}).encode(), "wrong_type"),
            (lambda r: json.dumps({**r, "payload_entropy": float("nan")}).encode(), "not_finite"),
            (
                lambda r: json.dumps({k: v for k, v in r.items() if k != "ip_ttl"}).encode(),
                "missing_field",
            ),
            (lambda r: json.dumps({**r, "schema_version": 99}).encode(), "schema_version"),
        ],
    )
    def test_bad_json_records_become_dead_letters_with_their_reason(self, change, reason) -> None:
        """Each kind of bad JSON record is refused with a stable reason; the value is kept."""
        record = json_record(tiny_model.synthetic_records(1, [tiny_model.BENIGN])[0])
        value = change(record)

        intake = self.reader().read([json_message(value, offset=7)])

        assert [] == intake.chunks
        assert [(reason, 7, value, None)] == [
            (d.reason, d.offset, d.value, d.row) for d in intake.dead_letters
        ]

    def test_a_garbage_batch_is_one_dead_letter_with_the_original_bytes(self) -> None:
        value = b"\x93NUMPY\x01\x00garbage that is no header"
        message = Message("packets", 2, 9, None, value, [("content-type", CONTENT_TYPE_BATCH)])

        intake = self.reader().read([message])

        assert [("bad_batch_header", 2, 9, value)] == [
            (d.reason, d.partition, d.offset, d.value) for d in intake.dead_letters
        ]
        assert 1 == intake.consumed

    def test_bad_rows_of_a_batch_are_dead_lettered_alone_as_json(self) -> None:
        """A NaN and a wrong schema version drop two rows; the other rows are still scored."""
        records = tiny_model.synthetic_records(4, [tiny_model.BENIGN])
        records["payload_entropy"][1] = np.nan
        records["schema_version"][3] = SCHEMA_VERSION + 7

        intake = self.reader().read([batch_message(records, offset=5)])

        assert [0, 2] == [
            int(np.flatnonzero(records["ts_ns"] == t)[0]) for t in intake.chunks[0].records["ts_ns"]
        ]
        letters = sorted(intake.dead_letters, key=lambda d: d.row)
        assert [(1, "not_finite"), (3, "schema_version")] == [(d.row, d.reason) for d in letters]
        row = json.loads(letters[0].value)
        assert "nan" == row["payload_entropy"]
        assert records["flow_id"][1].decode() == row["flow_id"]
        assert 4 == intake.consumed

    def test_an_unknown_content_type_is_dead_lettered(self) -> None:
        message = Message("packets", 0, 1, None, b"x", [("content-type", b"text/csv")])

        intake = self.reader().read([message])

        assert ["unknown_content_type"] == [d.reason for d in intake.dead_letters]
