"""A Celery worker app for fault tests whose sender can die or hang inside `send_transaction`.

Start it as `celery -A tests.support.crashing_worker worker ...`: it is the product's app
(`workers.celery_app`) with one test-only difference, installed at import (so prefork children
inherit it): `RpcChain.send_transaction` and `BlockEngine.send_transaction` (a protected send)
first read the sender plan of the transaction's memo
(the order's clientOrderId, from the Memo instruction) and acts on its first line:

- `crash`: the process dies at once (`os._exit(137)`, like a SIGKILL/OOM kill) before a byte
  reaches the node; one line is appended to `<plan dir>/<memo>.crashed` first;
- `hold`: the send blocks until the file `<plan dir>/release` exists (a stalled RPC or a paused
  process), then goes through; the worker logs `sender hold: <memo>` when it starts holding.

Plans live in the directory named by `SENDER_FAULTS_DIR`, one file per memo, one action per
line, each send consuming one line (under an exclusive `flock`, so concurrent senders of one
process or of sibling pool children never consume the same line). Nothing of this exists in
the product: the production app is `workers.celery_app`, which never reads these files.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import sys
import time
from pathlib import Path

from solders.transaction import VersionedTransaction

from order_engine.chain.block_engine import BlockEngine
from order_engine.chain.client import RpcChain
from order_engine.chain.programs import MEMO_PROGRAM
from tests.support.sender_faults import PLAN_DIR_ENV, plan_path
from workers.celery_app import celery_app

__all__ = ["celery_app"]

log = logging.getLogger(__name__)

HOLD_LIMIT_S = 120


def memo_of(encoded: str) -> str | None:
    """The text of the transaction's Memo instruction, if it has one."""
    try:
        message = VersionedTransaction.from_bytes(base64.b64decode(encoded)).message
    except ValueError:
        return None
    keys = message.account_keys
    for instruction in message.instructions:
        if keys[instruction.program_id_index] == MEMO_PROGRAM:
            return bytes(instruction.data).decode(errors="replace")
    return None


def next_action(directory: Path, memo: str) -> str | None:
    """Pop the first planned action for `memo` (None when nothing is planned)."""
    path = plan_path(directory, memo)
    if not path.exists():
        return None
    with open(path, "r+") as plan:
        fcntl.flock(plan, fcntl.LOCK_EX)
        lines = [line for line in plan.read().splitlines() if line.strip()]
        if not lines:
            return None
        plan.seek(0)
        plan.truncate()
        plan.write("".join(f"{line}\n" for line in lines[1:]))
        plan.flush()
        os.fsync(plan.fileno())
        return lines[0].strip()


def _act(directory: Path, memo: str, action: str) -> None:
    if action == "crash":
        with open(plan_path(directory, memo).with_suffix(".crashed"), "a") as crashed:
            crashed.write(f"{os.getpid()}\n")
            crashed.flush()
            os.fsync(crashed.fileno())
        print(f"sender crash: {memo} (pid {os.getpid()})", file=sys.stderr, flush=True)
        os._exit(137)
    if action == "hold":
        print(f"sender hold: {memo} (pid {os.getpid()})", file=sys.stderr, flush=True)
        deadline = time.monotonic() + HOLD_LIMIT_S
        while not (directory / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"sender released: {memo}", file=sys.stderr, flush=True)
        return
    raise ValueError(f"unknown sender action {action!r} planned for {memo}")


_send_transaction = RpcChain.send_transaction
_send_protected = BlockEngine.send_transaction


def _follow_plan(encoded: str) -> None:
    directory = os.environ.get(PLAN_DIR_ENV)
    if directory:
        memo = memo_of(encoded)
        action = next_action(Path(directory), memo) if memo else None
        if action is not None:
            _act(Path(directory), memo or "", action)


def _send_with_plan(self: RpcChain, encoded: str) -> str:
    _follow_plan(encoded)
    return _send_transaction(self, encoded)


def _send_protected_with_plan(self: BlockEngine, encoded: str) -> str:
    _follow_plan(encoded)
    return _send_protected(self, encoded)


RpcChain.send_transaction = _send_with_plan  # type: ignore[method-assign]
BlockEngine.send_transaction = _send_protected_with_plan  # type: ignore[method-assign]
