"""Where the test-only sender faults live (see `crashing_worker`); importable without the app."""

from __future__ import annotations

import re
from pathlib import Path

PLAN_DIR_ENV = "SENDER_FAULTS_DIR"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def plan_path(directory: Path, memo: str) -> Path:
    return directory / f"{_SAFE.sub('_', memo)}.plan"
