"""A contested chain (`--preset contested`): what each landing strategy costs and gets.

The localnet runs with no added landing latency, congested at `high` for the whole run
(`localnet_congest`) with the searcher sandwiching half the public swaps that pay
(`localnet_mev`); both are turned off at the end. Per strategy, in `STRATEGIES`' order, the
orders go out as that strategy's client sends them (open loop, a third each of `AMOUNTS`, SOL ->
USDC with `SLIPPAGE_BPS`), drain, and each order's answer (`GET /api/orders/<id>`: `fees`,
`landing`, its events) is read. A strategy whose request fields the engine refuses is "not
supported by this engine" (the fixed fee, yesterday's engine, is sent without its fields when
the worker's fixed price is that fee); a missing answer field is shown as "—".

A slot's clearing price for an order's pools is `getRecentPrioritizationFees` of the route legs'
`poolId`s (each a pool's state account, written by every swap on it) at the landing slot: the
node keeps 150 slots, so it is read every `FEES_EVERY_S` and once a strategy drains.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from statistics import mean, median
from typing import Any

from bench import figures
from bench.loadgen import ENGINE_PATH, Api
from bench.phases import Run
from bench.plan import ZERO_LATENCY

log = logging.getLogger(__name__)
FIXED_FEE = 25_000
STRATEGIES: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "fixed fee, public",
        {"priorityFee": {"microLamportsPerCu": FIXED_FEE}, "mevProtection": False},
    ),
    ("auto fee, public", {"priorityFee": "auto", "mevProtection": False}),
    ("auto fee + bundle", {}),
)
SHORT_NAMES = ("fixed", "auto", "bundle")  # `--contested-strategies`, in STRATEGIES' order
# Swaps of 0.5 SOL the searcher leaves alone on the deep SOL/USDC pools (their impact is under
# twice the pool fee, docs/localnet.md); 500 SOL moves either pool past that.
AMOUNTS, SLIPPAGE_BPS, LEVEL, MEV_RATE = ("0.5", "5", "500"), 100, "high", "0.5"
FEES_EVERY_S = 30  # 75 slots: well inside the 150 the node keeps
SLOWEST = 10  # the confirmed orders slowest to land, listed with what they bid and met
HEADER = ["strategy", "confirmed / failed", "landed first try", "slots to land p50 / p99",
          "priority lamports median / mean", "tip lamports median / mean",
          "paid ÷ clearing price, median", "sandwiched; value taken (share)",
          "engine CPU ms/order (API, worker)", "accept → confirmed p50 / p99 ms"]  # fmt: skip
DASH = "—"


class ClearingPrices:
    """Each pool account's recent prioritization fee per slot, read every `FEES_EVERY_S`."""

    def __init__(self, run: Run) -> None:
        self.run, self.by_pool, self.read_at = run, dict[str, dict[int, int]](), 0.0

    def tick(self, pools: set[str], force: bool = False) -> None:
        if not force and time.monotonic() - self.read_at < FEES_EVERY_S:
            return
        for pool in pools:
            answer = self.run.stack.localnet_rpc("getRecentPrioritizationFees", [[pool]])
            slots = self.by_pool.setdefault(pool, {})
            slots.update({e["slot"]: e["prioritizationFee"] for e in answer})
        self.read_at = time.monotonic()

    def congested_slots(self, pools: set[str]) -> int:
        """Slots whose fee for any of `pools` was above zero, as of a fresh read."""
        self.tick(pools, force=True)
        return len({slot for fees in self.by_pool.values() for slot, fee in fees.items() if fee})

    def highest(self, pools: list[str], first: int, last: int) -> int | None:
        """The highest clearing price for `pools` from slot `first` to `last`, inclusive."""
        known = [self.at(pools, slot) for slot in range(first, last + 1)]
        return max((price for price in known if price is not None), default=None)

    def at(self, pools: list[str], slot: int | None) -> int | None:
        prices = [self.by_pool.get(p, {}).get(slot) for p in pools] if slot is not None else []
        return max((p for p in prices if p is not None), default=None)


