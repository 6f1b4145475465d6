"""`order-engine localnet …`: run the localnet, or change a running one through its admin RPC.

    serve (default)   run the node on 127.0.0.1:$LOCALNET_PORT
    move SOL/USDC --price 250
    launch --mint <base58> --symbol NEW --decimals 6 --quote SOL --liquidity 1000 --price 0.001
           --venue raydium|meteora
    drain <pool address | raydium:SOL-USDC>
    congest --level quiet|busy|high|extreme --seconds 60   (and/or --expiry-rate 0.5)
    fault --memo <memo> KIND [KIND ...]   (rpc_unavailable, lost_response, drop, price_jump, stall)
    mev --rate 0.5                         (the searcher sandwiches that share of public swaps)
    mev-report
    status

Every admin command takes `--url`; without it, $LOCALNET_PORT when set, else the localnet this
folder's `make run` started (.state/run.json), else http://127.0.0.1:8899. It says which on stderr,
applies the change and exits 0 once getMultipleAccounts serves it, printing a one-line
confirmation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from order_engine.config import STATE_DIR
from order_engine.localnet.config import LocalnetSettings

COMMANDS = ("serve", "move", "launch", "drain", "congest", "fault", "mev", "mev-report", "status")
LEVELS = ("quiet", "busy", "high", "extreme")


class AdminError(Exception):
    pass


def _rpc(url: str, method: str, params: Any, timeout: float = 10.0) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError) as exc:
        raise AdminError(f"cannot reach the localnet at {url}: {exc}") from None
    if "error" in answer:
        raise AdminError(answer["error"].get("message", str(answer["error"])))
    return answer["result"]


def _visible(url: str, addresses: list[str]) -> None:
    """Wait until getMultipleAccounts serves every address (the change is visible)."""
    for start in range(0, len(addresses), 100):
        chunk = addresses[start : start + 100]
        result = _rpc(url, "getMultipleAccounts", [chunk, {"encoding": "base64"}])
        missing = [a for a, v in zip(chunk, result["value"], strict=True) if v is None]
        if missing:
            raise AdminError(f"accounts not served after the change: {', '.join(missing)}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="order-engine localnet", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command")

    def admin(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--url",
            help="localnet RPC URL (default: $LOCALNET_PORT's, else this folder's `make run`'s, "
            "else http://127.0.0.1:8899)",
        )
        return sub

    commands.add_parser("serve", help="run the localnet (the default)")
    move = admin("move", "move a market: the reference price of one BASE in QUOTE")
    move.add_argument("pair", help="BASE/QUOTE, e.g. SOL/USDC")
    move.add_argument("--price", required=True, help="QUOTE per one BASE, e.g. 250")
    launch = admin("launch", "list a pool for a new token")
    launch.add_argument("--mint", required=True)
    launch.add_argument("--symbol", required=True)
    launch.add_argument("--decimals", type=int, default=6)
    launch.add_argument("--quote", default="SOL")
    launch.add_argument("--liquidity", required=True, help="quote-token depth, whole tokens")
    launch.add_argument("--price", required=True, help="quote per one new token")
    launch.add_argument("--venue", choices=("raydium", "meteora"), default="raydium")
    drain = admin("drain", "empty a pool")
    drain.add_argument("pool", help="pool address or id like raydium:SOL-USDC")
    congest = admin(
        "congest",
        "for a while, background demand for block space (--level) and/or a share of accepted "
        "transactions that never lands (--expiry-rate)",
    )
    congest.add_argument("--level", choices=LEVELS)
    congest.add_argument("--expiry-rate")
    congest.add_argument("--seconds", type=int, required=True)
    fault = admin("fault", "plan faults for the next sends carrying a memo")
    fault.add_argument("--memo", required=True)
    fault.add_argument("faults", nargs="+")
    mev = admin("mev", "the searcher sandwiches this share of public swaps, when it pays (0: off)")
    mev.add_argument("--rate", required=True)
    admin("mev-report", "every sandwich: victim, slot, pool, value taken")
    admin("status", "slot, congestion, searcher, pools with their mid prices, pending count")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    command = args.command or "serve"
    if command == "serve":
        return _serve()
    try:
        return _admin(command, args)
    except AdminError as exc:
        print(f"localnet {command}: {exc}", file=sys.stderr)
        return 1


def _serve() -> int:
    # Imported here: the admin commands are plain HTTP calls and need neither gevent nor the
    # cluster, which take most of this command's start-up time.
    from order_engine.localnet.node import Localnet
    from order_engine.localnet.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = LocalnetSettings.from_env()
    node = Localnet(settings)

    def ready(url: str) -> None:
        print(
            f"localnet listening on {url} (slot {node.cluster.current_slot()}, "
            f"state {settings.state_dir})",
            flush=True,
        )

    serve(node, ready)
    return 0


def _admin(command: str, args: argparse.Namespace) -> int:
    url = args.url or _default_url()
    print(f"→ {url}", file=sys.stderr, flush=True)  # which localnet: never the wrong one silently
    if command == "move":
        result = _rpc(url, "localnet_move", {"pair": args.pair, "price": args.price})
        _visible(url, [p["address"] for p in result["pools"]])
        mids = ", ".join(f"{p['poolId']} {p['mid']}" for p in result["pools"])
        print(f"moved {args.pair} to {args.price}: {mids}")
    elif command == "launch":
        result = _rpc(
            url,
            "localnet_launch",
            {
                "mint": args.mint,
                "symbol": args.symbol,
                "decimals": args.decimals,
                "quote": args.quote,
                "liquidity": args.liquidity,
                "price": args.price,
                "venue": args.venue,
            },
        )
        _visible(url, [result["address"]])
        print(result["address"])
    elif command == "drain":
        result = _rpc(url, "localnet_drain", {"pool": args.pool})
        _visible(url, [result["address"]])
        print(f"drained {result['poolId']} ({result['address']})")
    elif command == "congest":
        _congest(url, args)
    elif command == "fault":
        result = _rpc(url, "localnet_planFaults", {"memo": args.memo, "faults": args.faults})
        print(f"planned {', '.join(args.faults)} for memo {args.memo} ({result['planned']} queued)")
    elif command == "mev":
        result = _rpc(url, "localnet_mev", {"rate": args.rate})
        print(f"searcher rate {result['rate']}")
    elif command == "mev-report":
        _mev_report(url)
    elif command == "status":
        _status(url)
    return 0


def _default_url() -> str:
    """$LOCALNET_PORT set in the environment, else the localnet of this folder's running `make
    run` (the run file order_engine/ops/run_file.py writes; read here, as the localnet imports
    nothing of ops), else the settings' port (`.env` or 8899)."""
    if os.environ.get("LOCALNET_PORT"):
        return f"http://127.0.0.1:{LocalnetSettings.from_env().port}"
    try:
        recorded = json.loads((STATE_DIR / "run.json").read_text())
        os.kill(int(recorded["pid"]), 0)  # its run is still there
        url = recorded["localnet"]
    except (OSError, ValueError, KeyError, TypeError):
        url = None
    if isinstance(url, str):
        return url
    return f"http://127.0.0.1:{LocalnetSettings.from_env().port}"


def _congest(url: str, args: argparse.Namespace) -> None:
    params: dict[str, Any] = {"seconds": args.seconds}
    if args.level is not None:
        params["level"] = args.level
    if args.expiry_rate is not None:
        params["expiryRate"] = args.expiry_rate
    if len(params) == 1:
        raise AdminError("give --level, --expiry-rate or both")
    result = _rpc(url, "localnet_congest", params)
    if "level" in result:
        print(f"congested: level {result['level']} until {_utc(result['levelUntilMs'])}")
    if "expiryRate" in result:
        print(f"congested: expiry rate {result['expiryRate']} for {args.seconds} s")


def _mev_report(url: str) -> None:
    report = _rpc(url, "localnet_mevReport", {})
    for entry in report:
        print(
            f"slot {entry['slot']} {entry['victim']} on {entry['poolId']}: "
            f"{entry['valueTakenAtoms']} atoms of {entry['outputMint']} taken"
        )
    print(f"{len(report)} sandwiches")


def _status(url: str) -> None:
    result = _rpc(url, "localnet_status", {})
    print(f"slot {result['slot']}, {result['pending']} pending, {result['landed']} landed")
    congestion = result["congestion"]
    until = "" if congestion["untilMs"] is None else f" until {_utc(congestion['untilMs'])}"
    print(f"  congestion {congestion['level']}{until}; searcher rate {result['mevRate']}")
    for pool in result["pools"]:
        mid = pool["mid"] or "empty"
        print(f"  {pool['poolId']:<24} {pool['address']:<44} {mid}")


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
