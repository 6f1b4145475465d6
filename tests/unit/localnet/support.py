"""Helpers shared by the localnet's unit and integration tests: a JSON-RPC caller over either
an in-process node or HTTP, and swap transactions built from the served pool accounts with the
engine's own builder (`order_engine.chain.tx`)."""

from __future__ import annotations

import base64
import itertools
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from order_engine.chain import tx as txb
from order_engine.chain.layouts.meteora import BinArray, LbPair, bitmap_indexes
from order_engine.chain.layouts.pdas import dlmm_bin_array_address
from order_engine.chain.layouts.raydium import AmmConfig, CpmmPoolState
from order_engine.chain.layouts.token import TokenAccount
from order_engine.chain.pools import cpmm_pool, dlmm_pool
from order_engine.chain.programs import METEORA_DLMM_PROGRAM, WSOL_MINT, associated_token_address

_ids = itertools.count(1)


class RpcFailure(Exception):
    def __init__(self, error: dict[str, Any], http_status: int = 200) -> None:
        super().__init__(error.get("message"))
        self.code = error["code"]
        self.message = error["message"]
        self.data = error.get("data")
        self.http_status = http_status


Call = Callable[..., Any]


def in_process(node: Any) -> Call:
    def call(method: str, *params: Any) -> Any:
        params_value: Any = params[0] if method.startswith("localnet_") else list(params)
        request = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params_value}
        response = node.handle(request)
        if "error" in response:
            raise RpcFailure(response["error"])
        return response["result"]

    return call


def over_http(url: str, timeout: float = 10.0) -> Call:
    def call(method: str, *params: Any) -> Any:
        params_value: Any = params[0] if method.startswith("localnet_") else list(params)
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params_value}
        ).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer, status = json.loads(response.read()), response.status
        except urllib.error.HTTPError as exc:
            answer, status = json.loads(exc.read()), exc.code
        if "error" in answer:
            raise RpcFailure(answer["error"], status)
        return answer["result"]

    return call


def pool_address(call: Call, pool_id: str) -> str:
    status = call("localnet_status", {})
    return next(p["address"] for p in status["pools"] if p["poolId"] == pool_id)


def pool_mid(call: Call, pool_id: str) -> str:
    status = call("localnet_status", {})
    return next(p["mid"] for p in status["pools"] if p["poolId"] == pool_id)


def fetch(call: Call, addresses: list[str]) -> list[tuple[str, bytes] | None]:
    """(owner, data) of each address via getMultipleAccounts."""
    value = call("getMultipleAccounts", addresses, {"encoding": "base64"})["value"]
    return [None if v is None else (v["owner"], base64.b64decode(v["data"][0])) for v in value]


GENESIS_MS = 1_767_225_600_000


def quote(call: Call, pool: str, input_mint: str, amount_in: int) -> int:
    """The output the served pool accounts promise now, with the engine-side decoders."""
    now_s = (GENESIS_MS + call("getSlot") * 400) // 1000
    (owner, data), = fetch(call, [pool])  # fmt: skip
    if owner == str(METEORA_DLMM_PROGRAM):
        pair = LbPair.decode(data)
        indexes = bitmap_indexes(pair.bin_array_bitmap)
        addresses = [str(dlmm_bin_array_address(Pubkey.from_string(pool), i)) for i in indexes]
        arrays = [BinArray.decode(d) for _, d in fetch(call, addresses)]  # type: ignore[misc]
        dlmm = dlmm_pool(pair, arrays)
        swap_for_y = input_mint == str(pair.token_x_mint)
        at = max(now_s, dlmm.volatility.last_update_timestamp)
        return dlmm.swap_exact_in(amount_in, swap_for_y, at).amount_out
    state = CpmmPoolState.decode(data)
    config_raw, vault_0, vault_1 = fetch(
        call, [str(state.amm_config), str(state.token_0_vault), str(state.token_1_vault)]
    )
    cp = cpmm_pool(
        state,
        AmmConfig.decode(config_raw[1]),  # type: ignore[index]
        TokenAccount.decode(vault_0[1]),  # type: ignore[index]
        TokenAccount.decode(vault_1[1]),  # type: ignore[index]
    )
    return cp.swap_exact_in(amount_in, input_mint == str(state.token_0_mint)).amount_out


