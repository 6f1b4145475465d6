"""The engine's view of Solana: program ids, account layouts, and swap transactions."""
