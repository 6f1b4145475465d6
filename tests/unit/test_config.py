from decimal import Decimal

import pytest

from order_engine.config import ConfigError, LatencyRange, Settings

BASE = {"DATABASE_URL": "postgresql://u@localhost/db", "REDIS_URL": "redis://localhost:6379/0"}


def settings(**overrides: str) -> Settings:
    return Settings.from_env({**BASE, **overrides})


def test_defaults_follow_the_design_document():
    s = settings()
    assert s.port == 8000
    assert s.celery_broker_url == BASE["REDIS_URL"]
    assert s.dex_quote_latency == LatencyRange(200, 200)
    assert s.dex_swap_latency == LatencyRange(2000, 3000)
    assert s.dex_transient_failure_rate == Decimal(0)
    assert s.order_max_attempts == 3


def test_database_url_is_normalised_to_psycopg3():
    assert settings().database_url == "postgresql+psycopg://u@localhost/db"


def test_latency_accepts_a_number_or_a_range():
    s = settings(DEX_QUOTE_LATENCY_MS="5", DEX_SWAP_LATENCY_MS="10-20")
    assert s.dex_quote_latency == LatencyRange(5, 5)
    assert s.dex_swap_latency == LatencyRange(10, 20)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://localhost/db"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "http://localhost"),
        ("CELERY_BROKER_URL", "kafka://x"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("DEX_QUOTE_LATENCY_MS", "-5"),
        ("DEX_SWAP_LATENCY_MS", "3000-2000"),
        ("DEX_SWAP_LATENCY_MS", "fast"),
        ("DEX_TRANSIENT_FAILURE_RATE", "1.5"),
        ("DEX_TRANSIENT_FAILURE_RATE", "NaN"),
        ("ORDER_MAX_ATTEMPTS", "0"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_value_stops_startup_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        settings(**{name: value})


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL"])
def test_missing_server_urls_are_named(missing):
    env = dict(BASE)
    del env[missing]
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


def test_lease_must_outlive_the_task_time_limit():
    with pytest.raises(ConfigError, match="ORDER_LEASE_S"):
        settings(TASK_TIME_LIMIT_S="60", ORDER_LEASE_S="60")


def test_visibility_timeout_must_outlive_lease_plus_longest_retry_countdown():
    with pytest.raises(ConfigError, match="BROKER_VISIBILITY_TIMEOUT_S"):
        settings(
            ORDER_LEASE_S="90", ORDER_RETRY_BACKOFF_MAX_S="30", BROKER_VISIBILITY_TIMEOUT_S="100"
        )
