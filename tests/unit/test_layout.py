"""The code stays in pieces a reader can hold: no module under order_engine/ or workers/ over
500 lines, no function over 60 (nested ones and methods included). `make lint` runs this too.

Offenders that predate the limits are listed in KNOWN_OFFENDERS, in one place: an entry goes
when its module is split, and an entry that no longer offends fails the test too, so the list
only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

# path, or path::qualified.function, as reported below. Each goes when its branch lands.
KNOWN_OFFENDERS: frozenset[str] = frozenset()


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, line count) of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + node.name
            yield name, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from _functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")


def offenders(base: Path, root: Path) -> Iterator[tuple[str, str]]:
    """(key, what is wrong) for every module or function over its limit under `root`."""
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        key = path.relative_to(base).as_posix()
        if lines > MAX_MODULE_LINES:
            yield key, f"{lines} lines (limit {MAX_MODULE_LINES})"
        for name, length in _functions(ast.parse(text, filename=key)):
            if length > MAX_FUNCTION_LINES:
                yield f"{key}::{name}", f"{length} lines (limit {MAX_FUNCTION_LINES})"


ROOT = Path(__file__).resolve().parents[2]


def test_no_module_over_500_lines_and_no_function_over_60():
    found = {
        key: problem
        for top in ("order_engine", "workers")
        for key, problem in offenders(ROOT, ROOT / top)
    }
    new = {key: f"{found[key]}: split it along its seams" for key in set(found) - KNOWN_OFFENDERS}
    stale = sorted(KNOWN_OFFENDERS - set(found))
    assert new == {}
    assert stale == [], "within the limits now: remove from KNOWN_OFFENDERS"
