"""`GET /api/orders/export` on a real PostgreSQL: the rows of the caller's account only, oldest
first, as CSV or NDJSON, across pages, resumed by a row's cursor; bad queries refused by name."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from order_engine.domain.export import COLUMNS
from order_engine.services import export as export_service
from tests.support.factories import add_account, add_key, add_order

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ROUTE = {
    "dex": "split",
    "legs": [
        {"dex": "raydium", "poolId": "P1", "amountIn": "0.9", "percent": "60.00"},
        {"dex": "meteora", "poolId": "P2", "amountIn": "0.6", "percent": "40.00"},
    ],
}


@pytest.fixture
def orders(db_session):
    """The suite key's account: a confirmed split swap, a failed one, a TWAP parent with two
    slices (one filled), all a minute apart; another account's order in between."""
    parent_id = uuid.uuid4()
    rows = [
        add_order(
            db_session,
            status="confirmed",
            amount_out=Decimal("222.465664"),
            executed_price=Decimal("148.310442666666"),
            dex="split",
            route=ROUTE,
            tx_hash="4FwH" + "x" * 80,
            client_order_id='bot, "42"',
            created_at=T0,
            updated_at=T0 + timedelta(seconds=3),
        ),
        add_order(
            db_session,
            status="failed",
            failure_code="SLIPPAGE_EXCEEDED",
            created_at=T0 + timedelta(minutes=1),
            updated_at=T0 + timedelta(minutes=1, seconds=2),
        ),
        add_order(
            db_session,
            id=parent_id,
            type="twap",
            status="pending",
            waiting=True,
            amount_in=Decimal("2"),
            slices=2,
            interval_s=30,
            amount_in_filled=Decimal("1"),
            created_at=T0 + timedelta(minutes=2),
        ),
    ]
    rows += [
        add_order(
            db_session,
            parent_id=parent_id,
            slice_index=index,
            status=status,
            amount_in=Decimal("1"),
            amount_out=out,
            created_at=T0 + timedelta(minutes=2, seconds=1 + index * 30),
        )
        for index, (status, out) in enumerate([("confirmed", Decimal("150")), ("pending", None)])
    ]
    other = add_account(db_session)
    add_order(db_session, account_id=other.id, created_at=T0 + timedelta(seconds=30))
    db_session.commit()
    return [str(row.id) for row in rows]


def export(client, **query) -> tuple[int, str, dict]:
    response = client.get("/api/orders/export", query_string=query)
    return response.status_code, response.get_data(as_text=True), dict(response.headers)


def csv_rows(body: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(body))
    header = next(reader)
    assert header == list(COLUMNS)
    return [dict(zip(header, row, strict=True)) for row in reader]


def test_a_csv_export_has_a_header_and_a_row_per_order_oldest_first(client, orders):
    status, body, headers = export(client, **{"from": "2026-12-01", "to": "2026-12-02"})
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/csv")
    assert headers["Export-To"] == "2026-12-02T00:00:00.000Z"
    assert 'filename="orders-2026-12-01-2026-12-02.csv"' in headers["Content-Disposition"]
    rows = csv_rows(body)
    assert [row["orderId"] for row in rows] == orders  # another account's is not there
    swap, failed, parent, filled, running = rows
    assert {k: swap[k] for k in ("type", "status", "tokenIn", "tokenOut", "venue")} == {
        "type": "market",
        "status": "confirmed",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "venue": "split",
    }
    assert (swap["amountIn"], swap["filledIn"], swap["amountOut"]) == ("1.5", "1.5", "222.465664")
    assert swap["averagePrice"] == "148.310442666666"
    assert json.loads(swap["route"]) == ROUTE["legs"]
    assert swap["clientOrderId"] == 'bot, "42"'  # quoted as CSV quotes
    assert (swap["createdAt"], swap["updatedAt"]) == (
        "2026-12-01T09:00:00.000Z",
        "2026-12-01T09:00:03.000Z",
    )
    assert (failed["filledIn"], failed["amountOut"], failed["errorCode"]) == (
        "0",
        "",
        "SLIPPAGE_EXCEEDED",
    )
    assert (parent["type"], parent["amountIn"], parent["filledIn"]) == ("twap", "2", "1")
    assert [(r["parentId"], r["sliceIndex"]) for r in (filled, running)] == [
        (parent["orderId"], "0"),
        (parent["orderId"], "1"),
    ]
    assert (filled["filledIn"], running["filledIn"]) == ("1", "0")