def leg(call: Call, pool: str, input_mint: str, amount_in: int, minimum_out: int) -> txb.SwapLeg:
    (owner, data), = fetch(call, [pool])  # fmt: skip
    key, mint = Pubkey.from_string(pool), Pubkey.from_string(input_mint)
    if owner == str(METEORA_DLMM_PROGRAM):
        return txb.SwapLeg.meteora(key, LbPair.decode(data), mint, amount_in, minimum_out)
    return txb.SwapLeg.raydium(key, CpmmPoolState.decode(data), mint, amount_in, minimum_out)


def swap_tx(
    call: Call,
    payer: Keypair,
    legs: list[txb.SwapLeg],
    memo: str | None = None,
    blockhash: str | None = None,
) -> tuple[str, str]:
    """(signature, base64 transaction) of a signed swap over `legs`."""
    if blockhash is None:
        blockhash = call("getLatestBlockhash")["value"]["blockhash"]
    tx = txb.build_swap_transaction(
        payer,
        Hash.from_string(blockhash),
        legs[0].input_mint,
        legs[0].output_mint,
        sum(item.amount_in for item in legs),
        legs,
        memo,
        400_000,
        1_000,
    )
    return txb.signature_of(tx), txb.encode_transaction(tx)


def swap_instructions(
    owner: Pubkey,
    legs: list[txb.SwapLeg],
    limit: int | None = 400_000,
    price: int = 1_000,
    memo: str | None = None,
) -> list[Instruction]:
    """A swap's instructions in the engine's order (`txb.build_swap_transaction`), for tests
    that add their own (a tip, a nonce advance) or leave the compute budget out (`limit=None`)."""
    input_mint, output_mint = legs[0].input_mint, legs[0].output_mint
    amount_in = sum(item.amount_in for item in legs)
    ixs = [] if limit is None else [txb.set_compute_unit_limit(limit)]
    ixs.append(txb.set_compute_unit_price(price))
    wsol = associated_token_address(owner, WSOL_MINT)
    if input_mint == WSOL_MINT:
        ixs += [
            txb.create_associated_token_account_idempotent(owner, owner, WSOL_MINT),
            txb.system_transfer(owner, wsol, amount_in),
            txb.sync_native(wsol),
        ]
    ixs.append(txb.create_associated_token_account_idempotent(owner, owner, output_mint))
    ixs.extend(txb.swap_instruction(owner, item) for item in legs)
    if WSOL_MINT in (input_mint, output_mint):
        ixs.append(txb.close_account(wsol, owner, owner))
    if memo is not None:
        ixs.append(txb.memo_instruction(memo))
    return ixs


def sign(
    call: Call,
    payer: Keypair,
    instructions: list[Instruction],
    *signers: Keypair,
    blockhash: str | None = None,
) -> tuple[str, str]:
    """(signature, base64) of a v0 transaction of `instructions`, paid and signed by `payer`."""
    if blockhash is None:
        blockhash = call("getLatestBlockhash")["value"]["blockhash"]
    message = MessageV0.try_compile(payer.pubkey(), instructions, [], Hash.from_string(blockhash))
    tx = VersionedTransaction(message, [payer, *signers])
    return txb.signature_of(tx), txb.encode_transaction(tx)


def send(call: Call, encoded: str, **config: Any) -> str:
    return call("sendTransaction", encoded, {"encoding": "base64", **config})


def status(call: Call, signature: str) -> dict[str, Any] | None:
    return call("getSignatureStatuses", [signature])["value"][0]
