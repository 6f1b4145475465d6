"""Binary layouts of the accounts a swap reads, their PDAs, and the bridge to the pure pool math.

Each layout is a frozen dataclass with `encode() -> bytes` and `decode(data)`; decoding checks the
size and, for Anchor accounts, the 8-byte discriminator, and raises `AccountDecodeError`
otherwise. Offsets are those of /work/shared/research/solana-rpc.md (source keys in brackets):

* `TokenAccount`  -- SPL Token account, 165 bytes [SPL token/program/src/state.rs] (§6);
* `CpmmPoolState`, `AmmConfig` -- Raydium CP-Swap, 637 and 236 bytes [RAY states/pool.rs,
  states/config.rs] (§7);
* `LbPair`, `BinArray` -- Meteora DLMM, 904 and 10 136 bytes [MET IDL v0.12.0] (§8).

Only the fields a swap, a quote or the localnet needs are modelled. Bytes of unmodelled fields
(reward infos, Bin liquidity and fee accumulators, padding) are written as zeros and ignored when
decoding, so `decode(x.encode()) == x` holds but foreign account bytes do not round-trip exactly.

`cpmm_pool` / `dlmm_pool` turn decoded accounts into `order_engine.venues.math` objects, which is
how the engine quotes; `cpmm_pool_accounts` / `dlmm_pool_accounts` go the other way, which is how
the localnet serves its pools. PDA derivations are cached: each is a bump search of up to 255
SHA-256 hashes and the same few addresses are asked for on every order.
"""
