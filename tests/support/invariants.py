"""The money invariants, checked over a whole stack after every fault scenario.

The method: real processes on loopback, faults injected by signals, server commands and the
localnet's admin methods, and after every scenario one checker of the money invariants:

- I1 at most one landed swap per order in the chain's ledger (the stack's own localnet, read
  with `localnet_ledger`; memo = clientOrderId or order id); a confirmed order's landed swap is
  the one it recorded, a failed order has none. The ledger is read once every transaction the
  orders ever built (their `building` events and `tx_last_valid_height`) is past its blockhash's
  last valid block height, so nothing still in flight can land after the check.
- I2 every accepted order reaches a terminal status within a deadline.
- I3 `order_events` are numbered 1..n per order and every transition is legal: legal by the
  product's own state machine, `order_engine.models.TRANSITIONS` (a TWAP parent's by its own,
  `order_engine.domain.twap.PARENT_TRANSITIONS`: it never swaps itself).
- I4 one order per Idempotency-Key.
- I5 every WebSocket watcher saw its order's terminal event, with seq strictly increasing.
- I6 a TWAP parent's slices: at most one child per slice index, within its slices, their
  amounts within its own; a confirmed parent's children all confirmed and summing to it
  exactly, and what it says it filled is what its children filled.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from order_engine.domain.status import TERMINAL_STATUSES, TRANSITIONS
from order_engine.domain.twap import PARENT_TRANSITIONS

if TYPE_CHECKING:
    from tests.support.stack import Stack
    from tests.support.watchers import Watcher

HAPPY_PATH = ["pending", "routing", "building", "submitted", "confirmed"]
TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)
LEGAL_TRANSITIONS = {
    status.value: {after.value for after in afters} for status, afters in TRANSITIONS.items()
}
LEGAL_PARENT_TRANSITIONS = {
    status.value: {after.value for after in afters} for status, afters in PARENT_TRANSITIONS.items()
}


@dataclass
class InvariantReport:
    orders: int
    by_status: dict[str, int]
    landed: int
    watchers: int


def check_invariants(
    stack: Stack,
    *,
    terminal_within_s: float = 60,
    expect_keys: set[str] | None = None,
) -> InvariantReport:
    """Assert I1–I5 over every order of the stack's database; return a summary."""
    violations: list[str] = []
    try:  # I2 (then checked again below for every order in the database, accepted or not)
        stack.wait_terminal(stack.accepted, terminal_within_s)
    except AssertionError as exc:
        violations.append(f"I2 {exc}")
    with stack.engine.connect() as conn:
        orders = [dict(r) for r in conn.execute(text("SELECT * FROM orders")).mappings()]
        events = conn.execute(
            text("SELECT order_id, seq, status, data FROM order_events ORDER BY order_id, seq")
        ).all()
    history: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for event in events:
        history[str(event.order_id)].append((event.seq, event.status))
    # I1 reads the chain once nothing the orders built can land any more.
    last_valid = [o["tx_last_valid_height"] for o in orders if o["tx_last_valid_height"]]
    last_valid += [
        int(e.data["lastValidBlockHeight"])
        for e in events
        if (e.data or {}).get("lastValidBlockHeight") is not None
    ]
    if last_valid:
        stack.wait_block_height_above(max(last_valid))
    ledger = stack.ledger()
    by_memo: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for tx in ledger:
        by_memo[tx["memo"]].append(tx)

    for order in orders:
        order_id = str(order["id"])
        status = order["status"]
        if status not in TERMINAL:
            violations.append(f"I2 order {order_id} still {status}")
        violations += _ledger_violations(order, by_memo.get(order["client_order_id"] or order_id))
        violations += _history_violations(order, history.get(order_id, []))
    violations += _twap_violations(orders)
    memos = {o["client_order_id"] or str(o["id"]) for o in orders}
    violations += [
        f"I1 transaction {tx['signature'][:12]} ({tx['status']}) belongs to no order "
        f"(memo {tx['memo']})"
        for tx in ledger
        if tx["memo"] not in memos and tx["status"] == "landed"
    ]
    missing = set(stack.accepted) - {str(o["id"]) for o in orders}
    violations += [f"I2 accepted order {m} is not in the database" for m in sorted(missing)]

    keys = Counter(o["idempotency_key"] for o in orders if o["idempotency_key"])
    violations += [f"I4 key {k!r} has {n} orders" for k, n in keys.items() if n > 1]
    for key in expect_keys if expect_keys is not None else stack.idempotency_keys:
        if keys[key] != 1:
            violations.append(f"I4 key {key!r} has {keys[key]} orders, expected 1")

    for watcher in stack.watchers:
        watcher.join(timeout=max(1.0, terminal_within_s))
        violations += _watcher_violations(watcher, history.get(watcher.order_id, []))

    assert not violations, "invariants violated:\n  " + "\n  ".join(violations)
    landed = sum(1 for tx in ledger if tx["status"] == "landed")
    return InvariantReport(
        len(orders), dict(Counter(o["status"] for o in orders)), landed, len(stack.watchers)
    )


