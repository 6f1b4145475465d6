"""How a setting's text becomes a typed value: one parser per kind of value, each refusing bad
text with a `ConfigError` that names the variable.

A parser also says, in a few words, what it accepts (`accepts`), for the configuration table,
and which text counts as not set (`unset_if`), so that the default applies: an empty value for
text such as URLs and paths (an empty `NAME=` line in `.env`), nothing for numbers, choices and
switches, where an empty value is refused (or, for a switch, read as false).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Generic, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def never(_raw: str) -> bool:
    return False


def empty(raw: str) -> bool:
    return raw == ""


def blank(raw: str) -> bool:
    return not raw.strip()


@dataclass(frozen=True)
class Parser(Generic[T]):
    """Reads one kind of value: `parse(variable, text)` returns it or raises `ConfigError`."""

    parse: Callable[[str, str], T]
    accepts: str
    unset_if: Callable[[str], bool] = never


@dataclass(frozen=True)
class LatencyRange:
    """A simulated latency in milliseconds: a fixed value or a uniform `min-max` range."""

    low_ms: int
    high_ms: int

    def sample_ms(self, rng: random.Random) -> int:
        return rng.randint(self.low_ms, self.high_ms)

    def __str__(self) -> str:
        if self.low_ms == self.high_ms:
            return str(self.low_ms)
        return f"{self.low_ms}-{self.high_ms}"


def whole(low: int, high: int | None = None) -> Parser[int]:
    """A whole number, at least `low` (and at most `high`)."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name} must be {bound}, got {value}")
        return value

    return Parser(parse, f"{low}–{high}" if high is not None else f"≥ {low}")


def fraction() -> Parser[Decimal]:
    """A share between 0 and 1, exact."""

    def parse(name: str, raw: str) -> Decimal:
        try:
            value = Decimal(raw.strip())
        except InvalidOperation:
            raise ConfigError(f"{name} must be a number between 0 and 1, got {raw!r}") from None
        if not value.is_finite() or not Decimal(0) <= value <= Decimal(1):
            raise ConfigError(f"{name} must be a number between 0 and 1, got {raw!r}")
        return value

    return Parser(parse, "0–1")


def per_second() -> Parser[float]:
    """A rate per second, 0.01 to a million (a float: it feeds the limiter's arithmetic)."""

    def parse(name: str, raw: str) -> float:
        try:
            value = Decimal(raw.strip())
        except InvalidOperation:
            raise ConfigError(f"{name} must be a positive number, got {raw!r}") from None
        if not value.is_finite() or not Decimal("0.01") <= value <= Decimal(1_000_000):
            raise ConfigError(f"{name} must be between 0.01 and 1000000, got {raw!r}")
        return float(value)

    return Parser(parse, "0.01–1000000")


def latency() -> Parser[LatencyRange]:
    """Milliseconds: a number, or a `min-max` range sampled uniformly."""

    def parse(name: str, raw: str) -> LatencyRange:
        low_text, sep, high_text = raw.strip().partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if sep else low
        except ValueError:
            raise ConfigError(
                f"{name} must be milliseconds as a number or a 'min-max' range, got {raw!r}"
            ) from None
        if low < 0 or high < low:
            raise ConfigError(f"{name} must be non-negative with min <= max, got {raw!r}")
        return LatencyRange(low, high)

    return Parser(parse, "ms, or `min-max`")


def switch() -> Parser[bool]:
    """true/false (also 1/0, yes/no, on/off); blank reads as false."""

    def parse(name: str, raw: str) -> bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    return Parser(parse, "true, false")


def choice(*choices: str) -> Parser[str]:
    """One of `choices`, in any case."""

    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return Parser(parse, ", ".join(choices))


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level() -> Parser[str]:
    """A logging level name, in any case; read upper-case."""

    def parse(name: str, raw: str) -> str:
        level = raw.strip().upper()
        if level not in LOG_LEVELS:
            raise ConfigError(
                f"{name} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}"
            )
        return level

    return Parser(parse, ", ".join(LOG_LEVELS))


def url(*schemes: str) -> Parser[str]:
    """A URL with one of `schemes` and a host (or a socket path), kept as written."""

    def parse(name: str, raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes:
            raise ConfigError(
                f"{name} must be a URL with scheme {' or '.join(schemes)}, got {raw!r}"
            )
        if not (parts.hostname or "host=" in parts.query or parts.path):
            raise ConfigError(f"{name} has no host: {raw!r}")
        return raw

    return Parser(parse, "URL: " + ", ".join(f"`{s}:`" for s in schemes), unset_if=empty)


def postgresql_url() -> Parser[str]:
    """A PostgreSQL URL, always spelt for psycopg 3 whichever spelling the operator used."""
    plain = url("postgresql", "postgresql+psycopg")

    def parse(name: str, raw: str) -> str:
        value = plain.parse(name, raw)
        if value.startswith("postgresql://"):
            return "postgresql+psycopg://" + value[len("postgresql://") :]
        return value

    return Parser(parse, plain.accepts, unset_if=empty)


def base_url() -> Parser[str]:
    """An http(s) URL without a query, read without its trailing slash."""

    def parse(name: str, raw: str) -> str:
        parts = urlsplit(raw.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise ConfigError(
                f"{name} must be an http(s) URL such as https://api.example.com, got {raw!r}"
            )
        return raw.strip().rstrip("/")

    return Parser(parse, "URL: `http:`, `https:`", unset_if=empty)


def origin_of(url_text: str) -> str:
    """The origin (`scheme://host:port`, lower-case) a browser sends for a page at `url_text`."""
    parts = urlsplit(url_text)
    return f"{parts.scheme}://{parts.netloc}".lower()


def origins() -> Parser[tuple[str, ...]]:
    """Comma-separated origins such as https://app.example.com, or `*` for any."""

    def parse(name: str, raw: str) -> tuple[str, ...]:
        listed = [o.strip() for o in raw.split(",") if o.strip()]
        for origin in listed:
            if origin != "*" and origin_of(origin) != origin.lower().rstrip("/"):
                raise ConfigError(
                    f"{name} must list origins like https://app.example.com, got {origin!r}"
                )
        return tuple(o if o == "*" else o.lower().rstrip("/") for o in listed)

    return Parser(parse, "origins, comma-separated; `*`", unset_if=blank)


def text() -> Parser[str]:
    """Any text, kept as written."""
    return Parser(lambda _name, raw: raw, "text", unset_if=empty)


def path() -> Parser[Path]:
    """A file-system path."""
    return Parser(lambda _name, raw: Path(raw), "path", unset_if=empty)
