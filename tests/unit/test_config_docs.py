"""docs/configuration.md and `.env.example` are generated from the settings' declarations."""

import dataclasses

from dotenv import dotenv_values

from order_engine.config import PROJECT_ROOT, Settings
from order_engine.localnet.config import LocalnetSettings
from order_engine.tools import config_docs


def test_docs_configuration_md_is_what_the_declarations_render():
    committed = config_docs.TABLE_PATH.read_text()
    assert committed == config_docs.render_table(), "out of date: run `make config-docs`"


def test_env_example_is_what_the_declarations_render():
    committed = config_docs.ENV_EXAMPLE_PATH.read_text()
    assert committed == config_docs.render_env_example(), "out of date: run `make config-docs`"


def test_check_mode_passes_on_the_committed_files_and_fails_on_a_stale_one(tmp_path, monkeypatch):
    assert config_docs.main(["--check"]) == 0
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration\n")
    monkeypatch.setattr(config_docs, "TABLE_PATH", tmp_path / "configuration.md")
    monkeypatch.setattr(config_docs, "PROJECT_ROOT", tmp_path)
    assert config_docs.main(["--check"]) == 1
    assert stale.read_text() == "# Configuration\n"


def test_every_setting_is_declared_once_with_a_one_line_description():
    declared = config_docs.declarations()
    variables = [o.variable for o in declared]
    assert len(variables) == len(set(variables))
    for option in declared:
        assert option.doc.strip(), option.variable
        assert "\n" not in option.doc, option.variable


def test_every_field_of_both_settings_is_documented():
    documented = {o.variable for o in config_docs.declarations()}
    for cls in (Settings, LocalnetSettings):
        for field in dataclasses.fields(cls):
            assert field.metadata["option"].variable in documented, field.name


def test_the_generated_files_name_no_path_of_this_machine():
    for text in config_docs.outputs().values():
        assert str(PROJECT_ROOT) not in text


def test_every_line_of_env_example_uncommented_is_a_configuration_both_accept(tmp_path):
    uncommented = [
        line.removeprefix("# ")
        for line in config_docs.ENV_EXAMPLE_PATH.read_text().splitlines()
        if line.startswith("# ") and "=" in line.split(" ", 2)[1]
    ]
    dotenv_file = tmp_path / ".env"
    dotenv_file.write_text("\n".join(uncommented) + "\n")
    env = {k: v for k, v in dotenv_values(dotenv_file).items() if v is not None}
    assert len(env) == len(uncommented)
    settings = Settings.from_env(env)
    assert settings.celery_broker_url.startswith("amqp://")
    assert LocalnetSettings.from_env(env).port == settings.localnet_port