def landed_twice(stack: Stack) -> int:
    """How many memos (orders) have more than one landed swap on the stack's chain."""
    landed = Counter(tx["memo"] for tx in stack.ledger() if tx["status"] == "landed")
    return sum(1 for count in landed.values() if count > 1)


def _ledger_violations(order: dict[str, Any], txs: list[dict[str, Any]] | None) -> list[str]:
    order_id, status = str(order["id"]), order["status"]
    landed = [tx["signature"] for tx in txs or [] if tx["status"] == "landed"]
    problems = []
    if order["type"] == "twap":  # its children swap, never the parent itself
        return [f"I1 TWAP parent {order_id} has swaps of its own: {landed}"] if landed else []
    if len(landed) > 1:
        problems.append(f"I1 order {order_id}: {len(landed)} landed swaps {landed}")
    if status == "confirmed" and landed != [order["tx_hash"]]:
        problems.append(
            f"I1 order {order_id} confirmed with tx {order['tx_hash']} but landed {landed}"
        )
    if status in {"failed", "cancelled"} and landed:
        problems.append(f"I1 order {order_id} is {status} but its swap landed: {landed}")
    return problems


def _history_violations(order: dict[str, Any], events: list[tuple[int, str]]) -> list[str]:
    order_id = str(order["id"])
    seqs = [seq for seq, _ in events]
    statuses = [status for _, status in events]
    problems = []
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"I3 order {order_id}: seqs {seqs} are not 1..n")
    if order["last_seq"] != len(seqs):
        problems.append(f"I3 order {order_id}: last_seq {order['last_seq']} != {len(seqs)} events")
    if not statuses or statuses[0] != "pending":
        problems.append(f"I3 order {order_id}: history starts {statuses[:1]}")
    legal = LEGAL_PARENT_TRANSITIONS if order["type"] == "twap" else LEGAL_TRANSITIONS
    for before, after in zip(statuses, statuses[1:], strict=False):
        if after not in legal.get(before, set()):
            problems.append(f"I3 order {order_id}: illegal {before} -> {after} in {statuses}")
    if statuses and statuses[-1] != order["status"]:
        problems.append(f"I3 order {order_id}: last event {statuses[-1]} != {order['status']}")
    return problems


def _twap_violations(orders: list[dict[str, Any]]) -> list[str]:
    """I6 over every TWAP parent and its children."""
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for order in orders:
        if order["parent_id"] is not None:
            children[str(order["parent_id"])].append(order)
    problems = []
    for parent in (o for o in orders if o["type"] == "twap"):
        parent_id, slices = str(parent["id"]), parent["slices"]
        kids = children.get(parent_id, [])
        indexes = Counter(kid["slice_index"] for kid in kids)
        twice = sorted(index for index, count in indexes.items() if count > 1)
        if twice:
            problems.append(f"I6 TWAP {parent_id}: slices {twice} have more than one child")
        if any(not 0 <= index < slices for index in indexes):
            problems.append(f"I6 TWAP {parent_id}: slices {sorted(indexes)} beyond {slices}")
        if sum(kid["amount_in"] for kid in kids) > parent["amount_in"]:
            problems.append(f"I6 TWAP {parent_id}: its children sell more than it")
        filled = sum(kid["amount_in"] for kid in kids if kid["status"] == "confirmed")
        if parent["status"] == "confirmed" and (
            filled != parent["amount_in"] or len(kids) != slices
        ):
            problems.append(f"I6 TWAP {parent_id} confirmed with {filled} of its amount filled")
        if parent["status"] in {"confirmed", "failed"} and parent["amount_in_filled"] != filled:
            said = parent["amount_in_filled"]
            problems.append(f"I6 TWAP {parent_id} says {said} filled, its children {filled}")
    return problems


def _watcher_violations(watcher: Watcher, history: list[tuple[int, str]]) -> list[str]:
    order_id, seqs = watcher.order_id, watcher.seqs
    problems = []
    if not watcher.finished:
        problems.append(
            f"I5 watcher of {order_id} never saw a terminal event: {seqs} "
            f"(closes {watcher.close_codes}, connect errors {watcher.connect_errors[-3:]})"
        )
    if any(b <= a for a, b in zip(seqs, seqs[1:], strict=False)):
        problems.append(f"I5 watcher of {order_id}: seq not strictly increasing {seqs}")
    expected = [(s, st) for s, st in history if s > watcher.first_after_seq]
    seen = [(e["seq"], e["status"]) for e in watcher.events]
    if watcher.finished and seen != expected:
        problems.append(
            f"I5 watcher of {order_id} saw {seen}, history after "
            f"{watcher.first_after_seq} is {expected}"
        )
    return problems
