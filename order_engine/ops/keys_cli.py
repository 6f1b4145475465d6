"""`order-engine keys …`: API keys (create, list, revoke), and the development key `make run`
creates on the embedded default."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from order_engine.config import Settings
from order_engine.ops import embedded
from order_engine.ops.environment import _access_service, access_service


def add_commands(sub: Any) -> None:
    """`keys create|list|revoke`, added to `order-engine`'s subcommands."""
    keys = sub.add_parser("keys", help="API keys: create, list, revoke (docs/api.md)")
    keys_sub = keys.add_subparsers(required=True, metavar="action")
    create = keys_sub.add_parser(
        "create", help="create a key (shown once, on the last line) for an account"
    )
    create.add_argument("--account", default="default", help="account name (created if new)")
    create.add_argument("--name", default="key", help="what the key is for")
    create.add_argument(
        "--scopes",
        default="orders:read,orders:write",
        help="comma-separated: orders:read, orders:write, admin (default: the first two)",
    )
    create.set_defaults(handler=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="every key: prefix, account, name, scopes, state")
    listing.set_defaults(handler=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its prefix (or the whole key)")
    revoke.add_argument("key", help="the key's prefix, as `keys list` shows it")
    revoke.set_defaults(handler=cmd_keys_revoke)


def cmd_keys_create(args: argparse.Namespace) -> int:
    from order_engine.errors import OrderEngineError

    with access_service() as (_settings, service):
        try:
            created = service.create_key(
                args.account, args.name, [s.strip() for s in args.scopes.split(",") if s.strip()]
            )
        except OrderEngineError as exc:
            print(f"refused: {exc.description}", file=sys.stderr)
            return 2
    print(
        f"Created API key {created.key.prefix} ({created.key.name!r}) for account "
        f"{created.account.name!r} with scopes {', '.join(created.key.scopes)}. It is shown "
        "only now; send it as `Authorization: Bearer <key>`:"
    )
    print(created.secret)
    return 0


def cmd_keys_list(_args: argparse.Namespace) -> int:
    with access_service() as (_settings, service):
        rows = service.list_keys()
    table = [("prefix", "account", "name", "scopes", "created", "state")]
    for key, account in rows:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        created = f"{key.created_at:%Y-%m-%d %H:%M}"
        table.append((key.prefix, account.name, key.name, ",".join(key.scopes), created, state))
    # Each column as wide as its longest value: names are never cut.
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]) - 1)]
    for *padded, last in table:
        cells = [value.ljust(width) for value, width in zip(padded, widths, strict=True)]
        print("  ".join([*cells, last]))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from order_engine.errors import OrderEngineError

    with access_service() as (settings, service):
        try:
            key = service.revoke(args.key)
        except OrderEngineError as exc:
            print(f"refused: {exc.description}", file=sys.stderr)
            return 1
    print(
        f"Revoked API key {key.prefix} ({key.name!r}); every API process refuses it within "
        f"API_KEY_CACHE_S ({settings.api_key_cache_s} s)."
    )
    return 0


DEV_KEY_PATH = embedded.STATE_DIR / "dev-api-key"


def ensure_dev_key(settings: Settings) -> str:
    """`make run` on the embedded default: the development key of the default account, created
    on first start and kept in .state/dev-api-key (git-ignored) so it can be printed again."""
    from order_engine.services.access import KEY_PATTERN

    if DEV_KEY_PATH.exists():
        saved = DEV_KEY_PATH.read_text().strip()
        engine, service = _access_service(settings)
        try:
            if KEY_PATTERN.match(saved) and service.authenticate(saved) is not None:
                return saved
        finally:
            engine.dispose()
    engine, service = _access_service(settings)
    try:
        created = service.create_key("default", "make run (development)", SCOPES_DEV)
    finally:
        engine.dispose()
    DEV_KEY_PATH.parent.mkdir(parents=True, exist_ok=True)
    DEV_KEY_PATH.touch(mode=0o600)
    DEV_KEY_PATH.write_text(created.secret + "\n")
    return created.secret


SCOPES_DEV = ("orders:read", "orders:write")
