"""The README's and docs/' command examples, as a newcomer pastes them: each shell block parses,
each order body sent with curl is one the API accepts today, and the WebSocket example gets every
event of a finished order and its 1000 close."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from order_engine.config import Settings
from order_engine.schemas.order import OrderCreateSchema
from tests.support.burst import BurstServer

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.DOTALL | re.MULTILINE)
PYTHON_HEREDOC = re.compile(r"^\.venv/bin/python - <<'PY'\n(.*?)^PY$", re.DOTALL | re.MULTILINE)
EXAMPLE_API = "ws://localhost:8000/"  # the examples use the default port
HORIZON_S = next(f.default for f in dataclasses.fields(Settings) if f.name == "limit_max_horizon_s")


def bash_blocks(page: Path) -> list[str]:
    return BASH_BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_shell_example_parses(page):
    for block in bash_blocks(page):
        checked = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert checked.returncode == 0, f"{page.name}:\n{block}\n{checked.stderr}"


# Stand-ins for what the examples run: curl writes each body it would send (with its URL) to
# $BODIES; make, the engine's command and a heredoc's Python do nothing; a Python one-liner (the
# sniper's fresh mint) runs for real.
STUBS = {
    "curl": """#!/bin/bash
url=""; body=""
while [ $# -gt 0 ]; do
  case "$1" in
    -d|--data) body="$2"; shift ;;
    -H|-X|-u|-o) shift ;;
    -*) ;;
    *) url="$1" ;;
  esac
  shift
done
[ -n "$body" ] && printf '%s\\n%s\\n\\0' "$url" "$body" >> "$BODIES"
exit 0
""",
    "make": "#!/bin/sh\nexit 0\n",
    ".venv/bin/order-engine": "#!/bin/sh\nexit 0\n",
    ".venv/bin/python": f"""#!/bin/sh
if [ "$1" = "-" ]; then cat > /dev/null; exit 0; fi
exec {sys.executable} "$@"
""",
}


def _sent_bodies(tmp_path: Path, page: Path) -> list[tuple[str, str]]:
    stubs = tmp_path / "bin"
    for name, text in STUBS.items():
        path = (tmp_path if name.startswith(".venv") else stubs) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (tmp_path / ".state").mkdir(exist_ok=True)
    (tmp_path / ".state" / "dev-api-key").write_text("oe_example\n")
    bodies = tmp_path / "bodies"
    bodies.write_text("")
    env = {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "BODIES": str(bodies),
        "HOME": str(tmp_path),
    }
    for block in bash_blocks(page):
        subprocess.run(
            ["bash"], input=block, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    sent = []
    for record in bodies.read_text().split("\0"):
        if record.strip():
            url, body = record.strip("\n").split("\n", 1)
            sent.append((url, body))
    return sent


@pytest.mark.parametrize("page", ["README.md", "docs/api.md"])
def test_every_order_body_in_the_examples_is_accepted_today(tmp_path, page):
    schema = OrderCreateSchema(limit_max_horizon_s=HORIZON_S)
    orders = [
        body for url, body in _sent_bodies(tmp_path, ROOT / page) if "/api/orders/execute" in url
    ]
    assert orders, f"no order examples found in {page}"
    for body in orders:
        schema.load(json.loads(body))  # raises, naming the field, if the API would answer 422


@pytest.mark.parametrize("page", ["README.md", "docs/api.md"])
def test_the_websocket_example_gets_every_event_of_a_finished_order(page):
    [script] = PYTHON_HEREDOC.findall((ROOT / page).read_text(encoding="utf-8"))
    assert EXAMPLE_API in script
    with BurstServer() as server:
        runnable = script.replace(EXAMPLE_API, f"ws://127.0.0.1:{server.port}/")
        for _ in range(3):
            ran = subprocess.run(
                [sys.executable, "-c", runnable],
                env={**os.environ, "ORDER_ENGINE_KEY": "oe_example", "ORDER_ID": server.order_id},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert ran.returncode == 0, ran.stderr
            lines = ran.stdout.splitlines()
            assert [line.split()[:2] for line in lines[:-1]] == [
                [str(e["seq"]), e["status"]] for e in server.events
            ]
            assert lines[-1] == "closed 1000"
