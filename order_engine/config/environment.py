"""Where the settings are read from: the process environment over a `.env` file, and the paths
fixed before either is read (the project's root, the state directory)."""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

from order_engine.config.groups import PROCESSES
from order_engine.config.options import Option
from order_engine.config.parsers import path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Read at import, from the process environment only: `.env` is found through PROJECT_ROOT.
STATE_DIR_OPTION = Option(
    "ORDER_ENGINE_STATE_DIR",
    path(),
    str(PROJECT_ROOT / ".state"),
    PROCESSES,
    "where the embedded servers, the development wallet and the localnet keep their files",
    shown="`.state`",
    process_only=True,
)
STATE_DIR = STATE_DIR_OPTION.read(os.environ)
# Generated on first use when WALLET_KEYPAIR is unset (chain/wallet.py): a localnet key only.
DEV_WALLET_PATH = STATE_DIR / "dev-wallet.json"
# Not a field: prometheus_client and infra/metrics.py read it, `order-engine` sets it.
METRICS_DIR_OPTION = Option(
    "PROMETHEUS_MULTIPROC_DIR",
    path(),
    str(STATE_DIR / "metrics"),
    PROCESSES,
    "where every process of a host writes its metrics for `/metrics` to sum; `order-engine` "
    "sets it for the processes it starts and `make run` empties it at start",
    shown="`.state/metrics`",
    process_only=True,
)
PROCESS_OPTIONS = (STATE_DIR_OPTION, METRICS_DIR_OPTION)


def startup_log_format() -> str:
    """The log format for a command's first lines, before its settings are read (a bad
    LOG_FORMAT is then refused by `Settings.from_env`, in the format chosen here)."""
    return "json" if os.environ.get("LOG_FORMAT", "").strip().lower() == "json" else "text"


def process_environment() -> dict[str, str]:
    """The settings' source: `.env` in the project's root, overlaid by the process environment."""
    dotenv_file = PROJECT_ROOT / ".env"
    values = {k: v for k, v in dotenv_values(dotenv_file).items() if v is not None}
    values.update(os.environ)
    return values
