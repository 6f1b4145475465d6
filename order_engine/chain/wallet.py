"""The engine's wallet: the keypair that pays for and signs every swap transaction.

`WALLET_KEYPAIR` names a keypair file in the Solana CLI's format (a JSON array of the 64 secret
key bytes, as `solana-keygen new` writes it) or holds the base58 secret key itself. When it is
unset the engine uses a development key under the state folder, generated on first use with
mode 0600 and never committed (`.state/` is git-ignored): fine for the localnet, never for
real funds.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from solders.keypair import Keypair

from order_engine.infra import logs


class WalletError(ValueError):
    """The configured keypair cannot be read."""


@lru_cache(maxsize=4)
def load_keypair(source: str) -> Keypair:
    """The keypair from a file path or a base58 secret key (cached per process)."""
    path = Path(source).expanduser()
    if path.is_file():
        try:
            secret = bytes(json.loads(path.read_text()))
            keypair = Keypair.from_bytes(secret)
        except (ValueError, TypeError) as exc:
            raise WalletError(f"{path} is not a Solana keypair file (64-byte JSON array)") from exc
    else:
        try:
            keypair = Keypair.from_base58_string(source.strip())
        except ValueError as exc:
            raise WalletError(
                "WALLET_KEYPAIR must be a keypair file or a base58 secret key"
            ) from exc
    # The secret key never appears in a log line, whatever prints it.
    logs.register_secret(str(keypair))
    return keypair


def ensure_dev_keypair(path: Path) -> Path:
    """Create a development keypair file at `path` unless one exists; return the path.

    Several processes may start at once: the file is created exclusively, so they all end up
    with the same key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path
    secret = json.dumps(list(bytes(Keypair())))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return path
