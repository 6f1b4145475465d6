"""The export of an account's orders, without a database: its query string and its lines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from marshmallow import ValidationError

from order_engine.domain.export import COLUMNS
from order_engine.schemas.export import (
    ExportQuerySchema,
    csv_chunk,
    csv_header,
    ndjson_chunk,
    ndjson_trailer,
)

EXPORT = ExportQuerySchema()


def test_an_export_range_takes_dates_or_zoned_times():
    query = EXPORT.load({"from": "2026-12-01", "to": "2026-12-02T09:30:00+01:00"})
    assert query["from_"] == datetime(2026, 12, 1, tzinfo=UTC)
    assert query["to"] == datetime(2026, 12, 2, 8, 30, tzinfo=UTC)
    assert query["format"] == "csv"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-12-02", "to": "2026-12-01"}, "to"),
        ({"from": "2026-12-01", "to": "2026-12-01"}, "to"),
        ({"from": "2026-12-01T09:00:00"}, "from"),  # no zone
        ({"from": "yesterday"}, "from"),
        ({"from": "1969-12-31"}, "from"),
        ({"to": "0001-01-01T00:00:00+14:00"}, "to"),  # before the year 1 in UTC
        ({"to": "9999-12-31T23:00:00-05:00"}, "to"),  # after 9999 in UTC
        ({"format": "xlsx"}, "format"),
        ({"after": "not-a-cursor"}, "after"),
        ({"after": "99999999999999999999_" + "0" * 32}, "after"),
        ({"since": "2026-12-01"}, "since"),
    ],
)
def test_a_bad_export_query_is_refused_by_name(query, field):
    with pytest.raises(ValidationError) as refusal:
        EXPORT.load(query)
    assert field in refusal.value.messages


def test_a_cursor_names_a_rows_creation_time_to_the_microsecond_and_its_id():
    order_id = uuid.uuid4()
    micros = 1_796_115_600_123_456
    loaded = EXPORT.load({"after": f"{micros}_{order_id.hex}"})["after"]
    assert loaded == (
        datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros),
        order_id,
    )
    assert loaded[0].microsecond == 123456


def test_export_lines_are_csv_with_a_header_and_json_with_a_trailer():
    row = tuple(f"v{i}" for i in range(len(COLUMNS)))
    route = COLUMNS.index("route")
    row = (*row[:route], '[{"dex": "raydium", "percent": "100.00"}]', *row[route + 1 :])
    assert csv_header().rstrip("\r\n").split(",") == list(COLUMNS)
    line = csv_chunk([row])
    assert line.endswith("\r\n")
    assert '"[{""dex"": ""raydium"", ""percent"": ""100.00""}]"' in line
    json_line = ndjson_chunk([row])
    assert json_line.count("\n") == 1
    assert '"route":[{"dex":"raydium","percent":"100.00"}]' in json_line
    assert (
        ndjson_trailer(3, datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
        == '{"end": true, "rows": 3, "to": "2026-12-01T09:00:00.000Z"}\n'
    )
