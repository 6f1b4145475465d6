"""Order Engine: an order execution backend for Solana swaps."""
