"""The JSON-RPC methods of the localnet's node."""
