"""An order's own say on how its swap lands (docs/api.md, "Fees and landing"): shape only.

`priorityFee`: "auto" (the default: a percentile of what recent slots paid for the pool's
accounts) or `{"microLamportsPerCu": N}`, a fixed price; `maxFeeLamports`: the most its priority
fee plus tip may come to; `mevProtection`: sent to the block engine as a bundle of one with a tip
(never public, never sandwiched), or publicly without one.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields

from order_engine.config.landing import MAX_FEE_LAMPORTS_LIMIT, MAX_MICRO_LAMPORTS_PER_CU

MIN_TIP_LAMPORTS = 1_000  # the block engine's least tip: a protected order's cap holds it
AUTO = "auto"


def _whole(value: Any, name: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError({name: [f"Must be a whole number from 0 to {high}."]})
    if not 0 <= value <= high:
        raise ValidationError({name: [f"Must be from 0 to {high}."]})
    return value


class PriorityFee(fields.Field):
    """ "auto", or {"microLamportsPerCu": N}: loaded as None (auto) or N."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | None:
        if value == AUTO:
            return None
        if not isinstance(value, dict) or set(value) != {"microLamportsPerCu"}:
            raise ValidationError('Must be "auto" or {"microLamportsPerCu": N}.')
        return _whole(value["microLamportsPerCu"], "microLamportsPerCu", MAX_MICRO_LAMPORTS_PER_CU)


def priority_fee_field() -> PriorityFee:
    return PriorityFee(
        load_default=None,
        metadata={
            "description": '"auto" (default): a percentile of recent fees for the pool\'s '
            'accounts (PRIORITY_FEE_PERCENTILE); or {"microLamportsPerCu": N}, a fixed price '
            f"per compute unit, 0-{MAX_MICRO_LAMPORTS_PER_CU}",
            "oneOf": [
                {"type": "string", "enum": [AUTO]},
                {
                    "type": "object",
                    "required": ["microLamportsPerCu"],
                    "additionalProperties": False,
                    "properties": {
                        "microLamportsPerCu": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": MAX_MICRO_LAMPORTS_PER_CU,
                        }
                    },
                },
            ],
            "example": AUTO,
        },
    )


def max_fee_field() -> fields.Integer:
    return fields.Integer(
        strict=True,
        load_default=None,
        error_messages={"invalid": f"Must be a whole number from 0 to {MAX_FEE_LAMPORTS_LIMIT}."},
        metadata={
            "description": "the most this order's priority fee plus tip may come to, in "
            f"lamports, 0-{MAX_FEE_LAMPORTS_LIMIT} (default MAX_FEE_LAMPORTS; at least "
            f"{MIN_TIP_LAMPORTS} when mevProtection is true)",
            "minimum": 0,
            "maximum": MAX_FEE_LAMPORTS_LIMIT,
        },
    )


class StrictBoolean(fields.Boolean):
    """JSON true or false only (marshmallow's Boolean takes 1 and 0 as well: 1 == True)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("Must be true or false.")
        return value


def mev_protection_field() -> fields.Boolean:
    return StrictBoolean(
        load_default=None,
        metadata={
            "description": "true (default, MEV_PROTECTION): sent to the block engine as a bundle "
            "of one with a tip, never public, never sandwiched; false: public sendTransaction"
        },
    )


def landing_problems(data: dict[str, Any]) -> dict[str, list[str]]:
    """The cap's range, and room for the block engine's least tip when protected."""
    cap = data.get("maxFeeLamports")
    if cap is None:
        return {}
    if not 0 <= cap <= MAX_FEE_LAMPORTS_LIMIT:
        return {"maxFeeLamports": [f"Must be from 0 to {MAX_FEE_LAMPORTS_LIMIT}."]}
    if cap < MIN_TIP_LAMPORTS and data.get("mevProtection") is not False:
        return {
            "maxFeeLamports": [
                f"Must be at least {MIN_TIP_LAMPORTS} (the block engine's least tip) unless "
                "mevProtection is false."
            ]
        }
    return {}
