"""Schemathesis against the OpenAPI document the real gunicorn API serves, every check, a fixed
seed (issue 11): nothing generated may be a server error or disagree with the document.

`make test` runs FUZZ_EXAMPLES (default 10) cases per operation and phase, in well under a
minute; `make fuzz` runs many more. Settings: schemathesis.toml.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clients import TEST_API_KEY

pytestmark = pytest.mark.integration

EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "10")
SEED = os.environ.get("FUZZ_SEED", "20261130")
ROOT = Path(__file__).resolve().parents[2]


def test_the_served_api_answers_every_generated_request_as_documented(live_stack, tmp_path):
    report = tmp_path / "report.json"
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run",
            f"{live_stack.base_url}/api/openapi.json",
            "--checks", "all",
            "--header", f"Authorization: Bearer {TEST_API_KEY}",
            "--max-examples", EXAMPLES,
            "--seed", SEED,
            "--generation-deterministic",
            "--request-timeout", "10",
            "--workers", "2",
            "--report", "junit",
            "--report-junit-path", str(report),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    failures = output[output.find("FAILURES") : output.find("SUMMARY")]
    print(output[-3000:])
    assert run.returncode == 0, failures[:20000] or output[-6000:]
    cases = re.search(r"(\d[\d,]*) generated", output)
    print("generated test cases:", cases.group(1) if cases else "?")
