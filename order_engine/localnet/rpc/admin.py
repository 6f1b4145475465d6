"""The node's admin methods (prefix `localnet_`, params as one object): `localnet_move`,
`localnet_launch`, `localnet_drain`, `localnet_congest`, `localnet_planFaults`,
`localnet_ledger`, `localnet_mev`, `localnet_mevReport`, `localnet_status`. They are part of
this node only; the engine's public API never exposes them. A refusal (unknown pool or token,
bad value) is -32602 with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from order_engine.localnet import pools
from order_engine.localnet.catalogue import METEORA
from order_engine.localnet.cluster import Cluster
from order_engine.localnet.cluster.bank import PoolRecord
from order_engine.localnet.cluster.demand import LEVEL_NAMES, LEVELS
from order_engine.localnet.rpc.wire import as_object, invalid_params


class AdminMethods:
    """The admin methods over a cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def table(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "localnet_move": self._admin_move,
            "localnet_launch": self._admin_launch,
            "localnet_drain": self._admin_drain,
            "localnet_congest": self._admin_congest,
            "localnet_planFaults": self._admin_plan_faults,
            "localnet_ledger": self._admin_ledger,
            "localnet_mev": self._admin_mev,
            "localnet_mevReport": self._admin_mev_report,
            "localnet_status": self._admin_status,
        }

    def _admin(self, action: Any) -> Any:
        try:
            return action()
        except (KeyError, ValueError, InvalidOperation) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise invalid_params(str(message)) from None

    def _admin_move(self, params: Any) -> dict[str, Any]:
        args = as_object(params)

        def run() -> dict[str, Any]:
            pair = str(args["pair"])
            base, sep, quote = pair.partition("/")
            if not sep:
                raise ValueError("pair must look like SOL/USDC")
            moved = self.cluster.admin.move(base, quote, Decimal(str(args["price"])))
            return {
                "pair": pair,
                "price": str(args["price"]),
                "pools": [pool_json(r) for r in moved],
            }

        return self._admin(run)

    def _admin_launch(self, params: Any) -> dict[str, Any]:
        args = as_object(params)

        def run() -> dict[str, Any]:
            record = self.cluster.admin.launch(
                mint=str(args["mint"]),
                symbol=str(args["symbol"]),
                decimals=int(args.get("decimals", 6)),
                quote=str(args.get("quote", "SOL")),
                liquidity=Decimal(str(args["liquidity"])),
                price=Decimal(str(args["price"])),
                venue=str(args.get("venue", "raydium")),
            )
            return pool_json(record)

        return self._admin(run)

    def _admin_drain(self, params: Any) -> dict[str, Any]:
        args = as_object(params)
        return self._admin(lambda: pool_json(self.cluster.admin.drain(str(args["pool"]))))

    def _admin_congest(self, params: Any) -> dict[str, Any]:
        """`{level?, expiryRate?, seconds}`: a level of background demand, a share of sends
        never landing, or both, for `seconds`."""
        args = as_object(params)

        def run() -> dict[str, Any]:
            seconds = int(args["seconds"])
            if seconds <= 0:
                raise ValueError("seconds must be positive")
            if "level" not in args and "expiryRate" not in args:
                raise ValueError("give a level, an expiryRate or both")
            answer: dict[str, Any] = {"seconds": seconds}
            if "expiryRate" in args:
                rate = Decimal(str(args["expiryRate"]))
                if not Decimal(0) <= rate <= Decimal(1):
                    raise ValueError("expiryRate must be between 0 and 1")
                start, end = self.cluster.admin.congest(rate, seconds)
                answer.update(expiryRate=str(rate), fromMs=start, untilMs=end)
            if "level" in args:
                level = str(args["level"])
                if level not in LEVEL_NAMES:
                    raise ValueError(f"level must be one of {', '.join(LEVEL_NAMES)}")
                start, end = self.cluster.admin.congest_level(level, seconds)
                answer.update(level=level, levelFromMs=start, levelUntilMs=end)
            return answer

        return self._admin(run)

    def _admin_mev(self, params: Any) -> dict[str, Any]:
        """`{rate}`: the share of public swaps the searcher sandwiches when it pays."""
        args = as_object(params)

        def run() -> dict[str, Any]:
            rate = Decimal(str(args["rate"]))
            self.cluster.admin.set_mev_rate(rate)
            return {"rate": str(rate)}

        return self._admin(run)

    def _admin_mev_report(self, params: Any) -> list[dict[str, Any]]:
        """Every sandwich, oldest first; `{victim}` narrows it to one signature."""
        args = as_object(params)
        self.cluster.advance()
        report = self.cluster.searcher.report
        victim = args.get("victim")
        return [e for e in report if victim is None or e["victim"] == victim]

    def _admin_plan_faults(self, params: Any) -> dict[str, Any]:
        args = as_object(params)

        def run() -> dict[str, Any]:
            faults = args["faults"]
            if not isinstance(faults, list):
                raise ValueError("faults must be a list")
            planned = self.cluster.faults.plan(str(args["memo"]), [str(f) for f in faults])
            return {"memo": args["memo"], "planned": planned}

        return self._admin(run)

    def _admin_ledger(self, params: Any) -> list[dict[str, Any]]:
        args = as_object(params)
        self.cluster.advance()
        entries = self.cluster.ledger.query(args.get("memo"), args.get("signature"))
        return [e.to_json() for e in entries]

    def _admin_status(self, params: Any) -> dict[str, Any]:
        self.cluster.advance()
        cluster = self.cluster
        congestion = cluster.congestion.status(cluster.now_ms())
        level = LEVELS.get(congestion["level"])
        return {
            "slot": cluster.current_slot(),
            "pending": sum(1 for p in cluster.landing.pending.values() if p.fault is None),
            "landed": len(cluster.ledger),
            "congestion": {**congestion, "demand": None if level is None else level.to_json()},
            "mevRate": str(cluster.searcher.rate),
            "sandwiches": len(cluster.searcher.report),
            "pools": [pool_json(r) for r in cluster.bank.records.values()],
        }


def pool_json(record: PoolRecord) -> dict[str, Any]:
    mid = record.mid_price()
    reserve_x, reserve_y = pools.reserves(record.pool)
    if mid is not None:
        with localcontext() as ctx:
            ctx.prec = 12
            mid = +mid
    return {
        "poolId": record.pool_id,
        "venue": record.venue,
        "address": record.address,
        "tokenX": record.spec.token_x.symbol,
        "tokenY": record.spec.token_y.symbol,
        "mintX": record.mint_x,
        "mintY": record.mint_y,
        "mid": None if mid is None else format(mid, "f"),
        "reserveX": str(reserve_x),
        "reserveY": str(reserve_y),
        "drained": record.drained,
        "binStep": record.spec.bin_step if record.venue == METEORA else None,
    }
