"""The integrators' command-line client: `order-engine submit …` and `order-engine orders …`.

It talks to a running API over HTTP and the order WebSocket, exactly as any client would (it
imports nothing of the server), with the URL and key from `--url` / `--key` or
`ORDER_ENGINE_URL` / `ORDER_ENGINE_API_KEY`. `--watch` follows the order live with `rich`: one
line per lifecycle event as it happens and a spinner on the current status, then the venue,
price and transaction signature.

Exit codes: 0 the order confirmed (or the command did what it was asked); 1 the order failed
(its error code is printed); 3 it was cancelled; 4 the API refused the request or could not be
reached (its error envelope is printed); 2 bad usage (argparse).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from order_engine.client.api import (
    DEFAULT_URL,
    EXIT_OK,
    EXIT_REFUSED,
    FINAL,
    Api,
    ApiError,
)
from order_engine.client.export import run_export
from order_engine.client.stream import OrderStream

ORDER_TYPES = ["market", "limit", "sniper", "stop", "oco", "trailing_stop", "twap"]
STATUS_STYLE = {
    "pending": "yellow",
    "routing": "cyan",
    "building": "cyan",
    "submitted": "blue",
    "confirmed": "bold green",
    "failed": "bold red",
    "cancelled": "magenta",
}


def add_commands(sub: Any) -> None:
    """`submit` and `orders …`, added to `order-engine`'s subcommands (order_engine/ops/cli.py)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=None,
        help="the API's base URL (default: $ORDER_ENGINE_URL, else this folder's `make run`, "
        f"else {DEFAULT_URL})",
    )
    common.add_argument("--key", default=None, help="API key (default: $ORDER_ENGINE_API_KEY)")
    common.add_argument("--json", action="store_true", help="print the API's JSON answers")

    _add_submit(sub, common)

    orders = sub.add_parser("orders", help="list, show, cancel or watch your orders")
    actions = orders.add_subparsers(required=True, metavar="action")
    listing = actions.add_parser("list", parents=[common], help="your orders, newest first")
    listing.add_argument("--status", help="comma-separated statuses, e.g. confirmed,failed")
    listing.add_argument("--type", help=f"comma-separated types: {', '.join(ORDER_TYPES)}")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.set_defaults(handler=cmd_list)
    exporting = actions.add_parser(
        "export",
        parents=[common],
        help="every order and fill of your account, oldest first, to stdout (CSV or NDJSON)",
    )
    exporting.add_argument("--since", help="a date (2026-12-01) or an ISO time with a zone")
    exporting.add_argument("--until", help="the same; the export's end (default: now)")
    exporting.add_argument("--format", choices=["csv", "ndjson"], default="csv")
    exporting.set_defaults(handler=cmd_export)
    for name, handler, text in (
        ("show", cmd_show, "one order with its events"),
        ("cancel", cmd_cancel, "cancel an order before its swap is built"),
        ("watch", cmd_watch, "follow an order live until it ends"),
    ):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("order_id")
        action.set_defaults(handler=handler)


