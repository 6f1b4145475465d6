"""The Solana JSON-RPC methods the node serves, with Solana's parameters, result shapes and
error codes ([AGV-RPC]; source keys in `order_engine.localnet`).

Simplifications, all documented for the engine's authors: there is one bank, so every
commitment level sees the current slot (`minContextSlot` is still honoured); `jsonParsed` falls
back to base64, as a real node does for accounts it cannot parse; `searchTransactionHistory` is
accepted and every landed signature is always found (the ledger is never pruned).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import base58

from order_engine.localnet.cluster import Cluster
from order_engine.localnet.cluster.accounts import Account
from order_engine.localnet.cluster.errors import NodeError
from order_engine.localnet.rpc.wire import (
    API_VERSION,
    Raw,
    check_pubkey,
    config_of,
    context,
    context_text,
    encode_account,
    invalid_params,
    matches,
    parse_filters,
    positional,
    transaction_bytes,
)

_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
FEATURE_SET = 3_294_202_862
MAX_MULTIPLE_ACCOUNTS = 100
MAX_SIGNATURE_STATUSES = 256
MAX_PRIORITIZATION_FEE_ACCOUNTS = 128  # agave's MAX_TX_ACCOUNT_LOCKS


class SolanaMethods:
    """The Solana methods over a cluster. Each takes the request's params and returns the
    result (a `Raw` one already serialised) or raises a `NodeError`."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def table(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "getSlot": self._get_slot,
            "getBlockHeight": self._get_slot,
            "getLatestBlockhash": self._get_latest_blockhash,
            "isBlockhashValid": self._is_blockhash_valid,
            "getAccountInfo": self._get_account_info,
            "getMultipleAccounts": self._get_multiple_accounts,
            "getProgramAccounts": self._get_program_accounts,
            "getBalance": self._get_balance,
            "getTokenAccountBalance": self._get_token_account_balance,
            "sendTransaction": self._send_transaction,
            "simulateTransaction": self._simulate_transaction,
            "getSignatureStatuses": self._get_signature_statuses,
            "getTransaction": self._get_transaction,
            "getHealth": lambda params: "ok",
            "getVersion": lambda params: {"solana-core": API_VERSION, "feature-set": FEATURE_SET},
            "getRecentPrioritizationFees": self._get_recent_prioritization_fees,
            "getGenesisHash": lambda params: self.cluster.blockhashes.text(0),
        }

    def context_slot(self, options: dict[str, Any] | None) -> int:
        """Advance the cluster, then the context slot; honours `minContextSlot` (-32016)."""
        self.cluster.advance()
        slot = self.cluster.current_slot()
        if options:
            minimum = options.get("minContextSlot")
            if minimum is not None and int(minimum) > slot:
                raise NodeError(
                    -32016, "Minimum context slot has not been reached", {"contextSlot": slot}
                )
        return slot

    def _lookup(self, address: Any) -> Account | None:
        if not isinstance(address, str):
            raise invalid_params("Invalid params: expected a base58 pubkey string")
        account = self.cluster.accounts.get(address)
        if account is None:
            check_pubkey(address)
        return account

    def _get_slot(self, params: list[Any]) -> int:
        return self.context_slot(config_of(params, 0))

    def _get_latest_blockhash(self, params: list[Any]) -> dict[str, Any]:
        self.context_slot(config_of(params, 0))
        blockhash, last_valid, slot = self.cluster.blockhashes.latest(self.cluster.current_slot())
        return {
            "context": context(slot),
            "value": {"blockhash": blockhash, "lastValidBlockHeight": last_valid},
        }

    def _is_blockhash_valid(self, params: list[Any]) -> dict[str, Any]:
        text = positional(params, 0, "blockhash")
        slot = self.context_slot(config_of(params, 1))
        try:
            digest = base58.b58decode(text)
        except ValueError:
            raise invalid_params("Invalid params: invalid blockhash") from None
        if len(digest) != 32:
            raise invalid_params("Invalid params: invalid blockhash")
        valid = self.cluster.blockhashes.slot_of(digest, self.cluster.current_slot()) is not None
        return {"context": context(slot), "value": valid}

    def _get_account_info(self, params: list[Any]) -> Raw:
        address = positional(params, 0, "pubkey")
        config = config_of(params, 1)
        slot = self.context_slot(config)
        account = self._lookup(address)
        # getAccountInfo's default encoding is the legacy `binary` [AGV-RPC get_account_info].
        value = "null" if account is None else encode_account(account, config, "binary")
        return Raw('{"context":' + context_text(slot) + ',"value":' + value + "}")

    def _get_multiple_accounts(self, params: list[Any]) -> Raw:
        addresses = positional(params, 0, "pubkeys")
        if not isinstance(addresses, list):
            raise invalid_params("Invalid params: pubkeys must be an array")
        if len(addresses) > MAX_MULTIPLE_ACCOUNTS:
            raise invalid_params(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
        config = config_of(params, 1)
        slot = self.context_slot(config)
        values = []
        for address in addresses:
            account = self._lookup(address)
            # getMultipleAccounts defaults to base64 [AGV-RPC get_multiple_accounts].
            values.append("null" if account is None else encode_account(account, config, "base64"))
        return Raw('{"context":' + context_text(slot) + ',"value":[' + ",".join(values) + "]}")

    def _get_program_accounts(self, params: list[Any]) -> Raw:
        program = positional(params, 0, "program id")
        if not isinstance(program, str):
            raise invalid_params("Invalid params: expected a base58 pubkey string")
        check_pubkey(program)
        config = config_of(params, 1)
        slot = self.context_slot(config)
        filters = parse_filters(config.get("filters") or [])
        entries = []
        for address, account in self.cluster.accounts.of_program(program):
            if all(matches(f, account.data) for f in filters):
                entries.append(
                    '{"account":'
                    + encode_account(account, config, "binary")
                    + ',"pubkey":"'
                    + address
                    + '"}'
                )
        listing = "[" + ",".join(entries) + "]"
        if config.get("withContext"):
            return Raw('{"context":' + context_text(slot) + ',"value":' + listing + "}")
        return Raw(listing)

    def _get_balance(self, params: list[Any]) -> dict[str, Any]:
        address = positional(params, 0, "pubkey")
        slot = self.context_slot(config_of(params, 1))
        account = self._lookup(address)
        return {"context": context(slot), "value": 0 if account is None else account.lamports}

    def _get_token_account_balance(self, params: list[Any]) -> dict[str, Any]:
        address = positional(params, 0, "pubkey")
        slot = self.context_slot(config_of(params, 1))
        token = self.cluster.bank.token_account(address) if isinstance(address, str) else None
        if token is None:
            raise invalid_params("Invalid param: could not find account")
        decimals = next(
            (t.decimals for t in self.cluster.bank.tokens.values() if t.mint == token.mint), 0
        )
        ui = Decimal(token.amount).scaleb(-decimals)
        return {
            "context": context(slot),
            "value": {
                "amount": str(token.amount),
                "decimals": decimals,
                "uiAmount": None,
                "uiAmountString": format(ui, "f"),
            },
        }

    def _send_transaction(self, params: list[Any]) -> str:
        encoded = positional(params, 0, "transaction")
        config = config_of(params, 1)
        # The server's default encoding is base58 [AGV-RPC].
        raw = transaction_bytes(encoded, config.get("encoding") or "base58")
        return self.cluster.send(raw, bool(config.get("skipPreflight", False)))

    def _simulate_transaction(self, params: list[Any]) -> Raw:
        """`[tx, {sigVerify, replaceRecentBlockhash, encoding, commitment, accounts,
        minContextSlot}]` -> `{context, value}`, the value as agave's
        RpcSimulateTransactionResult (`cluster.simulation`)."""
        encoded = positional(params, 0, "transaction")
        config = config_of(params, 1)
        raw = transaction_bytes(encoded, config.get("encoding") or "base58")
        sig_verify = bool(config.get("sigVerify", False))
        replace = bool(config.get("replaceRecentBlockhash", False))
        if sig_verify and replace:
            raise invalid_params("sigVerify may not be used with replaceRecentBlockhash")
        addresses, encoding = _simulation_accounts(config.get("accounts"))
        slot = self.context_slot(config)
        value, accounts = self.cluster.simulate(raw, sig_verify, replace, addresses)
        listing = "null"
        if accounts is not None:
            options = {"encoding": encoding}
            encoded_accounts = [
                "null" if a is None else encode_account(a, options, "base64") for a in accounts
            ]
            listing = "[" + ",".join(encoded_accounts) + "]"
        del value["accounts"]
        body = _DUMPS(value)
        return Raw(
            '{"context":'
            + context_text(slot)
            + ',"value":{"accounts":'
            + listing
            + ","
            + body[1:]
            + "}"
        )

    def _get_signature_statuses(self, params: list[Any]) -> dict[str, Any]:
        signatures = positional(params, 0, "signatures")
        if not isinstance(signatures, list):
            raise invalid_params("Invalid params: signatures must be an array")
        if len(signatures) > MAX_SIGNATURE_STATUSES:
            raise invalid_params(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
        slot = self.context_slot(None)
        status = self.cluster.ledger.status
        return {"context": context(slot), "value": [status(s, slot) for s in signatures]}

    def _get_transaction(self, params: list[Any]) -> dict[str, Any] | None:
        """A landed transaction with its meta (fee, err, balances before and after), in the
        `json` encoding's shape; null until it has landed
        (https://solana.com/docs/rpc/http/gettransaction)."""
        signature = positional(params, 0, "signature")
        self.cluster.advance()
        entry = self.cluster.ledger.get(str(signature))
        if entry is None or entry.balances is None:
            return None
        balances = entry.balances
        return {
            "slot": entry.slot,
            "blockTime": entry.landed_ms // 1000,
            "version": 0,
            "transaction": {
                "signatures": [entry.signature],
                "message": {"accountKeys": balances["keys"]},
            },
            "meta": {
                "err": entry.err,
                "status": {"Ok": None} if entry.err is None else {"Err": entry.err},
                "fee": entry.fee,
                "preBalances": balances["pre"]["lamports"],
                "postBalances": balances["post"]["lamports"],
                "preTokenBalances": balances["pre"]["tokens"],
                "postTokenBalances": balances["post"]["tokens"],
                "logMessages": [],
                "loadedAddresses": {"writable": [], "readonly": []},
                "computeUnitsConsumed": entry.units,
            },
        }

    def _get_recent_prioritization_fees(self, params: list[Any]) -> list[dict[str, int]]:
        """`[[addresses…]?]` -> per recent slot `{slot, prioritizationFee}` (`cluster.fees`)."""
        addresses = params[0] if isinstance(params, list) and params else None
        if addresses is None:
            addresses = []
        if not isinstance(addresses, list):
            raise invalid_params("Invalid params: addresses must be an array")
        if len(addresses) > MAX_PRIORITIZATION_FEE_ACCOUNTS:
            raise invalid_params(f"Too many inputs provided; max {MAX_PRIORITIZATION_FEE_ACCOUNTS}")
        for address in addresses:
            if not isinstance(address, str):
                raise invalid_params("Invalid params: expected a base58 pubkey string")
            check_pubkey(address)
        slot = self.context_slot(None)
        return self.cluster.fees.recent(slot, addresses)


def _simulation_accounts(config: Any) -> tuple[list[str] | None, str]:
    """The `accounts` config of simulateTransaction: (addresses, encoding)."""
    if config is None:
        return None, "base64"
    if not isinstance(config, dict) or not isinstance(config.get("addresses"), list):
        raise invalid_params("Invalid params: accounts must be {addresses, encoding}")
    encoding = config.get("encoding") or "base64"
    if encoding in ("base58", "binary"):
        raise invalid_params("base58 encoding not supported")
    addresses = [str(a) for a in config["addresses"]]
    for address in addresses:
        check_pubkey(address)
    return addresses, encoding