def test_an_ndjson_export_is_a_json_object_a_line_and_ends_with_a_trailer(client, orders):
    status, body, headers = export(client, format="ndjson", to="2026-12-02T00:00:00Z")
    assert status == 200, body
    assert headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body.splitlines()]
    rows, trailer = lines[:-1], lines[-1]
    assert trailer == {"end": True, "rows": 5, "to": "2026-12-02T00:00:00.000Z"}
    assert [row["orderId"] for row in rows] == orders
    assert all(list(row) == list(COLUMNS) for row in rows)
    assert rows[0]["route"] == ROUTE["legs"]  # JSON, not text
    assert rows[1]["route"] is None
    assert rows[3]["sliceIndex"] == 0


def test_an_export_resumes_after_any_rows_cursor_with_the_same_range(client, orders):
    _, body, headers = export(client, format="ndjson")
    rows = [json.loads(line) for line in body.splitlines()[:-1]]
    assert [row["orderId"] for row in rows] == orders
    for cut in range(len(rows)):
        query = {"format": "ndjson", "to": headers["Export-To"], "after": rows[cut]["cursor"]}
        _, rest, _ = export(client, **query)
        resumed = [json.loads(line) for line in rest.splitlines()]
        assert resumed[:-1] == rows[cut + 1 :]
        assert resumed[-1]["rows"] == len(rows) - cut - 1


def test_an_export_reads_page_after_page_without_repeats(client, orders, monkeypatch):
    monkeypatch.setattr(export_service, "PAGE_ROWS", 2)
    _, body, _ = export(client)
    assert [row["orderId"] for row in csv_rows(body)] == orders


def test_orders_created_in_the_same_microsecond_page_by_id_once_each(
    client, db_session, monkeypatch
):
    same = [add_order(db_session, created_at=T0).id for _ in range(5)]
    db_session.commit()
    monkeypatch.setattr(export_service, "PAGE_ROWS", 2)
    _, body, _ = export(client)
    assert [row["orderId"] for row in csv_rows(body)] == [str(i) for i in sorted(same)]


def test_an_export_keeps_to_its_range(client, orders):
    _, body, _ = export(client, **{"from": "2026-12-01T09:01:00Z", "to": "2026-12-01T09:02:00Z"})
    assert [row["orderId"] for row in csv_rows(body)] == orders[1:2]  # from included, to not
    _, body, _ = export(client, **{"from": "2026-12-02"})
    assert csv_rows(body) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"format": "xlsx"}, "format"),
        ({"from": "2026-13-01"}, "from"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "to"),
        ({"after": "abc"}, "after"),
        ({"limit": "10"}, "limit"),
    ],
)
def test_a_bad_export_query_is_a_422_naming_the_field(client, query, field):
    status, body, _ = export(client, **query)
    assert status == 422
    assert field in json.loads(body)["errors"]


def test_exporting_needs_the_read_scope_and_an_admin_exports_its_own_account(
    app, db_session, orders
):
    writer = add_key(db_session, scopes=("orders:write",))
    admin_account = f"admin-{uuid.uuid4().hex[:8]}"
    admin = add_key(db_session, admin_account, scopes=("admin",))
    db_session.commit()
    for key, expected in ((writer, 403), (admin, 200)):
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        status, body, _ = export(client)
        assert status == expected, body
    assert csv_rows(body) == []  # the admin's account has no order; the others' are not its
    anonymous = app.test_client().get("/api/orders/export")
    assert anonymous.status_code == 401


def test_the_export_path_is_no_order_id(client):
    response = client.delete("/api/orders/export")
    assert response.status_code == 405
    assert "DELETE" not in response.headers["Allow"]
    assert "GET" in response.headers["Allow"]
