"""The localnet: a local Solana validator stand-in with the Raydium CPMM and Meteora DLMM pools.

It runs as its own process (`order-engine localnet`, `python -m order_engine.localnet`) and the
engine reaches it only through Solana JSON-RPC, as it would a real node (DESIGN §5). Modules:

* `config`     -- its settings from the environment;
* `clock`, `market`, `catalogue`, `pools` -- slots, the seeded market, the listed pools and
  their math state (exact integers, `order_engine.venues.math`);
* `execution`  -- emulation of the instructions a swap transaction carries, all or nothing;
* `cluster`    -- the core: blockhashes, pending transactions, landing, ledger, faults, admin
  operations, account serving; drivable in-process on a virtual clock;
* `store`      -- SQLite persistence of everything that must survive a restart;
* `node`       -- the JSON-RPC methods (`Localnet.handle` works without HTTP);
* `server`     -- the gevent WSGI server; `cli` -- the command line.

Nothing outside this package imports it; it may import the engine's pure modules
(`order_engine.chain.accounts`, `.programs`, `order_engine.venues.math`,
`order_engine.domain.tokens`).
"""
