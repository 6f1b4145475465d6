"""API keys and stream tickets: who is calling, for which account, with which scopes (see
docs/design.md, "Access: keys, tickets, limits").

A key looks like `oe_<prefix>_<secret>`: the prefix (8 hex digits) finds its row, the whole key
is compared by its SHA-256 with `hmac.compare_digest`. Keys are shown once, at creation; the
database only ever holds the hash. A stream ticket is for browsers, which cannot set headers on
a WebSocket: a random one-use token kept in Redis for a few seconds, standing for the key that
asked for it, and only while that key stands.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import redis
from sqlalchemy.orm import Session

from order_engine.config import ConfigError, Settings
from order_engine.config.options import options_of
from order_engine.errors import NotFoundError, UnprocessableError
from order_engine.models import SCOPES, Account, ApiKey
from order_engine.repositories.account import AccountRepository

KEY_PATTERN = re.compile(r"\Aoe_([0-9a-f]{8})_[A-Za-z0-9_-]{43}\Z")
TICKET_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")
TICKET_PREFIX = "stream_ticket:"


# The limits an account may have of its own, each named as the setting it replaces (a field of
# `Settings`, the deployment's default, and a column of `accounts`).
LIMITS = (
    "rate_limit_per_s",
    "rate_limit_burst",
    "max_orders_in_flight",
    "max_waiting_orders",
    "max_websockets",
)
# The most a whole-number limit may be (its column is an INTEGER); no deployment needs more.
LIMIT_MAX = 1_000_000_000
_LIMIT_OPTIONS = {name: option for name, option in options_of(Settings) if name in LIMITS}


@dataclass(frozen=True)
class AccountLimits:
    """An account's own limits; None where the deployment's setting of that name applies."""

    rate_limit_per_s: float | None = None
    rate_limit_burst: int | None = None
    max_orders_in_flight: int | None = None
    max_waiting_orders: int | None = None
    max_websockets: int | None = None

    @classmethod
    def of(cls, account: Account) -> AccountLimits:
        rate = account.rate_limit_per_s
        return cls(
            rate_limit_per_s=None if rate is None else float(rate),
            rate_limit_burst=account.rate_limit_burst,
            max_orders_in_flight=account.max_orders_in_flight,
            max_waiting_orders=account.max_waiting_orders,
            max_websockets=account.max_websockets,
        )

    def over(self, settings: Settings) -> AccountLimits:
        """Every limit: the account's own where it has one, else the deployment's setting."""
        values = {}
        for name in LIMITS:
            own = getattr(self, name)
            values[name] = getattr(settings, name) if own is None else own
        return AccountLimits(**values)


def parse_limit(name: str, raw: str, label: str) -> float | int | None:
    """An operator's text for limit `name` (`label` names it in a refusal): read as its setting
    is, within the same bounds, or None for `default` (the deployment's setting again)."""
    option = _LIMIT_OPTIONS[name]
    if raw.strip().lower() == "default":
        return None
    try:
        value = option.parser.parse(label, raw)
    except ConfigError as exc:
        raise UnprocessableError(f"{exc} (or `default`: {option.variable}).") from None
    if value > LIMIT_MAX:
        raise UnprocessableError(f"{label} must be at most {LIMIT_MAX}, got {value}.")
    return value


@dataclass(frozen=True)
class Principal:
    """The caller: one API key of one account, with that key's scopes and the account's own
    limits as they were when the key was read."""

    key_id: uuid.UUID
    account_id: uuid.UUID
    scopes: frozenset[str]
    limits: AccountLimits = AccountLimits()

    def can(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    account: Account
    secret: str  # the full key, shown once


@dataclass(frozen=True)
class AccountSummary:
    name: str
    created_at: datetime
    limits: AccountLimits  # its own
    active_keys: int
    revoked_keys: int


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class AccessService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.accounts = AccountRepository(session)

    def create_key(self, account_name: str, key_name: str, scopes: Iterable[str]) -> CreatedKey:
        """A new key for `account_name` (the account is created on first use)."""
        chosen = sorted(set(scopes))
        unknown = [s for s in chosen if s not in SCOPES]
        if unknown or not chosen:
            raise UnprocessableError(
                f"Scopes must be some of {', '.join(SCOPES)}; got {', '.join(chosen) or 'none'}."
            )
        with self.session.begin():
            account = self.accounts.account_named(account_name) or self.accounts.add_account(
                account_name
            )
            prefix = secrets.token_hex(4)
            secret = f"oe_{prefix}_{secrets.token_urlsafe(32)}"
            key = self.accounts.add_key(
                ApiKey(
                    id=uuid.uuid4(),
                    account_id=account.id,
                    name=key_name,
                    prefix=prefix,
                    key_hash=hash_key(secret),
                    scopes=chosen,
                )
            )
        return CreatedKey(key, account, secret)

    def list_keys(self) -> Sequence[tuple[ApiKey, Account]]:
        with self.session.begin():
            return self.accounts.keys()

    def revoke(self, key_or_prefix: str) -> ApiKey:
        """Revoke a key given by its prefix (or by the whole key); revoking twice is fine."""
        match = KEY_PATTERN.match(key_or_prefix)
        prefix = match.group(1) if match else key_or_prefix.removeprefix("oe_")
        with self.session.begin():
            key = self.accounts.revoke(prefix)
            if key is None:
                raise NotFoundError(f"No API key with prefix {prefix!r}.")
            return key

    def authenticate(self, raw_key: str) -> Principal | None:
        """The principal of a valid, unrevoked key; None for anything else."""
        match = KEY_PATTERN.match(raw_key)
        if match is None:
            return None  # malformed: never worth a database round trip
        with self.session.begin():
            found = self.accounts.key_and_account_by_prefix(match.group(1))
            if found is None or found[0].revoked_at is not None:
                return None
            if not hmac.compare_digest(found[0].key_hash, hash_key(raw_key)):
                return None
            return _principal(*found)

    def principal_of_key(self, key_id: uuid.UUID) -> Principal | None:
        """The principal of the key with this id while it is unrevoked (a redeemed stream
        ticket's key, checked again so that the ticket dies with it); None otherwise."""
        with self.session.begin():
            found = self.accounts.key_and_account_by_id(key_id)
            if found is None or found[0].revoked_at is not None:
                return None
            return _principal(*found)

    def accounts_summary(self, name: str | None = None) -> list[AccountSummary]:
        """Every account (or the one called `name`: NotFoundError if there is none) with its
        own limits and its keys."""
        with self.session.begin():
            rows = self.accounts.accounts_with_key_counts(name)
        if name is not None and not rows:
            raise _no_account(name)
        return [
            AccountSummary(account.name, account.created_at, AccountLimits.of(account), *keys)
            for account, *keys in rows
        ]

    def set_limits(
        self, account_name: str, limits: Mapping[str, float | int | None]
    ) -> AccountLimits:
        """Set some of an account's own limits (a value as `parse_limit` gives it; None: the
        deployment's setting again). Every API process applies them when it reads the account's
        keys again, within API_KEY_CACHE_S. Returns the account's own limits now."""
        unknown = sorted(set(limits) - set(LIMITS))
        if unknown:
            raise UnprocessableError(f"No such limit: {', '.join(unknown)}.")
        # A rate is stored exact, as the operator wrote it (its float's shortest repr).
        exact = {
            name: Decimal(repr(value)) if isinstance(value, float) else value
            for name, value in limits.items()
        }
        with self.session.begin():
            account = self.accounts.account_named(account_name)
            if account is None:
                raise _no_account(account_name)
            self.accounts.set_limits(account, exact)
            return AccountLimits.of(account)


def _no_account(name: str) -> NotFoundError:
    return NotFoundError(f"No account {name!r} (`order-engine accounts list` lists them).")


def _principal(key: ApiKey, account: Account) -> Principal:
    return Principal(key.id, key.account_id, frozenset(key.scopes), AccountLimits.of(account))


def issue_ticket(client: redis.Redis, principal: Principal, ttl_s: int) -> str:
    """A one-use stream ticket standing for `principal` for `ttl_s` seconds."""
    ticket = secrets.token_urlsafe(32)
    value = json.dumps(
        {
            "keyId": str(principal.key_id),
            "accountId": str(principal.account_id),
            "scopes": sorted(principal.scopes),
        }
    )
    client.set(TICKET_PREFIX + hash_key(ticket), value, ex=ttl_s)
    return ticket


def redeem_ticket(client: redis.Redis, ticket: str) -> Principal | None:
    """The ticket's principal as it was issued, once: the ticket is deleted in the same step.
    Whether its key still stands is the caller's to check (`AccessService.principal_of_key`)."""
    if TICKET_PATTERN.match(ticket) is None:
        return None
    pipe = client.pipeline(transaction=True)
    name = TICKET_PREFIX + hash_key(ticket)
    pipe.get(name)
    pipe.delete(name)
    value, _deleted = pipe.execute()
    if value is None:
        return None
    data = json.loads(value)
    return Principal(
        uuid.UUID(data["keyId"]), uuid.UUID(data["accountId"]), frozenset(data["scopes"])
    )
