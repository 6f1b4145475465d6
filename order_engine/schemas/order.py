"""Request and response schemas for orders.

Amounts are exact decimals: strings like "1.5", or JSON numbers only when they are plain
decimals (the JSON provider hands us their literal text). NaN, Infinity, exponents, signs,
more decimals than the token has, and amounts beyond a u64 of atoms are all refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)
from solders.pubkey import Pubkey

from order_engine.domain.time import format_timestamp
from order_engine.domain.tokens import Token, UnknownTokenError, resolve
from order_engine.domain.triggers import TRAIL_BPS_MAX, TRAIL_BPS_MIN, shown_level
from order_engine.models import OrderStatus, OrderType
from order_engine.schemas.jsonio import NonFiniteNumber
from order_engine.schemas.triggers import (
    PROTECTIVE_TYPES,
    shown_price,
    trailing_peak,
    trigger_problems,
)

U64_MAX = 2**64 - 1
MARKET_SLIPPAGE_BPS = 50
STOP_SLIPPAGE_DEFAULT = 300  # STOP_SLIPPAGE_BPS's default (config/triggers.py)
_PLAIN_DECIMAL = re.compile(r"^[0-9]{1,30}(\.[0-9]{1,30})?$")
_DIGITS_AND_A_DOT = re.compile(r"[0-9]+(\.[0-9]+)?")


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
    depends on, how far ahead `expiresAt` may be, is given to the constructor, and so is the
    slippage a stop, bracket or trailing stop gets when it names none (STOP_SLIPPAGE_BPS).
    """

    class Meta:
        unknown = RAISE

    def __init__(
        self,
        *,
        limit_max_horizon_s: int,
        stop_slippage_bps: int = STOP_SLIPPAGE_DEFAULT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.horizon = timedelta(seconds=limit_max_horizon_s)
        self.stop_slippage_bps = stop_slippage_bps

    type = fields.String(
        required=True,
        validate=validate.OneOf([t.value for t in OrderType]),
        metadata={
            "description": "market; limit (limitPrice) or sniper (tokenOut: a mint); stop "
            "(triggerPrice), oco (takeProfit and stopLoss) or trailing_stop (trailBps)"
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
        validate=validate.Range(0, 5000),
        error_messages={"invalid": "Must be an integer from 0 to 5000."},
        metadata={
            "description": "max slippage from the quote in basis points (default 50; for stop, "
            "oco and trailing_stop, STOP_SLIPPAGE_BPS: 300 unless the deployment says otherwise)"
        },
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
            "description": "limit: the least tokenOut per one tokenIn accepted (decimal string)",
            "example": "250",
        },
    )
    maxPrice = ExactAmount(
        load_default=None,
        metadata={"description": "sniper: the most tokenIn per one tokenOut it may pay"},
    )
    triggerPrice = ExactAmount(
        load_default=None,
        metadata={
            "description": "stop: sell once the quote pays this tokenOut per one tokenIn or less",
            "example": "120",
        },
    )
    takeProfit = fields.Nested(
        lambda: TakeProfitSchema(),
        load_default=None,
        metadata={"description": "oco: the leg that sells at this limit or better"},
    )
    stopLoss = fields.Nested(
        lambda: StopLossSchema(),
        load_default=None,
        metadata={"description": "oco: the leg that sells once the quote falls to this price"},
    )
    trailBps = fields.Integer(
        strict=True,
        load_default=None,
        validate=validate.Range(
            TRAIL_BPS_MIN, TRAIL_BPS_MAX, error=f"Must be from {TRAIL_BPS_MIN} to {TRAIL_BPS_MAX}."
        ),
        error_messages={"invalid": f"Must be an integer from {TRAIL_BPS_MIN} to {TRAIL_BPS_MAX}."},
        metadata={
            "description": "trailing_stop: sell once the quote falls this many basis points "
            "below the highest quote since the order started",
            "example": 500,
        },
    )
    activationPrice = ExactAmount(
        load_default=None,
        metadata={
            "description": "trailing_stop: start trailing only once the quote reaches this "
            "tokenOut per one tokenIn (default: at once)"
        },
    )
    expiresAt = fields.AwareDateTime(
        format="iso",
        default_timezone=None,
        load_default=None,
        metadata={
            "description": "any order that waits (not market): when it fails with "
            "ORDER_EXPIRED if it has not triggered (ISO 8601 with a time zone; at most "
            "LIMIT_MAX_HORIZON_S ahead)"
        },
    )

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def check_order(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
        sent = original if isinstance(original, dict) else {}
        errors = {**trigger_problems(data, sent, self.horizon), **_token_problems(data)}
        token_in, amount = data.get("tokenIn"), data.get("amount")
        if token_in is not None and "tokenIn" not in errors and amount is not None:
            message = _amount_problem(amount, token_in)
            if message:
                errors["amount"] = [message]
        if errors:
            raise ValidationError(errors)

    @post_load
    def default_slippage(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """A stop's promise is to get out, not a price: it gets a wider default slippage."""
        if data.get("slippageBps") is None:
            protective = data.get("type") in PROTECTIVE_TYPES
            data["slippageBps"] = self.stop_slippage_bps if protective else MARKET_SLIPPAGE_BPS
        return data


class TakeProfitSchema(Schema):
    """An OCO bracket's take-profit leg: it executes as a limit order does."""

    class Meta:
        unknown = RAISE

    limitPrice = ExactAmount(
        required=True,
        metadata={
            "description": "the least tokenOut per one tokenIn it sells for",
            "example": "260",
        },
    )


class StopLossSchema(Schema):
    """An OCO bracket's stop-loss leg: it executes as a stop does."""

    class Meta:
        unknown = RAISE

    triggerPrice = ExactAmount(
        required=True,
        metadata={"description": "sell once the quote pays this or less", "example": "120"},
    )


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
    triggerPrice = fields.Method("dump_trigger_price", allow_none=True)
    takeProfit = fields.Method("dump_take_profit", allow_none=True)
    stopLoss = fields.Method("dump_stop_loss", allow_none=True)
    leg = fields.Method(
        "dump_leg",
        allow_none=True,
        metadata={"description": "oco, once triggered: the leg that met the market"},
    )
    trailBps = fields.Integer(attribute="trail_bps", allow_none=True)
    activationPrice = ExactAmount(attribute="activation_price", allow_none=True)
    peakPrice = fields.Method(
        "dump_peak",
        allow_none=True,
        metadata={"description": "trailing_stop: the highest quote since it started"},
    )
    triggerLevel = fields.Method(
        "dump_trigger_level",
        allow_none=True,
        metadata={"description": "trailing_stop: it fires once its quote falls to this"},
    )
    waiting = fields.Boolean(metadata={"description": "any but market: not triggered yet"})
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

    def dump_trigger_price(self, order: Any) -> str | None:
        return shown_price(order.stop_price) if order.type == OrderType.STOP.value else None

    def dump_take_profit(self, order: Any) -> dict[str, str] | None:
        if order.type != OrderType.OCO.value:
            return None
        return {"limitPrice": shown_price(order.limit_price)}

    def dump_stop_loss(self, order: Any) -> dict[str, str] | None:
        if order.type != OrderType.OCO.value:
            return None
        return {"triggerPrice": shown_price(order.stop_price)}

    def dump_leg(self, order: Any) -> str | None:
        # A bracket the executor put back to waiting keeps its last leg until the next trigger.
        return None if order.waiting else order.trigger_leg

    def dump_peak(self, order: Any) -> str | None:
        peak = trailing_peak(order)
        return None if peak is None else shown_price(peak)

    def dump_trigger_level(self, order: Any) -> str | None:
        peak = trailing_peak(order)
        return None if peak is None else shown_price(shown_level(peak, order.trail_bps))

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
