"""`simulateTransaction`: a transaction run against the current slot's state, changing nothing.

The same execution as landing (`Bank.execute`), at the present instant, over an overlay that is
thrown away. As agave's `simulate_transaction` (rpc/src/rpc.rs): signatures are checked only
with `sigVerify` (a failure is the result's `err`, "SignatureFailure"), `replaceRecentBlockhash`
runs it with the current blockhash and reports that one (`sigVerify` with it is -32602), an
expired blockhash is the result's "BlockhashNotFound", a signature already processed its
"AlreadyProcessed"; the result carries the logs, the compute units consumed, the fee, the
balances before and after, and the accounts asked for, as they would be after it.
"""

from __future__ import annotations

from typing import Any

from order_engine.localnet.clock import slot_at
from order_engine.localnet.cluster.accounts import Account, ServedAccounts
from order_engine.localnet.cluster.bank import Bank
from order_engine.localnet.cluster.blockhashes import Blockhashes
from order_engine.localnet.cluster.errors import NodeError
from order_engine.localnet.cluster.ledger import Ledger
from order_engine.localnet.cluster.sent import Recency, Sent, decode_sent


class Simulator:
    """Runs transactions without landing them."""

    def __init__(
        self,
        clock: Any,
        slot_ms: int,
        bank: Bank,
        ledger: Ledger,
        blockhashes: Blockhashes,
        recency: Recency,
        accounts: ServedAccounts,
    ) -> None:
        self._clock = clock
        self._slot_ms = slot_ms
        self._bank = bank
        self._ledger = ledger
        self._blockhashes = blockhashes
        self._recency = recency
        self._accounts = accounts

    def simulate(
        self, raw: bytes, sig_verify: bool, replace: bool, addresses: list[str] | None
    ) -> tuple[dict[str, Any], list[Account | None] | None]:
        """(the result without its accounts, the accounts asked for after the run)."""
        sent = decode_sent(raw, verify=False)
        keys = [str(k) for k in sent.tx.message.account_keys]
        if addresses is not None and len(addresses) > len(keys):
            raise NodeError(-32602, f"Too many accounts provided; max {len(keys)}")
        now_ms = self._clock.now_ms()
        current = slot_at(now_ms, self._slot_ms)
        replacement = None
        if replace:
            blockhash, last_valid, _ = self._blockhashes.latest(current)
            replacement = {"blockhash": blockhash, "lastValidBlockHeight": last_valid}
        refused = self._refused(sent, current, sig_verify, replace)
        if refused is not None:
            return _result(refused, [], 0, replacement), None
        if sent.instructions is None:
            err = {"InstructionError": [sent.decode_error, "InvalidInstructionData"]}
            return _result(err, [], 0, replacement), None
        for record, _ in self._bank.touched(sent.instructions):
            self._bank.catch_up(record, now_ms)
        digest = self._blockhashes.digest(current)
        # Against the bank as the faucet would leave a wallet never seen (as landing does).
        view = self._bank.faucet_view(sent.payer)
        result = self._bank.execute(sent.tx, sent.instructions, now_ms, digest, view, sent.budget)
        answer = _result(result.err, result.logs, result.units, replacement)
        before = self._bank.balances(keys, sent.payer, view)
        after = self._bank.balances(keys, sent.payer, result.overlay)
        answer.update(
            fee=result.fee,
            preBalances=before["lamports"],
            postBalances=after["lamports"],
            preTokenBalances=before["tokens"],
            postTokenBalances=after["tokens"],
        )
        if addresses is None:
            return answer, None
        return answer, [self._accounts.after(a, result.overlay) for a in addresses]

    def _refused(self, sent: Sent, current: int, sig_verify: bool, replace: bool) -> Any:
        """Why it cannot run at all, as a transaction error, or None."""
        if sig_verify and not all(sent.tx.verify_with_results()):
            return "SignatureFailure"
        if replace:
            return None
        if self._recency.last_valid(sent, current) is None:
            return "BlockhashNotFound"
        if sent.signature in self._ledger:
            return "AlreadyProcessed"
        return None


def _result(err: Any, logs: list[str], units: int, replacement: Any) -> dict[str, Any]:
    return {
        "err": err,
        "logs": logs,
        "accounts": None,
        "unitsConsumed": units,
        "loadedAccountsDataSize": 0,
        "returnData": None,
        "innerInstructions": None,
        "replacementBlockhash": replacement,
        "fee": None,
        "preBalances": None,
        "postBalances": None,
        "preTokenBalances": None,
        "postTokenBalances": None,
        "loadedAddresses": {"writable": [], "readonly": []},
    }