def _add_submit(sub: Any, common: argparse.ArgumentParser) -> None:
    """`submit`: the order body's fields as flags."""
    submit = sub.add_parser(
        "submit",
        parents=[common],
        help="submit a swap order (with --watch: follow it live until it ends)",
        description="Submit an order: `order-engine submit SOL USDC 1.5 --slippage 50 --watch`.",
    )
    submit.add_argument("token_in", help="token sold: a symbol (SOL, USDC, …) or a mint")
    submit.add_argument("token_out", help="token bought: a symbol or a mint")
    submit.add_argument("amount", help="amount of token_in, a decimal (e.g. 1.5)")
    submit.add_argument(
        "--slippage",
        type=int,
        default=None,
        help="slippage in bps (default 50; stop, oco, trailing_stop: the server's, 300)",
    )
    submit.add_argument("--type", default="market", choices=ORDER_TYPES)
    submit.add_argument("--limit-price", help="limit, twap: least token_out per one token_in")
    submit.add_argument("--slices", type=int, help="twap: child orders the amount is split into")
    submit.add_argument("--interval", type=int, help="twap: seconds between slices")
    submit.add_argument("--max-price", help="sniper: most token_in per one token_out")
    submit.add_argument("--trigger-price", help="stop: sell once a quote pays this or less")
    submit.add_argument("--take-profit", help="oco: sell at this limit price or better")
    submit.add_argument("--stop-loss", help="oco: sell once a quote pays this or less")
    submit.add_argument(
        "--trail-bps", type=int, help="trailing_stop: sell this far below the highest quote"
    )
    submit.add_argument("--activation-price", help="trailing_stop: start trailing at this quote")
    expiry = submit.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", help="any type but market: from now, e.g. 90s, 1h, 7d")
    expiry.add_argument("--expires-at", help="any type but market: ISO 8601 time with a zone")
    submit.add_argument(
        "--client-order-id",
        help="your own reference (up to 128 bytes of UTF-8: it goes on chain as the memo)",
    )
    submit.add_argument(
        "--priority-fee",
        type=_priority_fee,
        help="auto (the chain's recent fees; the default) or micro-lamports per compute unit",
    )
    submit.add_argument("--max-fee-lamports", type=int, help="most priority fee + tip to pay")
    submit.add_argument(
        "--mev-protection",
        action=argparse.BooleanOptionalAction,
        help="send as a tipped bundle, never public (the server's default: on)",
    )
    submit.add_argument("--idempotency-key", help="the same key and body never order twice")
    submit.add_argument("--watch", action="store_true", help="follow the order until it ends")
    submit.set_defaults(handler=cmd_submit)


def _priority_fee(text: str) -> str | dict[str, int]:
    """`auto`, or a whole number of micro-lamports per compute unit."""
    if text == "auto":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError("auto, or micro-lamports per compute unit (e.g. 25000)")
    return {"microLamportsPerCu": int(text)}


def _api(args: argparse.Namespace) -> Api:
    """The API named by --url, else $ORDER_ENGINE_URL, else the one this folder's `make run`
    serves (.state/run.json), else the default; said on stderr, so a stack on other ports is
    never talked to silently."""
    url = args.url or os.environ.get("ORDER_ENGINE_URL") or _running_api() or DEFAULT_URL
    key = args.key or os.environ.get("ORDER_ENGINE_API_KEY") or os.environ.get("ORDER_ENGINE_KEY")
    print(f"→ {url.rstrip('/')}", file=sys.stderr, flush=True)
    return Api(url.rstrip("/"), key or None)


