"""Landing in process (the execution service on PostgreSQL, an in-process localnet on virtual
time): a simulation that fails sends nothing, and a version that expired unlanded is followed by
one that pays more, never two landing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from order_engine.chain.client import Simulation
from tests.integration.test_execution_recovery import (  # noqa: F401 - the fixture
    ledger,
    new_order,
    rig,
    run_until_done,
)

pytestmark = pytest.mark.integration


def _row(session, order_id) -> Any:
    with session.begin():
        return session.execute(
            text("SELECT status, tx_hash, failure_code, fees, landing FROM orders WHERE id = :id"),
            {"id": order_id},
        ).one()


def _building_events(session, order_id) -> list[dict[str, Any]]:
    with session.begin():
        rows = session.execute(
            text(
                "SELECT data FROM order_events WHERE order_id = :id AND status = 'building' "
                "ORDER BY seq"
            ),
            {"id": order_id},
        )
        return [row.data for row in rows]


def test_a_simulation_that_slips_sends_nothing_and_fails_as_slippage(rig):  # noqa: F811
    """The market falls 10 % between the quote and the simulation: the simulation fails with
    the program's slippage error, nothing is signed or sent, and the re-quote policy finds the
    market no longer pays the client's minimum: the order fails, SLIPPAGE_EXCEEDED."""
    service, chain, node, clock, session = rig
    order_id = new_order(session, "simulated-slip")
    simulate = chain.simulate
    moved: list[Simulation] = []

    def after_a_fall(encoded: str) -> Simulation:
        if not moved:
            node.handle(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "localnet_move",
                    "params": [{"pair": "SOL/USDC", "price": "100"}],
                }
            )
        moved.append(simulate(encoded))
        return moved[-1]

    chain.simulate = after_a_fall  # type: ignore[method-assign]
    outcomes = run_until_done(service, clock, order_id)
    # Its one re-quote (from the slot's cached pools, which still pay) slips again.
    assert outcomes in (["failed"], ["retry:SLIPPAGE_EXCEEDED", "failed"])
    assert moved[0].err == {
        "InstructionError": [moved[0].err["InstructionError"][0], {"Custom": 6005}]
    }
    assert chain.sent == []
    assert ledger(node, "simulated-slip") == []
    row = _row(session, order_id)
    assert (row.status, row.tx_hash, row.failure_code) == ("failed", None, "SLIPPAGE_EXCEEDED")
    assert _building_events(session, order_id) == []


def test_a_version_that_expired_unlanded_is_followed_by_one_that_pays_more(rig):  # noqa: F811
    """Every send of the first version is lost: it expires unlanded; only then is a second
    version signed, bidding at least 1.5× its price per CU and its tip (within the cap), and it
    lands: one landing, two versions, the report of the second."""
    service, chain, node, clock, session = rig
    order_id = new_order(session, "escalated")
    chain.drop_first = True
    outcomes = run_until_done(service, clock, order_id)
    # Its wait ends unconfirmed (CONFIRM_TIMEOUT_S 5 here) or expired; either way the next
    # attempt finds it expired and signs the second version.
    assert outcomes[-1] == "confirmed"
    assert len(outcomes) == 2
    first, second = _building_events(session, order_id)
    assert first["txHash"] != second["txHash"]
    assert second["fees"]["microLamportsPerCu"] >= first["fees"]["microLamportsPerCu"] * 1.5
    assert second["fees"]["tipLamports"] >= first["fees"]["tipLamports"] * 1.5
    assert (first["landing"]["versions"], second["landing"]["versions"]) == (1, 2)
    (landed,) = ledger(node, "escalated")
    assert landed["signature"] == second["txHash"]
    # The first version's sends all came before the second was signed.
    versions = list(dict.fromkeys(chain.sent))
    assert len(versions) == 2
    assert max(i for i, e in enumerate(chain.sent) if e == versions[0]) < chain.sent.index(
        versions[1]
    )
    row = _row(session, order_id)
    assert row.status == "confirmed"
    assert row.landing == {
        "via": "bundle",
        "sentSlot": row.landing["sentSlot"],
        "landedSlot": landed["slot"],
        "versions": 2,
    }
    assert row.fees["baseLamports"] + row.fees["priorityLamports"] == landed["fee"]
    assert row.fees["computeUnitsConsumed"] == landed["unitsConsumed"]
