"""One loop per process that follows every transaction the process waits for, once per slot.

It asks `getSignatureStatuses` for every awaited signature in one call (at most 256 per call),
what the confirmed ones moved in `getTransaction` batches, and, for the transactions sent to the
block engine that have not landed yet, `getInflightBundleStatuses` (at most 5 ids per call, all
in one JSON-RPC batch) one slot after the send and then at doubling distances: a bundle the
block engine reports `Failed` never lands and charged nothing, and its waiter hears so within
twice its age instead of at its blockhash's expiry. No order polls on its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from order_engine.chain.statuses import SignatureStatus

if TYPE_CHECKING:
    from order_engine.chain.client import RpcChain

log = logging.getLogger(__name__)


def bundle_id_of(signature: str) -> str:
    """The id of the bundle of one the block engine's `sendTransaction` makes of a transaction:
    the hex SHA-256 of its signature (jito-solana's `derive_bundle_id` over one signature)."""
    return hashlib.sha256(signature.encode()).hexdigest()


class _Waiter:
    __slots__ = ("bundle", "due", "event", "interval", "status")

    def __init__(self, bundle: bool, slot_s: float) -> None:
        self.bundle = bundle
        self.event = threading.Event()
        self.status: SignatureStatus | None = None
        # When its bundle's in-flight status is next worth asking for, and the wait after that:
        # a slot after the send, then twice as far each time (see `_bundles_due`).
        self.interval = slot_s
        self.due = time.monotonic() + slot_s

    def bundle_due(self, now: float) -> bool:
        """Whether to ask for its bundle's status in this round (and when next, if so)."""
        if not self.bundle or now < self.due:
            return False
        self.interval *= 2
        self.due = now + self.interval
        return True


class StatusPoller:
    """Started on first use in each process (after a fork the parent's thread does not exist).
    Under gevent (the worker's pool) the thread is a greenlet and the waits are cooperative."""

    def __init__(self, chain: RpcChain) -> None:
        self._chain = chain
        self._lock = threading.Lock()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._wake = threading.Event()
        self._pid: int | None = None

    def wait(
        self, signature: str, timeout_s: float, bundle: bool = False
    ) -> SignatureStatus | None:
        """The transaction's status once confirmed (or, for one sent as a bundle, once the block
        engine reports it failed: `bundle_failed`); None on timeout."""
        waiter = _Waiter(bundle, self._chain.slot_ms / 1000)
        with self._lock:
            self._waiters.setdefault(signature, []).append(waiter)
            self._ensure_running()
        self._wake.set()
        try:
            waiter.event.wait(timeout_s)
            return waiter.status
        finally:
            with self._lock:
                waiting = self._waiters.get(signature)
                if waiting is not None and waiter in waiting:
                    waiting.remove(waiter)
                    if not waiting:
                        del self._waiters[signature]

    def _ensure_running(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="signature-poller", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # Let the slot fill: every signature sent during it is asked about in one call.
            time.sleep(self._chain.slot_ms / 1000)
            with self._lock:
                signatures = list(self._waiters)
                bundled = self._bundles_due()
                if not signatures:
                    self._wake.clear()
                    continue
            try:
                self._poll_once(signatures, bundled)
            except Exception as exc:  # noqa: BLE001 - an unreachable node, a malformed answer
                log.warning("signature poller: %s; asking again next slot", exc)

    def _bundles_due(self) -> set[str]:
        """The awaited signatures sent as bundles whose in-flight status is worth asking for
        now: one slot after the send, then at 2, 4, 8… slots' distance. A bundle usually lands
        (and its signature's status tells) before the block engine would say more; one that
        fails is heard of within twice its age, instead of every bundle in flight being asked
        about every slot (under a burst, hundreds of ids a slot for a handful of failures)."""
        now = time.monotonic()
        return {
            signature
            for signature, waiters in self._waiters.items()
            if any([waiter.bundle_due(now) for waiter in waiters])
        }

    def _poll_once(self, signatures: list[str], bundled: set[str]) -> None:
        statuses = self._chain.signature_statuses(signatures)
        confirmed = [s for s, st in statuses.items() if st.is_confirmed]
        # What the confirmed ones moved and paid, for all of them in one batch (the engine
        # records each fill and fee from it): one round trip per slot, not one per order.
        balances = self._chain.many_transaction_balances(confirmed)
        unseen = sorted(s for s in bundled if s not in statuses)
        statuses.update(self.failed_bundles(unseen) if unseen else {})
        with self._lock:
            for signature, status in statuses.items():
                if not (status.is_confirmed or status.bundle_failed):
                    continue
                if signature in balances:
                    status = replace(status, balances=balances[signature])
                for waiter in self._waiters.pop(signature, []):
                    waiter.status = status
                    waiter.event.set()

    def failed_bundles(self, signatures: list[str]) -> dict[str, SignatureStatus]:
        """The statuses (`bundle_failed`) of those whose bundle the block engine reports
        Failed, by signature."""
        ids = {bundle_id_of(s): s for s in signatures}
        reported = self._chain.block_engine.inflight_statuses(list(ids))
        return {
            ids[bundle]: SignatureStatus(ids[bundle], slot, None, None, bundle_failed=True)
            for bundle, (status, slot) in reported.items()
            if status == "Failed" and bundle in ids
        }
