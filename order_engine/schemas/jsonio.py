"""JSON for money: numbers keep their literal text, NaN/Infinity are flagged, Decimals dump as text.

Python's json turns `1.1` into a binary float and accepts `NaN` and `Infinity` literals. The
provider below hands fractional and exponent numbers over as their exact literal text, and
non-finite constants as a marker, so the schemas can accept what is exact and name what is not.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from flask.json.provider import DefaultJSONProvider


class JsonNumberLiteral(str):
    """The literal text of a JSON number with a fraction or an exponent, e.g. "1.5", "1e400",
    or of a whole number too long for any field (see `_whole_number`)."""


class NonFiniteNumber(str):
    """`NaN`, `Infinity` or `-Infinity`, which JSON does not allow but Python's parser accepts."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # `{"amount": "1", "amount": "1000"}`: which one counts depends on the parser, so a body
    # that names a field twice is refused rather than read one way here and another elsewhere.
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {twice!r}")
    return found


# No field takes a whole number near this long; int() refuses one over 4,300 digits
# (sys.int_info.default_max_str_digits) with a message about a Python setting.
LONGEST_WHOLE_NUMBER = 100


def _whole_number(literal: str) -> int | JsonNumberLiteral:
    """An integer literal as an int, or as its text when it is longer than any field takes:
    the field then refuses it by its own rules, naming itself."""
    if len(literal) > LONGEST_WHOLE_NUMBER:
        return JsonNumberLiteral(literal)
    return int(literal)


def loads(text: str | bytes) -> Any:
    """Parse JSON exactly; ValueError for anything malformed, duplicated or nested too deeply."""
    try:
        return json.loads(
            text,
            parse_float=JsonNumberLiteral,
            parse_int=_whole_number,
            parse_constant=NonFiniteNumber,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        # The C scanner recurses once per nesting level: `[[[[…]]]]` a thousand deep.
        raise ValueError("nested too deeply") from None


def _money_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    return DefaultJSONProvider.default(value)


class MoneyJSONProvider(DefaultJSONProvider):
    sort_keys = False
    default = staticmethod(_money_default)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)