def contested(run: Run) -> dict[str, Any]:
    """Every strategy in turn on one congested chain; the congestion and the searcher off
    after."""
    plan, stack = run.plan, run.stack
    chosen = plan.contested_strategies.split(",")
    if unknown := set(chosen) - set(SHORT_NAMES):
        raise SystemExit(f"unknown strategies: {', '.join(sorted(unknown))}")
    strategies = [(i, *STRATEGIES[i]) for i, short in enumerate(SHORT_NAMES) if short in chosen]
    per_strategy_s = plan.contested_orders / plan.contested_rate + plan.contested_deadline_s
    run.restart_worker(ZERO_LATENCY)
    pools = {p["address"] for p in stack.localnet_rpc("localnet_status")["pools"]
             if {p["tokenX"], p["tokenY"]} == {"SOL", "USDC"}}  # fmt: skip
    seconds = int(per_strategy_s * len(strategies) + 300)
    stack.localnet_rpc("localnet_congest", {"level": LEVEL, "seconds": seconds})
    stack.localnet_rpc("localnet_mev", {"rate": MEV_RATE})
    prices, results = ClearingPrices(run), {}
    try:
        # By default the orders go out once the engine's window of fees (PRIORITY_FEE_SLOTS,
        # 20) has filled with congested slots: a chain that is congested, not turning so.
        warm = plan.contested_warm_slots
        if not run.wait(lambda: warm <= 0 or prices.congested_slots(pools) >= warm, 60):
            log.warning("fewer than %s congested slots after 60 s: the orders go out anyway", warm)
        for index, name, fields in strategies:
            results[name] = _strategy(run, f"contested-{index}", fields, prices, pools)
            run.restart_worker(ZERO_LATENCY)
    finally:
        stack.localnet_rpc("localnet_congest", {"level": "quiet", "seconds": 1})
        stack.localnet_rpc("localnet_mev", {"rate": "0"})
        run.idle()
    fell_back = " (its fields refused: sent with the engine's defaults, which are these)"
    rows = [[name + (fell_back if f.get("sent_as", fields) != fields else ""), *_row(f)]
            for (_, name, fields), f in zip(strategies, results.values(), strict=True)]  # fmt: skip
    return {"table": {"header": HEADER, "rows": rows}, "strategies": results,
            "level": LEVEL, "mev_rate": MEV_RATE, "amounts_sol": AMOUNTS,
            "slippage_bps": SLIPPAGE_BPS, "orders_per_strategy": plan.contested_orders,
            "offered_per_s": plan.contested_rate, "latency": ZERO_LATENCY}  # fmt: skip


def _strategy(run: Run, label: str, fields: dict[str, Any], prices: ClearingPrices,
              pools: set[str]) -> dict[str, Any]:  # fmt: skip
    """One strategy's orders: sent, drained, read, measured."""
    plan, stack, api = run.plan, run.stack, Api(run.stack.port)
    status, reply = api("POST", ENGINE_PATH, {**_order("-1", "probe"), **fields})  # no order
    sent_as = fields
    if fields and status in (400, 422) and any(f in str(reply) for f in fields):
        if fields.get("priorityFee") != {"microLamportsPerCu": FIXED_FEE} or (
            stack.settings["worker"].compute_unit_price_micro_lamports != FIXED_FEE
        ):
            return {"supported": False, "refusal": reply}
        sent_as = {}  # yesterday's engine: its fixed price is this fee, its sends public
    run.monitor.set_phase(label.replace("-", "_"))
    window = run.window()
    orders = [{**_order(a, ""), **sent_as} for a in AMOUNTS]
    duration_s, tick = plan.contested_orders / plan.contested_rate, lambda: prices.tick(pools)
    spec = {"path": ENGINE_PATH, "rate": plan.contested_rate, "order": orders, "connections": 16}
    spec |= {"duration_s": duration_s, "port": stack.port, "tag": f"{run.run_dir.name}-{label}"}
    child = run.child(label, "bench.loadgen.open_loop", spec)
    run.wait(lambda: not child.process.is_alive(), duration_s + 60, tick)
    accepted = {r[3]: r[4] for r in child.result(5).get("records", []) if r[2] == 202}
    drained = run.wait(lambda: run.in_flight() == 0, plan.contested_deadline_s, tick)
    window.load_done()
    prices.tick(pools, force=True)
    outcome = figures.outcomes(stack.db, accepted)
    cost = window.finish(len(outcome.pop("terminal_at")))
    answers = [api("GET", f"/api/orders/{order_id}")[1] for order_id in accepted]
    return {"supported": True, "sent_as": sent_as, "accepted": len(accepted), "drained": drained,
            **measure(answers, prices, stack.localnet_rpc("localnet_mevReport", {})),
            "accept_to_confirmed_ms": outcome["accept_to_confirmed_ms"],
            "failures": outcome["failures"], "cost": cost}  # fmt: skip