def _running_api() -> str | None:
    """The API's URL from the run file `order-engine run` writes (order_engine/ops/run_file.py),
    when its run is alive. Read here with the standard library: the client imports nothing of
    the server. The state folder is $ORDER_ENGINE_STATE_DIR, else `.state` beside the package,
    as the server's settings have it (a client installed from a wheel has none)."""
    beside_package = Path(__file__).resolve().parents[1] / ".state"
    state_dir = Path(os.environ.get("ORDER_ENGINE_STATE_DIR") or beside_package)
    try:
        recorded = json.loads((state_dir / "run.json").read_text())
        os.kill(int(recorded["pid"]), 0)  # its run is still there
        url = recorded["api"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if isinstance(url, str) else None


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _refused(error: ApiError) -> int:
    _console(stderr=True).print(error.describe(), markup=False, style="red")
    return EXIT_REFUSED


def cmd_submit(args: argparse.Namespace) -> int:
    api = _api(args)
    body: dict[str, Any] = {
        "type": args.type,
        "tokenIn": args.token_in,
        "tokenOut": args.token_out,
        "amount": args.amount,  # a decimal string, as typed: never a float
    }
    optional = {
        "slippageBps": args.slippage,
        "limitPrice": args.limit_price,
        "maxPrice": args.max_price,
        "expiresIn": args.expires_in,
        "triggerPrice": args.trigger_price,
        "takeProfit": None if args.take_profit is None else {"limitPrice": args.take_profit},
        "stopLoss": None if args.stop_loss is None else {"triggerPrice": args.stop_loss},
        "trailBps": args.trail_bps,
        "activationPrice": args.activation_price,
        "expiresAt": args.expires_at,
        "clientOrderId": args.client_order_id,
        "slices": args.slices,
        "intervalS": args.interval,
        "priorityFee": args.priority_fee,
        "maxFeeLamports": args.max_fee_lamports,
        "mevProtection": args.mev_protection,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    try:
        accepted = api.request("POST", "/api/orders/execute", body, headers)
    except ApiError as error:
        return _refused(error)
    console = _console()
    if args.json and not args.watch:
        print(json.dumps(accepted))
        return EXIT_OK
    console.print(
        f"order [bold]{accepted['orderId']}[/] accepted: {args.amount} {args.token_in} → "
        f"{args.token_out} ({accepted['status']})"
    )
    if not args.watch:
        return EXIT_OK
    return _watch(api, accepted["orderId"], console, as_json=args.json)


def cmd_watch(args: argparse.Namespace) -> int:
    api = _api(args)
    try:
        order = api.request("GET", f"/api/orders/{urllib.parse.quote(args.order_id)}")
    except ApiError as error:
        return _refused(error)
    return _watch(api, order["orderId"], _console(), as_json=args.json)


def _watch(api: Api, order_id: str, console: Any, *, as_json: bool = False) -> int:
    """Follow the order's events over the WebSocket until its final one; the exit code."""
    try:
        return _follow(api, order_id, console, as_json)
    except KeyboardInterrupt:
        console.print(f"stopped watching; the order goes on (order-engine orders watch {order_id})")
        return 130


def _follow(api: Api, order_id: str, console: Any, as_json: bool) -> int:
    final: dict[str, Any] | None = None
    with console.status("connecting…", spinner="dots") as status:
        try:
            for event in OrderStream(api, order_id):
                _show_event(console, event, as_json)
                status.update(_waiting_text(event))
                final = event
        except ApiError as error:
            return _refused(error)
    assert final is not None  # the stream ends only after the final event, or raises
    return _summary(console, final)


def _waiting_text(event: dict[str, Any]) -> str:
    status = event["status"]
    what = {
        "pending": "waiting for a worker",
        "routing": "quoting Raydium and Meteora",
        "building": "building and signing the swap",
        "submitted": "waiting for the chain to confirm",
    }.get(status, status)
    if status == "pending" and event["data"].get("waitingFor"):
        what = f"waiting for {json.dumps(event['data']['waitingFor'])}"
    elif status == "pending" and event["data"].get("twap"):
        what = f"slices running; next at {event['data']['twap'].get('nextSliceAt') or '-'}"
    return f"[{STATUS_STYLE.get(status, '')}]{status}[/] — {what}"


def _show_event(console: Any, event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(event), flush=True)
        return
    data, status = event.get("data") or {}, event["status"]
    detail = ""
    if data.get("twap"):
        detail = _twap_detail(data["twap"])
    elif status == "pending" and data.get("error"):
        detail = (
            f"attempt {event['attempt']} failed: {data['error'].get('code')}; "
            f"retry in {data.get('retryInMs', 0) / 1000:.1f}s"
        )
    elif status == "pending" and data.get("activated"):
        detail = f"trailing from {json.dumps(data['activated'])}"
    elif status == "routing":
        decision = data.get("decision") or {}
        detail = f"best venue {decision.get('dex', '?')}"
        if data.get("triggered"):
            leg = f" ({data['leg']})" if data.get("leg") else ""
            detail = f"triggered{leg} {json.dumps(data['triggered'])}; {detail}"
    elif status == "building":
        detail = f"{data.get('dex', '')} min out {data.get('minAmountOut', '?')}"
    elif status == "submitted":
        detail = f"tx {data.get('txHash', '')}"
    elif status == "failed":
        detail = f"{(data.get('error') or {}).get('code', '?')}"
    time_part = event["at"][11:23]
    console.print(
        f"{time_part}  #{event['seq']:<2} [{STATUS_STYLE.get(status, '')}]{status:<10}[/] {detail}",
        markup=True,
    )


def _twap_detail(twap: dict[str, Any]) -> str:
    """A TWAP parent's event: its schedule, or what the step started, held back and filled."""
    if "sliceAmount" in twap:
        return f"{twap['slices']} slices of {twap['sliceAmount']}, every {twap['intervalS']} s"
    parts = []
    if twap.get("started"):
        parts.append(f"started slice {', '.join(str(s['sliceIndex']) for s in twap['started'])}")
    if twap.get("heldBack"):
        held = ", ".join(str(s["sliceIndex"]) for s in twap["heldBack"])
        parts.append(f"held back {held} (limit)")
    filled = twap.get("filled") or {}
    parts.append(
        f"{twap.get('slicesFilled')}/{twap.get('slices')} filled: {filled.get('amountIn')} in, "
        f"{filled.get('amountOut')} out, {twap.get('remaining')} left"
    )
    return "; ".join(parts)


def _summary(console: Any, final: dict[str, Any]) -> int:
    data, status = final.get("data") or {}, final["status"]
    if status == "confirmed" and "twap" in data:
        console.print(
            f"[bold green]confirmed[/]: {data['twap'].get('slices')} slices, "
            f"{data.get('amountIn')} in → {data.get('amountOut')} out at "
            f"{data.get('averagePrice')} on average"
        )
    elif status == "confirmed":
        console.print(
            f"[bold green]confirmed[/] on {data.get('dex')}: {data.get('amountIn')} in → "
            f"{data.get('amountOut')} out at {data.get('executedPrice')} "
            f"(slippage {data.get('realisedSlippageBps')} bps)"
        )
        console.print(f"txHash {data.get('txHash')}", markup=False)
    elif status == "failed":
        error = data.get("error") or {}
        console.print(
            f"[bold red]failed[/] {error.get('code')}: {error.get('message')}", markup=True
        )
    else:
        console.print(f"[magenta]{status}[/]: {data.get('reason', '')}")
    return FINAL[status]


def cmd_list(args: argparse.Namespace) -> int:
    api = _api(args)
    query = {"limit": str(args.limit)}
    if args.status:
        query["status"] = args.status
    if args.type:
        query["type"] = args.type
    try:
        page = api.request("GET", "/api/orders?" + urllib.parse.urlencode(query))
    except ApiError as error:
        return _refused(error)
    if args.json:
        print(json.dumps(page))
        return EXIT_OK
    from rich.table import Table

    table = Table("created", "order", "type", "pair", "amount", "status", "venue", "out")
    for order in page["orders"]:
        table.add_row(
            (order.get("createdAt") or "")[:19].replace("T", " "),
            order["orderId"],
            order["type"],
            f"{order['tokenIn']}→{order['tokenOut']}",
            order["amount"],
            f"[{STATUS_STYLE.get(order['status'], '')}]{order['status']}[/]",
            order.get("dex") or "",
            order.get("amountOut") or "",
        )
    _console().print(table)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    try:
        rows = run_export(_api(args), args.since, args.until, args.format, sys.stdout)
    except ApiError as error:
        return _refused(error)
    _console(stderr=True).print(f"{rows} orders exported", markup=False)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    api = _api(args)
    try:
        order = api.request("GET", f"/api/orders/{urllib.parse.quote(args.order_id)}")
    except ApiError as error:
        return _refused(error)
    if args.json:
        print(json.dumps(order))
        return EXIT_OK
    console = _console()
    for name in (
        "orderId", "type", "status", "tokenIn", "tokenOut", "amount", "slippageBps", "attempts",
        "dex", "quotedAmountOut", "amountOut", "executedPrice", "txHash", "error", "createdAt",
        "slices", "intervalS", "parentId", "sliceIndex",
    ):  # fmt: skip
        value = order.get(name)
        if value is not None:
            console.print(f"{name:>16}  {value}", markup=False)
    for event in order.get("events", []):
        _show_event(console, event, as_json=False)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    api = _api(args)
    try:
        order = api.request("DELETE", f"/api/orders/{urllib.parse.quote(args.order_id)}")
    except ApiError as error:
        return _refused(error)
    if args.json:
        print(json.dumps(order))
    else:
        _console().print(f"order {order['orderId']} {order['status']}", markup=False)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m order_engine.client submit …`: the same commands as `order-engine submit …`,
    on a machine that has the client and nothing of the server."""
    parser = argparse.ArgumentParser(prog="python -m order_engine.client", description=__doc__)
    add_commands(parser.add_subparsers(required=True, metavar="command"))
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result
