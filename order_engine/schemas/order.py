"""Request and response schemas for orders.

Amounts are exact decimals: strings like "1.5", or JSON numbers only when they are plain
decimals (the JSON provider hands us their literal text). NaN, Infinity, exponents, signs,
more decimals than the token has, and amounts beyond a u64 of atoms are all refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)
from solders.pubkey import Pubkey

from order_engine.domain.time import format_timestamp
from order_engine.domain.tokens import Token, UnknownTokenError, resolve
from order_engine.domain.twap import INTERVAL_S_MAX, SLICES_MAX
from order_engine.models import OrderStatus, OrderType
from order_engine.schemas.jsonio import NonFiniteNumber

U64_MAX = 2**64 - 1
_PLAIN_DECIMAL = re.compile(r"^[0-9]{1,30}(\.[0-9]{1,30})?$")
_DIGITS_AND_A_DOT = re.compile(r"[0-9]+(\.[0-9]+)?")
PRICE_DECIMALS = 18  # numeric(38, 18)
PRICE_MAX = Decimal(10) ** 20


class ExactAmount(fields.Field):
    """A positive decimal amount, exact, from a string or a plain JSON number."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool):
            raise ValidationError('Must be a decimal string like "1.5", not a boolean.')
        if isinstance(value, NonFiniteNumber):
            raise ValidationError(f"{value} is not an amount.")
        if isinstance(value, int | str):  # JsonNumberLiteral is a str: its literal text
            text = str(value)
        else:
            raise ValidationError('Must be a decimal string like "1.5".')
        if text.startswith("-"):
            raise ValidationError("Must be greater than 0.")
        if "e" in text.lower():
            raise ValidationError(
                'Exponent notation is not accepted; send a plain decimal like "1.5".'
            )
        # fullmatch: `$` would also match before a trailing newline ("1.5\n").
        if not _PLAIN_DECIMAL.fullmatch(text):
            if _DIGITS_AND_A_DOT.fullmatch(text):
                raise ValidationError("At most 30 digits before the dot and 30 after it.")
            raise ValidationError('Must be a plain decimal like "1.5" (digits and one dot).')
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ValidationError("Not a valid decimal.") from None
        if amount <= 0:
            raise ValidationError("Must be greater than 0.")
        return amount

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else format(value.normalize(), "f")


@dataclass(frozen=True)
class UnlistedMint(Token):
    """A well-formed mint the registry does not list: only a sniper may name one (its
    decimals are read from the chain once its pool exists)."""

    problem: str = ""