def _order(amount: str, tag: str) -> dict[str, Any]:
    return {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amount": amount,
            "slippageBps": SLIPPAGE_BPS, **({"clientOrderId": tag} if tag else {})}  # fmt: skip


def measure(answers: list[dict[str, Any]], prices: ClearingPrices,
            sandwiches: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """The strategy's figures from its orders' answers, the clearing prices and the searcher's
    report (the victims are the orders' `txHash`)."""
    confirmed = [a for a in answers if a.get("status") == "confirmed"]
    first = [(a.get("landing") or {}).get("versions") == 1 and a.get("attempts") == 1
             for a in confirmed]  # fmt: skip
    fees = [a["fees"] for a in answers if a.get("fees")]
    lamports = lambda key: [int(f.get(key) or 0) for f in fees]  # noqa: E731
    paid_over_clearing = []
    by_amount: dict[str, list[tuple[int | None, float | None, int]]] = {}
    for answer in confirmed:
        clearing = prices.at(_pools(answer), (answer.get("landing") or {}).get("landedSlot"))
        fee = answer.get("fees") or {}
        ratio = None
        if clearing and fee.get("computeUnitLimit"):
            paid = int(fee.get("priorityLamports") or 0) + int(fee.get("tipLamports") or 0)
            ratio = paid * 10**6 / int(fee["computeUnitLimit"]) / clearing
            paid_over_clearing.append(ratio)
        row = (_slots(answer), ratio, int(fee.get("computeUnitLimit") or 0))
        by_amount.setdefault(str(answer.get("amount")), []).append(row)
    victims = {a.get("txHash") for a in answers} - {None}
    taken = [s for s in sandwiches if s["victim"] in victims]
    value = sum(int(s["valueTakenAtoms"]) for s in taken)
    alone = sum(int(s["outputAloneAtoms"]) for s in taken)
    return {
        "confirmed": len(confirmed),
        "failed": sum(1 for a in answers if a.get("status") == "failed"),
        "landed_first_try_share": _share(sum(first), len(first))
        if any(a.get("landing") for a in confirmed)
        else None,
        "slots_to_land": figures.summary(s for s in map(_slots, confirmed) if s is not None),
        "priority_lamports": _spread(lamports("priorityLamports")) if fees else None,
        "tip_lamports": _spread(lamports("tipLamports")) if fees else None,
        "paid_over_clearing_median": round(median(paid_over_clearing), 3)
        if paid_over_clearing
        else None,  # fmt: skip
        "paid_over_clearing_count": len(paid_over_clearing),
        "sandwiched": len({s["victim"] for s in taken}),
        "value_taken_atoms": value,
        "value_taken_share": _share(value, alone),  # of those legs' output had they run alone
        "output_mints": sorted({s["outputMint"] for s in taken}),
        "slowest": _slowest(confirmed, prices),
        "by_amount": {amount: _by_amount(rows) for amount, rows in sorted(by_amount.items())},
    }


def _by_amount(rows: list[tuple[int | None, float | None, int]]) -> dict[str, Any]:
    """One order size's slots to land, paid ÷ clearing and compute unit limit."""
    ratios = [ratio for _, ratio, _ in rows if ratio is not None]
    return {
        "orders": len(rows),
        "slots_to_land": figures.summary(slots for slots, _, _ in rows if slots is not None),
        "paid_over_clearing_median": round(median(ratios), 3) if ratios else None,
        "compute_unit_limit_median": median(limit for _, _, limit in rows) if rows else None,
    }


def _slowest(confirmed: list[dict[str, Any]], prices: ClearingPrices) -> list[dict[str, Any]]:
    """The `SLOWEST` confirmed orders slowest to land (over 2 slots): what each bid per compute
    unit (priority and tip) against the clearing price at its send and its landing, and the
    highest in between."""
    timed = [(s, a) for a in confirmed if (s := _slots(a)) is not None and s > 2]
    slowest = []
    for slots, answer in sorted(timed, key=lambda item: -item[0])[:SLOWEST]:
        landing, fees, pools = answer.get("landing") or {}, answer.get("fees") or {}, _pools(answer)
        sent, landed = landing.get("sentSlot"), landing.get("landedSlot")
        limit = fees.get("computeUnitLimit")
        tip = int(fees.get("tipLamports") or 0) * 10**6 // int(limit) if limit else None
        slowest.append({
            "id": answer.get("orderId"), "amount": answer.get("amount"), "dex": answer.get("dex"),
            "slots": slots, "versions": landing.get("versions"), "attempts": answer.get("attempts"),
            "price": fees.get("microLamportsPerCu"), "tip_per_cu": tip,
            "clearing_at_send": prices.at(pools, sent),
            "clearing_at_land": prices.at(pools, landed),
            "clearing_highest": None if sent is None else prices.highest(pools, sent, landed),
            "ms_after_building": _ms_after(answer, "building", ("submitted", "confirmed")),
        })  # fmt: skip
    return slowest


def _ms_after(answer: dict[str, Any], first: str, then: tuple[str, ...]) -> dict[str, int]:
    """Milliseconds from the last `first` event to each later event of `then` (where the time
    between building and landing went: the engine's send, or the chain)."""
    at = {e["status"]: datetime.fromisoformat(e["at"]) for e in answer["events"]}
    if first not in at:
        return {}
    return {s: int((at[s] - at[first]).total_seconds() * 1000) for s in then if s in at}


def _pools(answer: dict[str, Any]) -> list[str]:
    """The route legs' pools: the answer's `route`, else the last event naming its legs."""
    for data in [answer.get("route") or {}, *(e["data"] for e in reversed(answer["events"]))]:
        legs = data.get("legs") or (data.get("decision") or {}).get("legs")
        if legs:
            return [leg["poolId"] for leg in legs]
    return []


def _slots(answer: dict[str, Any]) -> int | None:
    """First send → landing in slots: `landing`, else the `submitted` and `confirmed` events'
    `slot` when both have one."""
    landing = answer.get("landing") or {}
    sent, landed = landing.get("sentSlot"), landing.get("landedSlot")
    if sent is None:
        by_status = {e["status"]: e["data"].get("slot") for e in answer["events"]}
        sent, landed = by_status.get("submitted"), by_status.get("confirmed")
    return None if sent is None or landed is None else landed - sent


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _spread(values: list[int]) -> dict[str, Any]:
    return {"median": median(values), "mean": round(mean(values), 1)} if values else {}


def _row(f: dict[str, Any]) -> list[Any]:
    if not f["supported"]:
        return ["not supported by this engine", *([DASH] * (len(HEADER) - 2))]
    show: Callable[[Any], str] = lambda v: DASH if v in (None, {}) else str(v)  # noqa: E731
    pair = lambda d, a, b: DASH if not d or d.get(a) is None else f"{d[a]} / {d.get(b)}"  # noqa: E731
    cpu = f["cost"]["cpu_ms_per_order"]
    return [
        f"{f['confirmed']} / {f['failed']}",
        show(f["landed_first_try_share"]),
        pair(f["slots_to_land"], "p50", "p99"),
        pair(f["priority_lamports"], "median", "mean"),
        pair(f["tip_lamports"], "median", "mean"),
        show(f["paid_over_clearing_median"]),
        f"{f['sandwiched']}; {f['value_taken_atoms']} ({show(f['value_taken_share'])})",
        f"{cpu.get('engine')} ({cpu.get('api')}, {cpu.get('worker')})",
        pair(f["accept_to_confirmed_ms"], "p50", "p99"),
    ]
