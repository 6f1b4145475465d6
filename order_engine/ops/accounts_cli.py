"""`order-engine accounts …`: accounts and the limits each may have of its own.

    order-engine accounts list
    order-engine accounts show acme
    order-engine accounts set-limits acme --rate 200 --burst 500 --in-flight 2000 --sockets 1000
    order-engine accounts set-limits acme --rate default      # back to RATE_LIMIT_PER_S

A limit an account does not have of its own is the deployment's setting. The API reads an
account's limits with its keys, so every API process applies a change within API_KEY_CACHE_S,
without a restart. Bad input is refused with a message and exit status 2, changing nothing.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from order_engine.errors import OrderEngineError

if TYPE_CHECKING:
    from order_engine.config import Settings
    from order_engine.services.access import AccessService, AccountLimits, AccountSummary

# Opens the access service on a migrated database, with the settings (ops/cli.py's).
OpenAccess = Callable[[], AbstractContextManager[tuple["Settings", "AccessService"]]]

# Each limit's flag (and name in the listings), the setting it replaces and its unit.
FLAGS = {
    "rate_limit_per_s": ("--rate", "RATE_LIMIT_PER_S", "/s"),
    "rate_limit_burst": ("--burst", "RATE_LIMIT_BURST", ""),
    "max_orders_in_flight": ("--in-flight", "MAX_ORDERS_IN_FLIGHT", ""),
    "max_waiting_orders": ("--waiting", "MAX_WAITING_ORDERS", ""),
    "max_websockets": ("--sockets", "MAX_WEBSOCKETS", ""),
}
NO_CAP_AT_0 = ("max_orders_in_flight", "max_waiting_orders")
HELP = {
    "rate_limit_per_s": "sustained requests per second",
    "rate_limit_burst": "requests allowed at once above that rate",
    "max_orders_in_flight": "orders in flight: market and triggered orders (0: no cap)",
    "max_waiting_orders": "limit and sniper orders waiting for their trigger (0: no cap)",
    "max_websockets": "open WebSockets",
}


def add_commands(sub: Any, open_access: OpenAccess) -> None:
    """`accounts list|show|set-limits`, added to `order-engine`'s subcommands."""
    accounts = sub.add_parser("accounts", help="accounts and their own limits")
    actions = accounts.add_subparsers(required=True, metavar="action")
    listing = actions.add_parser("list", help="every account: its limits and keys")
    listing.set_defaults(handler=functools.partial(cmd_list, open_access=open_access))
    show = actions.add_parser("show", help="one account: each limit, its own or the default")
    show.add_argument("account", help="the account's name")
    show.set_defaults(handler=functools.partial(cmd_show, open_access=open_access))
    limits = actions.add_parser(
        "set-limits",
        help="set some of an account's limits (`default`: the deployment's setting again)",
        description="Set any of the limits; `default` clears one back to its setting. Every "
        "API process applies them within API_KEY_CACHE_S.",
    )
    limits.add_argument("account", help="the account's name")
    for name, (flag, setting, _unit) in FLAGS.items():
        limits.add_argument(
            flag,
            dest=name,
            default=argparse.SUPPRESS,
            metavar="N|default",
            help=f"{HELP[name]} (default: {setting})",
        )
    limits.set_defaults(handler=functools.partial(cmd_set_limits, open_access=open_access))


def cmd_list(_args: argparse.Namespace, *, open_access: OpenAccess) -> int:
    with open_access() as (settings, service):
        summaries = service.accounts_summary()
    names = [flag.removeprefix("--") for flag, _setting, _unit in FLAGS.values()]
    print(f"{'account':<24} " + " ".join(f"{name:<10}" for name in names) + " keys")
    for summary in summaries:
        own = [_value(getattr(summary.limits, name), name) or "default" for name in FLAGS]
        print(
            f"{summary.name[:24]:<24} "
            + " ".join(f"{value:<10}" for value in own)
            + f" {summary.active_keys}"
        )
    defaults = ", ".join(
        f"{setting} {_value(getattr(settings, name), name)}"
        for name, (_flag, setting, _unit) in FLAGS.items()
    )
    print(f"default: {defaults}")
    return 0


def cmd_show(args: argparse.Namespace, *, open_access: OpenAccess) -> int:
    with open_access() as (settings, service):
        try:
            [summary] = service.accounts_summary(args.account)
        except OrderEngineError as exc:
            print(f"refused: {exc.description}", file=sys.stderr)
            return 2
    _print_limits(summary, settings)
    return 0


def cmd_set_limits(args: argparse.Namespace, *, open_access: OpenAccess) -> int:
    from order_engine.services.access import parse_limit

    given = {name: getattr(args, name) for name in FLAGS if hasattr(args, name)}
    if not given:
        flags = ", ".join(flag for flag, _setting, _unit in FLAGS.values())
        print(f"refused: give at least one of {flags}.", file=sys.stderr)
        return 2
    try:  # every value read before anything is written
        limits = {name: parse_limit(name, raw, FLAGS[name][0]) for name, raw in given.items()}
    except OrderEngineError as exc:
        print(f"refused: {exc.description}", file=sys.stderr)
        return 2
    with open_access() as (settings, service):
        try:
            service.set_limits(args.account, limits)
            [summary] = service.accounts_summary(args.account)
        except OrderEngineError as exc:
            print(f"refused: {exc.description}", file=sys.stderr)
            return 2
    _print_limits(summary, settings)
    print(f"Every API process applies them within API_KEY_CACHE_S ({settings.api_key_cache_s} s).")
    return 0


def _print_limits(summary: AccountSummary, settings: Settings) -> None:
    """The account's line, then one line per limit: its value, and whose it is."""
    print(
        f"account {summary.name}, created {summary.created_at:%Y-%m-%d %H:%M}, keys: "
        f"{summary.active_keys} active, {summary.revoked_keys} revoked"
    )
    effective: AccountLimits = summary.limits.over(settings)
    for name, (flag, setting, _unit) in FLAGS.items():
        value = _value(getattr(effective, name), name)
        own = getattr(summary.limits, name) is not None
        whose = "its own" if own else f"the default ({setting})"
        print(f"  {flag.removeprefix('--'):<10} {value:<10} {whose}")


def _value(value: float | int | None, name: str) -> str:
    """A limit as an operator writes it ('' for None); a rate with its unit."""
    if value is None:
        return ""
    if value == 0 and name in NO_CAP_AT_0:
        return "no cap"
    text = f"{value:f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return text + FLAGS[name][2]