class TokenField(fields.Field):
    """A token symbol or mint, loaded as the registry's `Token` (or an `UnlistedMint`, which
    the schema accepts only as a sniper's tokenOut)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Token:
        if not isinstance(value, str):
            raise ValidationError("Not a valid string.")
        try:
            return resolve(value)
        except UnknownTokenError as exc:
            if _is_pubkey(value):
                return UnlistedMint(value, value, 0, problem=str(exc))
            raise ValidationError(str(exc)) from None


def _is_pubkey(value: str) -> bool:
    try:
        Pubkey.from_string(value)
    except ValueError:
        return False
    return True


class OrderCreateSchema(Schema):
    """Body of POST /api/orders/execute (and the first WebSocket message): its shape only.

    Nothing here asks the chain or reads the app: whether a pool lists the pair, could fill
    the amount or already trades a sniper's mint is asked by the intake service
    (`services/market.py`), of the fields whose shape is valid. The one setting the shape
    depends on, how far ahead `expiresAt` may be, is given to the constructor.
    """

    class Meta:
        unknown = RAISE

    def __init__(self, *, limit_max_horizon_s: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.horizon = timedelta(seconds=limit_max_horizon_s)

    type = fields.String(
        required=True,
        validate=validate.OneOf([t.value for t in OrderType]),
        metadata={
            "description": "market, limit (limitPrice), sniper (tokenOut: a mint) or twap "
            "(slices, intervalS; optional limitPrice)"
        },
    )
    tokenIn = TokenField(required=True, metadata={"description": "symbol or base58 mint"})
    tokenOut = TokenField(required=True, metadata={"description": "symbol or base58 mint"})
    amount = ExactAmount(
        required=True,
        metadata={
            "description": "amount of tokenIn to sell: a decimal string (or a plain JSON number)",
            "example": "1.5",
            # What the field accepts (`_deserialize`): the JSON provider hands a plain number
            # over as its literal text, so it is as exact as the string.
            "anyOf": [
                {"type": "string", "format": "decimal", "pattern": _PLAIN_DECIMAL.pattern},
                {"type": "number", "exclusiveMinimum": True, "minimum": 0},
            ],
        },
    )
    slippageBps = fields.Integer(
        strict=True,
        load_default=50,
        validate=validate.Range(0, 5000),
        error_messages={"invalid": "Must be an integer from 0 to 5000."},
        metadata={"description": "max slippage from the quote in basis points (default 50)"},
    )
    clientOrderId = fields.String(
        load_default=None,
        allow_none=True,
        validate=[validate.Length(1, 128), lambda v: _storable_text(v)],
        metadata={"description": "yours, up to 128 printable characters; echoed back"},
    )
    limitPrice = ExactAmount(
        load_default=None,
        metadata={
            "description": "limit (and twap, optional): the least tokenOut per one tokenIn "
            "accepted (decimal string); a twap slice whose quote is worse waits for the next "
            "interval",
            "example": "250",
        },
    )
    maxPrice = ExactAmount(
        load_default=None,
        metadata={"description": "sniper: the most tokenIn per one tokenOut it may pay"},
    )
    expiresAt = fields.AwareDateTime(
        format="iso",
        default_timezone=None,
        load_default=None,
        metadata={
            "description": "limit/sniper: when a waiting order fails with ORDER_EXPIRED "
            "(ISO 8601 with a time zone; at most LIMIT_MAX_HORIZON_S ahead)"
        },
    )

    slices = fields.Integer(
        strict=True,
        load_default=None,
        validate=validate.Range(1, SLICES_MAX),
        metadata={
            "description": f"twap: child market orders to split the amount into, 1-{SLICES_MAX}"
        },
    )
    intervalS = fields.Integer(
        strict=True,
        load_default=None,
        validate=validate.Range(1, INTERVAL_S_MAX),
        metadata={
            "description": "twap: seconds between slices (slice k is due k × intervalS after "
            "acceptance; the last at most LIMIT_MAX_HORIZON_S ahead)"
        },
    )

    @validates_schema(skip_on_field_errors=False)
    def check_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors = {**_trigger_problems(data, self.horizon), **_token_problems(data)}
        errors.update(_twap_problems(data, self.horizon, errors))
        token_in, amount = data.get("tokenIn"), data.get("amount")
        if token_in is not None and "tokenIn" not in errors and amount is not None:
            message = _amount_problem(amount, token_in)
            if message:
                errors["amount"] = [message]
        if errors:
            raise ValidationError(errors)


def _token_problems(data: dict[str, Any]) -> dict[str, list[str]]:
    """Listed tokens, two different ones; a sniper's tokenOut is instead a mint the registry
    does not list (it waits for that mint's first pool: a listed token is a market order's
    business)."""
    errors: dict[str, list[str]] = {}
    is_sniper = data.get("type") == OrderType.SNIPER.value
    token_in, token_out = data.get("tokenIn"), data.get("tokenOut")
    if isinstance(token_in, UnlistedMint):
        errors["tokenIn"] = [token_in.problem]
        token_in = None
    if isinstance(token_out, UnlistedMint) and not is_sniper:
        errors["tokenOut"] = [token_out.problem]
        token_out = None
    if token_in is None or token_out is None:
        return errors
    if is_sniper and not isinstance(token_out, UnlistedMint):
        errors["tokenOut"] = [f"{token_out.symbol} is already listed; use a market order."]
    elif token_in.mint == token_out.mint:
        errors["tokenOut"] = ["Must differ from tokenIn (SOL and wSOL are one token)."]
    return errors


def _trigger_problems(data: dict[str, Any], horizon: timedelta) -> dict[str, list[str]]:
    """limitPrice, maxPrice and expiresAt: each only where its order type uses it."""
    errors: dict[str, list[str]] = {}
    order_type = data.get("type")
    uses = {
        "limitPrice": order_type in {OrderType.LIMIT.value, OrderType.TWAP.value},
        "maxPrice": order_type == OrderType.SNIPER.value,
        "expiresAt": order_type in {OrderType.LIMIT.value, OrderType.SNIPER.value},
    }
    for name, used in uses.items():
        if data.get(name) is not None and not used:
            errors[name] = [f"Not used by {order_type} orders."]
    if order_type == OrderType.LIMIT.value and data.get("limitPrice") is None:
        errors["limitPrice"] = ["Missing data for required field (limit orders)."]
    for name in ("limitPrice", "maxPrice"):
        price = data.get(name)
        if price is None or name in errors:
            continue
        exponent = price.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > PRICE_DECIMALS:
            errors[name] = [f"At most {PRICE_DECIMALS} decimals."]
        elif price >= PRICE_MAX:
            errors[name] = [f"Must be below {PRICE_MAX:f}."]
    expires_at = data.get("expiresAt")
    if expires_at is not None and "expiresAt" not in errors:
        now = datetime.now(UTC)
        if expires_at <= now:
            errors["expiresAt"] = ["Must be in the future."]
        elif expires_at > now + horizon:
            errors["expiresAt"] = [
                f"Must be at most {int(horizon.total_seconds())} s (LIMIT_MAX_HORIZON_S) ahead."
            ]
    return errors


def _twap_problems(
    data: dict[str, Any], horizon: timedelta, known: dict[str, list[str]]
) -> dict[str, list[str]]:
    """slices and intervalS: a twap's, required there and nowhere else; its last slice within
    the horizon, and at least one atom of tokenIn per slice."""
    errors: dict[str, list[str]] = {}
    is_twap = data.get("type") == OrderType.TWAP.value
    for name in ("slices", "intervalS"):
        if data.get(name) is not None and not is_twap:
            errors[name] = [f"Not used by {data.get('type')} orders."]
        elif data.get(name) is None and is_twap:
            errors[name] = ["Missing data for required field (twap orders)."]
    slices, interval_s = data.get("slices"), data.get("intervalS")
    if errors or not is_twap or slices is None or interval_s is None:
        return errors
    if (slices - 1) * interval_s > horizon.total_seconds():
        errors["intervalS"] = [
            f"The last slice would start {(slices - 1) * interval_s} s from now, beyond "
            f"{int(horizon.total_seconds())} s (LIMIT_MAX_HORIZON_S)."
        ]
    token_in, amount = data.get("tokenIn"), data.get("amount")
    if token_in is not None and amount is not None and not {"tokenIn", "amount"} & set(known):
        atoms = amount.scaleb(token_in.decimals)
        if atoms < slices:
            errors["slices"] = [
                f"{slices} slices need at least {slices} of {token_in.symbol}'s smallest units; "
                f"{format(amount, 'f')} {token_in.symbol} is {atoms:f}."
            ]
    return errors


def _storable_text(value: str) -> bool:
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot encode a lone surrogate: refuse both
    (and other control characters) here, as a 422, rather than fail at the INSERT."""
    if not value.isprintable():
        raise ValidationError("Must be printable characters (no control characters or NUL).")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Must be valid Unicode text (no lone surrogates).") from None
    return True


