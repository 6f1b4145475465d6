"""What `make run` and `make test` install on a fresh clone: running needs the runtime and the
embedded servers only; the test, lint and browser extras come with `make test`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def installed_extras(target: str, venv: Path) -> set[str]:
    """The extras `make -n <target>` would install into a virtualenv that does not exist yet."""
    planned = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    extras: set[str] = set()
    for match in re.finditer(r"pip install [^\n]*-e '\.\[([a-z,]*)\]'", planned):
        extras.update(filter(None, match.group(1).split(",")))
    assert "pip install" in planned, planned
    return extras


@pytest.mark.parametrize("target", ["run", "api", "worker", "scheduler", "localnet", "migrate"])
def test_running_the_stack_installs_the_runtime_and_embedded_servers_only(tmp_path, target):
    assert installed_extras(target, tmp_path / "venv") == {"embedded"}


@pytest.mark.parametrize("target", ["test", "lint", "install"])
def test_testing_installs_the_test_and_lint_extras(tmp_path, target):
    assert {"embedded", "test", "dev"} <= installed_extras(target, tmp_path / "venv")


def test_flower_installs_its_own_extra(tmp_path):
    assert installed_extras("flower", tmp_path / "venv") == {"embedded", "flower"}
