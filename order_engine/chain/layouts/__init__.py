"""Binary layouts of the accounts a swap reads, and their PDAs.

Each layout is a frozen dataclass with `encode() -> bytes` and `decode(data)`; decoding checks the
size and, for Anchor accounts, the 8-byte discriminator, and raises `AccountDecodeError`
otherwise. Modules:

* `token`   -- `TokenAccount`, the SPL Token account, 165 bytes [SPL token/program/src/state.rs];
* `raydium` -- `CpmmPoolState`, `AmmConfig`: Raydium CP-Swap, 637 and 236 bytes [RAY
  states/pool.rs, states/config.rs];
* `meteora` -- `LbPair`, `BinArray`: Meteora DLMM, 904 and 10 136 bytes [MET IDL v0.12.0], and
  the pair's bin-array bitmap;
* `pdas`    -- the addresses the programs derive for pools, vaults, configs and bin arrays;
* `codec`   -- what they share: the decode error and the packing helpers.

Only the fields a swap, a quote or the localnet needs are modelled. Bytes of unmodelled fields
(reward infos, Bin liquidity and fee accumulators, padding) are written as zeros and ignored when
decoding, so `decode(x.encode()) == x` holds but foreign account bytes do not round-trip exactly.
The engine turns decoded accounts into pool math in `order_engine.chain.pools`; the localnet
builds the accounts it serves from its pools in `order_engine.localnet.pool_accounts`.

Offsets were read from the programs' public sources; the bracketed keys name them:

* [SPL] solana-labs/solana-program-library @ 8a829763a7ab97989589b0002b7ac184071d2e33;
* [RAY] raydium-io/raydium-cp-swap @ 609780f165d234a0aa9699cac90178a3fa36fd43,
  programs/cp-swap/src/;
* [MET] MeteoraAg/dlmm-sdk @ fb02e51ae677bbd18e76543f702dae40632426db (idls/dlmm.json is the
  IDL v0.12.0; commons/src/ holds the PDA seeds, constants and quote walk).
"""
