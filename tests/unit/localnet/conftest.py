"""Fixtures for the localnet's in-process tests: a node on a virtual clock, SQLite in memory
unless a test asks for a state directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair

from order_engine.config import LatencyRange
from order_engine.domain.tokens import resolve
from order_engine.localnet.clock import VirtualClock
from order_engine.localnet.config import LocalnetSettings
from order_engine.localnet.node import Localnet
from tests.unit.localnet.support import Call, in_process

T0_MS = 1_780_000_000_000  # a slot boundary
SOL = resolve("SOL").mint
USDC = resolve("USDC").mint


@pytest.fixture
def make_node() -> Iterator[Callable[..., tuple[Localnet, VirtualClock, Call]]]:
    nodes: list[Localnet] = []

    def make(
        state_dir: Path | None = None, clock: VirtualClock | None = None, **overrides: Any
    ) -> tuple[Localnet, VirtualClock, Call]:
        settings = LocalnetSettings(swap_latency=LatencyRange(1000, 1000), expiry_rate=0).replace(
            **overrides
        )
        clock = clock or VirtualClock(T0_MS)
        if state_dir is None:
            node = Localnet.in_memory(settings, clock)
        else:
            node = Localnet(settings, clock, state_dir)
        nodes.append(node)
        return node, clock, in_process(node)

    yield make
    for node in nodes:
        node.close()


@pytest.fixture
def node(make_node: Callable[..., tuple[Localnet, VirtualClock, Call]]):
    return make_node()


@pytest.fixture
def payer() -> Keypair:
    return Keypair.from_seed(bytes(range(32)))
