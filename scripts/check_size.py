"""No module over 500 lines and no function over 60: the house limits, checked by `make lint`.

    python scripts/check_size.py order_engine workers

A module's size is its line count; a function's is from its `def` line to its last line
(docstring, comments and blank lines included, decorators not), methods and nested functions
each on their own. Today's offenders outside the branch that added this check are listed in
KNOWN_OFFENDERS, in one place: an entry goes when its module is split, and an entry that no
longer offends fails the check too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

# path, or path::qualified.function, as reported below. Each goes when its branch lands.
KNOWN_OFFENDERS: frozenset[str] = frozenset(
    {
        "order_engine/api/docs.py::build_spec",
        "order_engine/config.py::Settings.from_env",
        "order_engine/ops/cli.py",
        "order_engine/repositories/order.py",
        "order_engine/repositories/order.py::OrderRepository.transitions",
        "order_engine/repositories/order.py::_transition_sql",
        "order_engine/services/execution.py",
        "order_engine/venues/math/dlmm.py",
    }
)


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, line count) of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + node.name
            yield name, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from _functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")


def offenders(root: Path) -> Iterator[tuple[str, str]]:
    """(key, what is wrong) for every module or function over its limit under `root`."""
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        key = path.as_posix()
        if lines > MAX_MODULE_LINES:
            yield key, f"{lines} lines (limit {MAX_MODULE_LINES})"
        for name, length in _functions(ast.parse(text, filename=key)):
            if length > MAX_FUNCTION_LINES:
                yield f"{key}::{name}", f"{length} lines (limit {MAX_FUNCTION_LINES})"


def main(roots: list[str]) -> int:
    found = dict(item for root in roots for item in offenders(Path(root)))
    new = sorted(set(found) - KNOWN_OFFENDERS)
    stale = sorted(key for key in KNOWN_OFFENDERS - set(found) if key.split("/")[0] in roots)
    for key in new:
        print(f"{key}: {found[key]}: split it along its seams")
    for key in stale:
        print(f"{key}: within the limits now: remove it from KNOWN_OFFENDERS in {__file__}")
    return 1 if new or stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["order_engine", "workers"]))
