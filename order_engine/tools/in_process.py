"""The engine's JSON-RPC chain client talking to an in-process localnet on virtual time.

A tool above both the engine and the simulator: the localnet runs in this process on a
`VirtualClock` and the engine reaches it through `InProcessChain`, its ordinary chain client
with the HTTP hop replaced by a direct call (same requests, same answers). The replay tool and
the tests that need a chain without a localnet process use it.
"""

from __future__ import annotations

from typing import Any

from order_engine.chain.block_engine import BUNDLES_PATH, TRANSACTIONS_PATH
from order_engine.chain.client import Blockhash, RpcChain, SignatureStatus
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.node import BUNDLES, RPC, TRANSACTIONS, Localnet

SLOT_MS = 400
REPLAY_START_MS = 1_798_761_600_000  # 2027-01-01T00:00:00Z: far from any wall-clock pool data


class InProcessChain(RpcChain):
    """The engine's JSON-RPC client talking to an in-process localnet on virtual time."""

    def __init__(self, node: Localnet, clock: VirtualClock) -> None:
        super().__init__("in-process://localnet")
        self.node, self.clock = node, clock

    def post_at(self, url: str, request: Any, what: str) -> Any:
        """The HTTP hop replaced by a direct call: the same request objects, the same answers
        (the block engine's paths to its routes)."""
        route = {BUNDLES_PATH: BUNDLES, TRANSACTIONS_PATH: TRANSACTIONS}
        path = url.removeprefix(self.url)
        return self.node.handle(request, route.get(path, RPC))

    def get_at(self, url: str) -> bytes:
        return self.node.tip_floor()

    def latest_blockhash(self) -> Blockhash:
        self._blockhash = None  # no wall-clock caching on virtual time
        return super().latest_blockhash()

    def wait_for_status(
        self, signature: str, timeout_s: float, bundle: bool = False
    ) -> SignatureStatus | None:
        """Let virtual time pass one slot at a time until the transaction is confirmed (or its
        bundle failed)."""
        waited_ms = 0
        while waited_ms <= timeout_s * 1000:
            status = self.signature_statuses([signature]).get(signature)
            if status is not None and status.is_confirmed:
                return status
            failed = self._poller.failed_bundles([signature]) if bundle else {}
            if signature in failed:
                return failed[signature]
            self.clock.advance_ms(SLOT_MS)
            waited_ms += SLOT_MS
        return None
