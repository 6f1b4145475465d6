"""The pool index's per-slot reads: decoded accounts are reused only while their bytes stay the
same, so a long-lived index sees exactly what a fresh one decodes from the same slot."""

from __future__ import annotations

from order_engine.chain.pools import PoolIndex
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.node import Localnet
from order_engine.tools.in_process import REPLAY_START_MS, InProcessChain


def _index(chain: InProcessChain, clock: VirtualClock) -> PoolIndex:
    return PoolIndex(chain, clock=lambda: clock.now_ms() / 1000)


def test_a_long_lived_index_sees_what_a_fresh_one_decodes_slot_after_slot():
    clock = VirtualClock(REPLAY_START_MS)
    chain = InProcessChain(Localnet.in_memory(LocalnetSettings(seed=11), clock), clock)
    kept = _index(chain, clock)
    refs = kept.all_pools(max_age_s=1e9)
    reused = changed = 0
    before = {v.ref.address: v for v in kept.views(refs)}
    for _ in range(40):
        clock.advance_ms(450)  # a new slot: the market walks, arbitrage moves the pools
        other_index = _index(chain, clock)
        fresh = {v.ref.address: v for v in other_index.views(other_index.all_pools())}
        for view in kept.views(refs):
            other = fresh[view.ref.address]
            assert (view.cpmm, view.dlmm, view.lb_pair) == (other.cpmm, other.dlmm, other.lb_pair)
            assert view.bin_array_indexes == other.bin_array_indexes
            if view.dlmm is not None:
                if view.dlmm is before[view.ref.address].dlmm:
                    reused += 1
                elif view.dlmm != before[view.ref.address].dlmm:
                    changed += 1
        before = {v.ref.address: v for v in kept.views(refs)}
    # The market moved some DLMM pools; others kept their bytes and were not decoded again.
    assert changed > 0
    assert reused > 0