def _amount_problem(amount: Decimal, token: Token) -> str | None:
    exponent = amount.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if decimals > token.decimals:
        return f"{token.symbol} has {token.decimals} decimals; this amount has {decimals}."
    if amount.scaleb(token.decimals) > U64_MAX:
        return f"Exceeds the largest {token.symbol} amount a token account can hold."
    return None


class EventSchema(Schema):
    orderId = fields.String()
    seq = fields.Integer()
    status = fields.String(validate=validate.OneOf([s.value for s in OrderStatus]))
    at = fields.String(metadata={"description": "ISO 8601 UTC, millisecond precision"})
    attempt = fields.Integer()
    data = fields.Dict()


class OrderSchema(Schema):
    """An order as clients see it."""

    orderId = fields.String(attribute="id")
    type = fields.String()
    status = fields.String()
    tokenIn = fields.String(attribute="token_in")
    tokenOut = fields.String(attribute="token_out")
    amount = ExactAmount(attribute="amount_in")
    slippageBps = fields.Integer(attribute="slippage_bps")
    clientOrderId = fields.String(attribute="client_order_id", allow_none=True)
    attempts = fields.Integer()
    dex = fields.String(allow_none=True)
    quotedAmountOut = ExactAmount(attribute="quoted_amount_out", allow_none=True)
    minAmountOut = ExactAmount(attribute="min_amount_out", allow_none=True)
    amountOut = ExactAmount(attribute="amount_out", allow_none=True)
    executedPrice = ExactAmount(attribute="executed_price", allow_none=True)
    txHash = fields.String(attribute="tx_hash", allow_none=True)
    limitPrice = ExactAmount(attribute="limit_price", allow_none=True)
    maxPrice = ExactAmount(attribute="max_price", allow_none=True)
    expiresAt = fields.Method("dump_expires", allow_none=True)
    waiting = fields.Boolean(
        metadata={"description": "limit/sniper: not triggered yet; twap: its slices still run"}
    )
    slices = fields.Integer(allow_none=True, metadata={"description": "twap: its slices"})
    intervalS = fields.Integer(
        attribute="interval_s", allow_none=True, metadata={"description": "twap: seconds apart"}
    )
    parentId = fields.String(
        attribute="parent_id", allow_none=True, metadata={"description": "a twap slice's parent"}
    )
    sliceIndex = fields.Integer(
        attribute="slice_index", allow_none=True, metadata={"description": "a twap slice's index"}
    )
    error = fields.Method("dump_error", allow_none=True)
    createdAt = fields.Method("dump_created")
    updatedAt = fields.Method("dump_updated")

    def dump_error(self, order: Any) -> dict[str, Any] | None:
        if not order.failure_code:
            return None
        return {
            "code": order.failure_code,
            "message": order.failure_reason,
            "retryable": bool(order.failure_retryable),
        }

    def dump_expires(self, order: Any) -> str | None:
        return None if order.expires_at is None else format_timestamp(order.expires_at)

    def dump_created(self, order: Any) -> str:
        return format_timestamp(order.created_at)

    def dump_updated(self, order: Any) -> str:
        return format_timestamp(order.updated_at)


