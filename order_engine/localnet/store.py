"""The localnet's durable state: one SQLite file (stdlib sqlite3, WAL) in LOCALNET_STATE_DIR.

The cluster keeps everything in memory and writes what changed in one transaction per batch
(`write`), committed before any RPC answer can report it: that is the durability rule — a landed
signature, and the pool and balance changes it made, survive a crash or restart of the localnet.
Transactions and bundles accepted but not yet landed are not persisted (after a crash they
never land, as if the leader had dropped them). `synchronous=NORMAL` in WAL mode survives a
process crash, which is the failure this must cover; it is not meant to survive the machine
losing power.

Rows hold JSON text for structured values; amounts are decimal strings (u64 values do not fit
SQLite's signed 64-bit integers).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pools (
    pool_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    market_at_ms INTEGER NOT NULL,
    drained INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    signature TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    entry TEXT NOT NULL,
    memo TEXT
);
CREATE INDEX IF NOT EXISTS ledger_memo ON ledger (memo);
CREATE TABLE IF NOT EXISTS token_accounts (address TEXT PRIMARY KEY, account TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS wallets (address TEXT PRIMARY KEY, lamports TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS data_accounts (address TEXT PRIMARY KEY, account TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fee_slots (slot INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bundles (
    bundle_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sandwiches (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL);
"""

DB_NAME = "localnet.sqlite"


@dataclass
class Batch:
    """Changes to write in one transaction."""

    meta: dict[str, Any] = field(default_factory=dict)
    pools: list[tuple[str, int, dict[str, Any], dict[str, Any], int, bool]] = field(
        default_factory=list
    )
    ledger: list[tuple[str, int, dict[str, Any], str | None]] = field(default_factory=list)
    token_accounts: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    wallets: dict[str, int] = field(default_factory=dict)
    data_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    fee_slots: dict[int, dict[str, Any]] = field(default_factory=dict)
    fee_floor: int | None = None  # fee records of slots below it are deleted
    bundles: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    sandwiches: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.meta
            or self.pools
            or self.ledger
            or self.token_accounts
            or self.wallets
            or self.data_accounts
            or self.fee_slots
            or self.fee_floor is not None
            or self.bundles
            or self.sandwiches
        )


@dataclass
class Snapshot:
    meta: dict[str, Any]
    pools: list[tuple[str, dict[str, Any], dict[str, Any], int, bool]]
    ledger: list[dict[str, Any]]
    token_accounts: dict[str, dict[str, Any]]
    wallets: dict[str, int]
    data_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    fee_slots: list[dict[str, Any]] = field(default_factory=list)
    bundles: list[dict[str, Any]] = field(default_factory=list)
    sandwiches: list[dict[str, Any]] = field(default_factory=list)


class Store:
    """SQLite persistence; `path=None` keeps the database in memory (tests, replays)."""

    def __init__(self, state_dir: Path | None) -> None:
        if state_dir is None:
            target = ":memory:"
        else:
            state_dir.mkdir(parents=True, exist_ok=True)
            target = str(state_dir / DB_NAME)
        # Autocommit mode: `write` opens and commits its own transaction explicitly.
        self.conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)

    def load(self) -> Snapshot:
        c = self.conn
        meta = {k: json.loads(v) for k, v in c.execute("SELECT key, value FROM meta")}
        pools = [
            (pool_id, json.loads(spec), json.loads(state), market_at_ms, bool(drained))
            for pool_id, spec, state, market_at_ms, drained in c.execute(
                "SELECT pool_id, spec, state, market_at_ms, drained FROM pools ORDER BY seq"
            )
        ]
        ledger = [json.loads(e) for (e,) in c.execute("SELECT entry FROM ledger ORDER BY seq")]
        rows = c.execute("SELECT address, account FROM token_accounts")
        tokens = {a: json.loads(v) for a, v in rows}
        wallets = {a: int(v) for a, v in c.execute("SELECT address, lamports FROM wallets")}
        rows = c.execute("SELECT address, account FROM data_accounts")
        data_accounts = {a: json.loads(v) for a, v in rows}
        fee_slots = [
            json.loads(r) for (r,) in c.execute("SELECT record FROM fee_slots ORDER BY slot")
        ]
        bundles = [json.loads(r) for (r,) in c.execute("SELECT record FROM bundles ORDER BY seq")]
        sandwiches = [
            json.loads(e) for (e,) in c.execute("SELECT entry FROM sandwiches ORDER BY seq")
        ]
        return Snapshot(
            meta, pools, ledger, tokens, wallets, data_accounts, fee_slots, bundles, sandwiches
        )

    def write(self, batch: Batch) -> None:
        c = self.conn
        c.execute("BEGIN")
        try:
            c.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in batch.meta.items()],
            )
            c.executemany(
                "INSERT OR REPLACE INTO pools (pool_id, seq, spec, state, market_at_ms, drained)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (pid, seq, json.dumps(spec), json.dumps(state), at, int(drained))
                    for pid, seq, spec, state, at, drained in batch.pools
                ],
            )
            c.executemany(
                "INSERT OR IGNORE INTO ledger (signature, seq, entry, memo) VALUES (?, ?, ?, ?)",
                [(sig, seq, json.dumps(entry), memo) for sig, seq, entry, memo in batch.ledger],
            )
            self._upsert_or_delete(
                "token_accounts", "account", batch.token_accounts.items(), json.dumps
            )
            c.executemany(
                "INSERT OR REPLACE INTO wallets (address, lamports) VALUES (?, ?)",
                [(a, str(v)) for a, v in batch.wallets.items()],
            )
            self._write_chain(batch)
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def _write_chain(self, batch: Batch) -> None:
        """The nonce accounts, and the fee market's, block engine's and searcher's records;
        most batches hold none of them, and skip their statements."""
        c = self.conn
        if batch.data_accounts:
            c.executemany(
                "INSERT OR REPLACE INTO data_accounts (address, account) VALUES (?, ?)",
                [(a, json.dumps(v)) for a, v in batch.data_accounts.items()],
            )
        if batch.fee_slots:
            c.executemany(
                "INSERT OR REPLACE INTO fee_slots (slot, record) VALUES (?, ?)",
                [(slot, json.dumps(record)) for slot, record in batch.fee_slots.items()],
            )
        if batch.fee_floor is not None:
            c.execute("DELETE FROM fee_slots WHERE slot < ?", (batch.fee_floor,))
        if batch.bundles:
            c.executemany(
                "INSERT OR REPLACE INTO bundles (bundle_id, seq, record) VALUES (?, ?, ?)",
                [(bid, seq, json.dumps(record)) for bid, (seq, record) in batch.bundles.items()],
            )
        if batch.sandwiches:
            c.executemany(
                "INSERT OR REPLACE INTO sandwiches (seq, entry) VALUES (?, ?)",
                [(seq, json.dumps(entry)) for seq, entry in batch.sandwiches],
            )

    def _upsert_or_delete(
        self, table: str, column: str, items: Iterable[tuple[str, Any]], dumps: Any
    ) -> None:
        upserts, deletes = [], []
        for address, value in items:
            if value is None:
                deletes.append((address,))
            else:
                upserts.append((address, dumps(value)))
        self.conn.executemany(
            f"INSERT OR REPLACE INTO {table} (address, {column}) VALUES (?, ?)", upserts
        )
        self.conn.executemany(f"DELETE FROM {table} WHERE address = ?", deletes)

    def close(self) -> None:
        self.conn.close()
