"""The settings of landing swaps on a contested chain (docs/design.md, "Landing"): the priority
fee oracle, compute limits, protected sending, escalation and the default cap per order. Declared
apart so the engine's other settings stay together; `Settings` inherits them."""

from __future__ import annotations

from dataclasses import dataclass

from order_engine.config.groups import LANDING
from order_engine.config.options import option
from order_engine.config.parsers import choice, switch, text, whole

# The largest price per CU an order may name (100 lamports per CU: a 1,400,000 CU
# transaction at it pays 0.14 SOL) and the largest cap it may set (1 SOL).
MAX_MICRO_LAMPORTS_PER_CU = 100_000_000
MAX_FEE_LAMPORTS_LIMIT = 1_000_000_000


@dataclass(frozen=True, kw_only=True)
class LandingSettings:
    """Read before the engine's other settings (a base class's fields come first); none of
    them names another setting."""

    priority_fee_percentile: int = option(
        "PRIORITY_FEE_PERCENTILE",
        whole(1, 100),
        "80",
        LANDING,
        "the percentile of recent slots' fees for a swap's writable pool accounts "
        "(getRecentPrioritizationFees) that an `auto` order bids per compute unit",
    )
    priority_fee_slots: int = option(
        "PRIORITY_FEE_SLOTS",
        whole(1, 150),
        "20",
        LANDING,
        "how many of the most recent slots that percentile is taken over",
    )
    priority_fee_floor_micro_lamports: int = option(
        "PRIORITY_FEE_FLOOR_MICRO_LAMPORTS",
        whole(0, MAX_MICRO_LAMPORTS_PER_CU),
        "1000",
        LANDING,
        "the least an `auto` order bids, in micro-lamports per compute unit",
    )
    priority_fee_escalation_pct: int = option(
        "PRIORITY_FEE_ESCALATION_PCT",
        whole(100, 1000),
        "150",
        LANDING,
        "each later version of an order's swap bids at least this percentage of the previous "
        "version's price per CU (`auto` orders) and tip, within the order's cap",
    )
    max_fee_lamports: int = option(
        "MAX_FEE_LAMPORTS",
        whole(1000, MAX_FEE_LAMPORTS_LIMIT),
        "100000",
        LANDING,
        "an order's cap on its priority fee plus tip, in lamports, when it names no "
        "`maxFeeLamports`",
    )
    compute_unit_margin_pct: int = option(
        "COMPUTE_UNIT_MARGIN_PCT",
        whole(100, 130),
        "115",
        LANDING,
        "a swap's compute unit limit is what its simulation consumed times this percentage, "
        "rounded up",
    )
    mev_protection: bool = option(
        "MEV_PROTECTION",
        switch(),
        "true",
        LANDING,
        "an order that says nothing is sent to the block engine as a bundle of one with a tip "
        "(never public, never sandwiched); false: public sendTransaction without a tip",
    )
    block_engine_url: str = option(
        "BLOCK_ENGINE_URL",
        text(),
        "",
        LANDING,
        "the block engine (Jito's JSON-RPC paths under it); empty: SOLANA_RPC_URL's origin, "
        "where the localnet serves it",
        shown="SOLANA_RPC_URL's origin",
        example="https://mainnet.block-engine.jito.wtf",
    )
    tip_percentile: str = option(
        "TIP_PERCENTILE",
        choice("25", "50", "75", "95", "99"),
        "50",
        LANDING,
        "a protected order tips this percentile of recently landed bundles' tips (the block "
        "engine's tip floor), at least 1,000 lamports",
    )