class OrderWithEventsSchema(OrderSchema):
    """GET /api/orders/<id>: the order and its whole event history (documentation only: the
    view appends the events itself)."""

    events = fields.List(fields.Nested(EventSchema))
    twap = fields.Nested(
        "TwapSchema",
        allow_none=True,
        metadata={"description": "a TWAP parent's schedule, children and fills so far"},
    )


class OrderLinksSchema(Schema):
    self_ = fields.String(data_key="self", metadata={"description": "GET: the order"})
    ws = fields.String(metadata={"description": "WebSocket: its events"})


class OrderAcceptedSchema(Schema):
    """202 to a submission (documentation only: the view builds it, on the hot path)."""

    orderId = fields.UUID()
    status = fields.String(
        validate=validate.OneOf([s.value for s in OrderStatus]),
        metadata={"description": "pending; a replay (same Idempotency-Key): its status now"},
    )
    links = fields.Nested(OrderLinksSchema)


class PageLinksSchema(Schema):
    next = fields.String(metadata={"description": "the next page, with the same filters"})


class OrderPageSchema(Schema):
    """GET /api/orders (documentation only: the view builds it)."""

    orders = fields.List(fields.Nested(OrderSchema))
    nextCursor = fields.String(allow_none=True)
    links = fields.Nested(PageLinksSchema)  # only when there is a next page


class OrderListQuerySchema(Schema):
    """Query string of GET /api/orders."""

    class Meta:
        unknown = RAISE

    status = fields.List(
        fields.String(validate=validate.OneOf([s.value for s in OrderStatus])),
        metadata={"description": "Only these statuses; repeat it or separate with commas."},
    )
    type = fields.List(
        fields.String(validate=validate.OneOf([t.value for t in OrderType])),
        metadata={"description": "Only these order types; repeat it or separate with commas."},
    )
    createdFrom = fields.AwareDateTime(
        format="iso",
        default_timezone=None,
        metadata={
            "description": "Only orders created at or after this instant (ISO 8601 with a "
            "time zone, e.g. 2026-11-23T21:00:00Z)."
        },
    )
    createdTo = fields.AwareDateTime(
        format="iso",
        default_timezone=None,
        metadata={
            "description": "Only orders created before this instant (ISO 8601 with a time zone)."
        },
    )
    limit = fields.Integer(
        load_default=50,
        validate=validate.Range(1, 200),
        metadata={"description": "Page size, 1-200."},
    )
    cursor = fields.String(
        metadata={"description": "`nextCursor` of the previous page; repeat the same filters."}
    )
