"""The localnet: a local Solana validator stand-in with the Raydium CPMM and Meteora DLMM pools.

It runs as its own process (`order-engine localnet`, `python -m order_engine.localnet`) and the
engine reaches it only through Solana JSON-RPC, as it would a real node. Modules:

* `config`     -- its settings from the environment;
* `clock`, `market`, `catalogue`, `pools` -- slots, the seeded market, the listed pools and
  their math state (exact integers, `order_engine.venues.math`);
* `pool_accounts` -- the program accounts served for each pool, in the chain's own layouts;
* `instructions` -- the decoder of the transactions the engine sends;
* `execution/` -- emulation of the instructions a swap transaction carries, all or nothing;
* `cluster/`   -- the core beneath the RPC layer: the bank, sending, landing (the slot loop),
  the ledger, served accounts, faults and admin; drivable in-process on a virtual clock;
* `store`      -- SQLite persistence of everything that must survive a restart;
* `node`, `rpc/` -- the JSON-RPC node and its methods: Solana's, its own admin ones, and the
  block engine's bundle endpoints (`Localnet.handle` works without HTTP);
* `server`     -- the gevent WSGI server; `cli` -- the command line.

Nothing of the engine imports it (tools above both may). It imports only the engine's pure
modules: the chain's account layouts and program ids (`order_engine.chain.layouts`,
`order_engine.chain.programs`), `order_engine.venues.math`, `order_engine.domain.tokens` and
settings parsing (`order_engine.config`); setup.cfg's import contracts hold it to that.

Behaviours come from the public sources; the bracketed keys in comments name them:

* [AGV-RPC] anza-xyz/agave rpc/src/rpc.rs @ 00018991225c173e9e8acffe0ae03eec1568b69e;
* [AGV-FILT] anza-xyz/agave rpc-client-api/src/filter.rs @ 074c9a33;
* [SDK-TXE], [SDK-MSG], [SDK-CB] anza-xyz/solana-sdk transaction-error/src/lib.rs,
  message/src/versions/, compute-budget-interface/src/lib.rs;
* [ANC] coral-xyz/anchor @ 157a52f1 lang/src/error.rs;
* [SPL], [RAY], [MET] as in `order_engine.chain.layouts`.
"""
