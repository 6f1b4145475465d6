import dataclasses

import pytest

from order_engine.config import ConfigError, LatencyRange, Settings
from order_engine.localnet.config import LocalnetSettings

BASE = {"DATABASE_URL": "postgresql://u@localhost/db", "REDIS_URL": "redis://localhost:6379/0"}


def settings(**overrides: str) -> Settings:
    return Settings.from_env({**BASE, **overrides})


def test_defaults_follow_the_design_document():
    s = settings()
    assert s.port == 8000
    assert s.celery_broker_url == BASE["REDIS_URL"]
    assert s.solana_rpc_url == "http://127.0.0.1:8899"
    assert s.order_max_attempts == 3


def test_database_url_is_normalised_to_psycopg3():
    assert settings().database_url == "postgresql+psycopg://u@localhost/db"


def test_the_rpc_url_follows_the_localnet_port_unless_named():
    assert settings(LOCALNET_PORT="9900").solana_rpc_url == "http://127.0.0.1:9900"
    named = settings(SOLANA_RPC_URL="https://rpc.example.org", LOCALNET_PORT="9900")
    assert named.solana_rpc_url == "https://rpc.example.org"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://localhost/db"),
        ("DATABASE_URL", "not a url"),
        ("REDIS_URL", "http://localhost"),
        ("CELERY_BROKER_URL", "kafka://x"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("SOLANA_RPC_URL", "ws://127.0.0.1:8900"),
        ("LOCALNET_PORT", "0"),
        ("CONFIRM_TIMEOUT_S", "soon"),
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


def test_task_time_limit_must_outlive_the_longest_wait_on_the_chain():
    with pytest.raises(ConfigError, match="TASK_TIME_LIMIT_S"):
        settings(TASK_TIME_LIMIT_S="40", CONFIRM_TIMEOUT_S="30", RPC_TIMEOUT_S="5")


def test_visibility_timeout_must_outlive_lease_plus_longest_retry_countdown():
    with pytest.raises(ConfigError, match="BROKER_VISIBILITY_TIMEOUT_S"):
        settings(
            TASK_TIME_LIMIT_S="60",
            CONFIRM_TIMEOUT_S="30",
            ORDER_LEASE_S="90",
            ORDER_RETRY_BACKOFF_MAX_S="30",
            BROKER_VISIBILITY_TIMEOUT_S="100",
        )


def test_a_field_default_is_the_declared_default_the_environment_gets():
    from_env = settings()
    for field in dataclasses.fields(Settings):
        if field.default is not dataclasses.MISSING:
            assert getattr(from_env, field.name) == field.default, field.name
    assert LocalnetSettings.from_env({}) == LocalnetSettings()


def test_an_empty_url_or_path_means_unset_but_an_empty_number_is_refused():
    blank = settings(CELERY_BROKER_URL="", SOLANA_RPC_URL="", PUBLIC_BASE_URL="", PORT="8080")
    assert blank.celery_broker_url == BASE["REDIS_URL"]
    assert blank.public_base_url == "http://localhost:8080"
    assert blank.ws_allowed_origins == ("http://localhost:8080",)
    assert LocalnetSettings.from_env({"LOCALNET_HOST": ""}).host == "127.0.0.1"
    with pytest.raises(ConfigError, match="PORT must be a whole number, got ''"):
        settings(PORT="")


def test_the_public_base_url_decides_the_default_websocket_origin():
    s = settings(PUBLIC_BASE_URL="https://API.example.com/v1/")
    assert s.public_base_url == "https://API.example.com/v1"
    assert s.ws_allowed_origins == ("https://api.example.com",)
    assert s.public_ws_url == "wss://API.example.com/v1"


def test_the_localnet_reads_its_own_variables_and_the_shared_port_and_seed():
    env = {"LOCALNET_PORT": "9900", "DEX_SEED": "11", "DEX_SWAP_LATENCY_MS": "300-400"}
    localnet = LocalnetSettings.from_env(env)
    assert (localnet.port, localnet.seed) == (9900, 11)
    assert localnet.swap_latency == LatencyRange(300, 400)
    engine = settings(**env)
    assert (engine.localnet_port, engine.dex_seed) == (9900, 11)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEX_SWAP_LATENCY_MS", "400-300"),
        ("DEX_EXPIRY_RATE", "1.5"),
        ("LOCALNET_SLOT_MS", "9"),
    ],
)
def test_a_bad_localnet_value_stops_it_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        LocalnetSettings.from_env({name: value})


def test_a_secret_stays_out_of_the_settings_repr():
    assert "s3cret" not in repr(settings(FLOWER_BASIC_AUTH="operator:s3cret"))
