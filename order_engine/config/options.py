"""One declaration per setting, from which the settings are read and documented.

An `Option` names the environment variable, how its text is read (a `Parser`), its default, the
group it belongs to and one line saying what it does. Declared as a dataclass field
(`port: int = option("PORT", whole(1, 65535), "8000", API, "the API's port")`), it gives the field
its default and its type, `read(cls, env)` builds the whole dataclass from an environment, and
`order_engine.tools.config_docs` renders the table in docs/configuration.md and `.env.example`
from the same declarations, so none of them is written twice.

A default is the text an operator would write, parsed like theirs: a `str`; a
`string.Template` naming variables declared before it (`http://localhost:${PORT}`); a function
of the values read so far, with `shown` saying in words what it gives; or `Required(hint)` for
a setting with no default (refused with the hint when unset).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from string import Template
from typing import Any, Generic, TypeVar

from order_engine.config.parsers import ConfigError, Parser

T = TypeVar("T")
D = TypeVar("D")

Values = Mapping[str, object]  # the values read so far, by variable name


@dataclass(frozen=True)
class Group:
    """A concern the configuration table groups settings under, with a paragraph of context."""

    title: str
    intro: str = ""


@dataclass(frozen=True)
class Required:
    """No default: an unset variable stops start-up with `<VARIABLE> is not set; <hint>`."""

    hint: str


@dataclass(frozen=True)
class Option(Generic[T]):
    """One setting: its variable, parser, default, group and one-line description."""

    variable: str
    parser: Parser[T]
    default: str | Template | Callable[[Values], str] | Required
    group: Group
    doc: str
    # The table's default where the declared one is computed or machine-specific (a path).
    shown: str | None = None
    # `.env.example`'s value for a setting whose default is not worth copying (a URL, a path).
    example: str | None = None
    secret: bool = False  # kept out of the settings' repr
    # Read from the process environment only, before `.env` is (paths the start-up needs).
    process_only: bool = False

    def read(self, env: Mapping[str, str], earlier: Values | None = None) -> T:
        """This setting's value in `env`, its default filled from the `earlier` values."""
        raw = env.get(self.variable)
        if raw is None or self.parser.unset_if(raw):
            raw = self.default_text(earlier or {})
        return self.parser.parse(self.variable, raw)

    def default_text(self, earlier: Values) -> str:
        default = self.default
        if isinstance(default, Required):
            raise ConfigError(f"{self.variable} is not set; {default.hint}")
        if isinstance(default, Template):
            return default.substitute({name: str(value) for name, value in earlier.items()})
        if callable(default):
            return default(earlier)
        return default

    def shown_default(self) -> str:
        """The default as the table shows it."""
        if self.shown is not None:
            return self.shown
        if isinstance(self.default, Template):
            return self.default.template.replace("${", "$").replace("}", "")
        if isinstance(self.default, str):
            return self.default
        return ""

    def field(self) -> T:
        """This option as a dataclass field: typed `T` for mypy, defaulting to the parsed
        default where that is fixed text (a setting with none is required by the dataclass)."""
        metadata = {"option": self}
        if isinstance(self.default, str):
            default = self.parser.parse(self.variable, self.default)
            return dataclasses.field(default=default, repr=not self.secret, metadata=metadata)
        return dataclasses.field(repr=not self.secret, metadata=metadata)


def option(
    variable: str,
    parser: Parser[T],
    default: str | Template | Callable[[Values], str] | Required,
    group: Group,
    doc: str,
    *,
    shown: str | None = None,
    example: str | None = None,
    secret: bool = False,
) -> T:
    """Declare a setting as a dataclass field (see the module docstring)."""
    declared = Option(variable, parser, default, group, doc, shown, example, secret)
    return declared.field()


def options_of(cls: type) -> Iterator[tuple[str, Option[Any]]]:
    """The (field name, option) pairs of a settings dataclass, in declaration order."""
    for f in dataclasses.fields(cls):
        yield f.name, f.metadata["option"]


def read(cls: type[D], env: Mapping[str, str]) -> D:
    """Build the settings dataclass `cls` from `env`, each field read by its option in
    declaration order (so a default may use the values declared before it); the first bad
    value stops it with a `ConfigError` naming its variable."""
    earlier: dict[str, object] = {}
    values: dict[str, object] = {}
    for name, declared in options_of(cls):
        value = declared.read(env, earlier)
        earlier[declared.variable] = values[name] = value
    return cls(**values)
