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
    """The literal text of a JSON number with a fraction or an exponent, e.g. "1.5", "1e400"."""


class NonFiniteNumber(str):
    """`NaN`, `Infinity` or `-Infinity`, which JSON does not allow but Python's parser accepts."""


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=JsonNumberLiteral, parse_constant=NonFiniteNumber)


def _money_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    return DefaultJSONProvider.default(value)


class MoneyJSONProvider(DefaultJSONProvider):
    sort_keys = False
    default = staticmethod(_money_default)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)
