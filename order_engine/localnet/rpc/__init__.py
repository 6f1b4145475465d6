"""The node's JSON-RPC methods: `methods` (Solana's), `admin` (the `localnet_*` ones) and `wire`
(params in, results out, shared by both). `order_engine.localnet.node` dispatches to them."""
