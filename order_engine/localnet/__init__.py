"""The localnet: a local Solana validator stand-in with the Raydium CPMM and Meteora DLMM pools.

Nothing outside this package imports it; it may import the engine's pure modules
(`order_engine.chain.accounts`, `.programs`, `order_engine.venues.math`, `order_engine.tokens`).
"""
