"""Request schemas for orders (the answers' shapes are in order_view.py).

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
    post_load,
    validate,
    validates_schema,
)
from solders.pubkey import Pubkey

from order_engine.domain.tokens import Token, UnknownTokenError, resolve
from order_engine.domain.triggers import TRAIL_BPS_MAX, TRAIL_BPS_MIN
from order_engine.domain.twap import INTERVAL_S_MAX, SLICES_MAX
from order_engine.models import OrderStatus, OrderType
from order_engine.schemas.jsonio import NonFiniteNumber
from order_engine.schemas.landing import (
    landing_problems,
    max_fee_field,
    mev_protection_field,
    priority_fee_field,
)
from order_engine.schemas.triggers import (
    PROTECTIVE_TYPES,
    trigger_problems,
)
from order_engine.schemas.twap_body import twap_problems

U64_MAX = 2**64 - 1
# The client's order id goes on chain as the swap transaction's memo, and a transaction has
# 1232 bytes in all: the id is limited in the bytes it takes there, UTF-8, not in characters
# (128 "中" are 384 bytes; 128 emoji 512). Intake also checks that the whole transaction fits.
CLIENT_ORDER_ID_MAX_BYTES = 128
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


_RELATIVE = re.compile(r"^([0-9]{1,9})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RelativeTime(fields.Field):
    """How long from now: a whole number and one unit, s, m, h or d ("90s", "30m", "1h", "7d").
    No fractions, signs or mixed units: one form, one way to read it."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> timedelta:
        match = _RELATIVE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValidationError('Must be a whole number and a unit: "90s", "30m", "1h" or "7d".')
        seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
        if seconds == 0:
            raise ValidationError("Must be greater than 0.")
        return timedelta(seconds=seconds)


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
            "(triggerPrice), oco (takeProfit and stopLoss) or trailing_stop (trailBps); twap "
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
        validate=[validate.Length(1, CLIENT_ORDER_ID_MAX_BYTES), lambda v: _memo_text(v)],
        metadata={
            "description": f"yours, up to {CLIENT_ORDER_ID_MAX_BYTES} bytes of UTF-8, printable; "
            "echoed back, and on chain as the swap's memo"
        },
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
    expiresIn = RelativeTime(
        load_default=None,
        metadata={
            "description": "any order that waits: instead of expiresAt, how long from the "
            'request: a whole number and a unit, s, m, h or d ("1h"); at most '
            "LIMIT_MAX_HORIZON_S",
            "type": "string",
            "pattern": _RELATIVE.pattern,
            "example": "1h",
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

    priorityFee = priority_fee_field()
    maxFeeLamports = max_fee_field()
    mevProtection = mev_protection_field()

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def check_order(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
        sent = original if isinstance(original, dict) else {}
        errors = {**trigger_problems(data, sent, self.horizon), **_token_problems(data)}
        errors.update(landing_problems(data))
        errors.update(twap_problems(data, self.horizon, errors))
        token_in, amount = data.get("tokenIn"), data.get("amount")
        if token_in is not None and "tokenIn" not in errors and amount is not None:
            message = _amount_problem(amount, token_in)
            if message:
                errors["amount"] = [message]
        if errors:
            raise ValidationError(errors)

    @post_load
    def expiry_from_now(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """`expiresIn` becomes `expiresAt` from now; it stays in the data, which is what a replay
        with the same Idempotency-Key is compared by (its instant differs at each request)."""
        if data.get("expiresIn") is not None:
            data["expiresAt"] = datetime.now(UTC) + data["expiresIn"]
        return data

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


def _memo_text(value: str) -> bool:
    """Storable text (`_storable_text`) of at most CLIENT_ORDER_ID_MAX_BYTES bytes of UTF-8."""
    _storable_text(value)
    size = len(value.encode("utf-8"))
    if size > CLIENT_ORDER_ID_MAX_BYTES:
        raise ValidationError(
            f"At most {CLIENT_ORDER_ID_MAX_BYTES} bytes of UTF-8 (it goes on chain as the swap's "
            f"memo); this one is {size} bytes ({len(value)} characters)."
        )
    return True


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
