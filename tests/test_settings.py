"""Settings: defaults, casting and validation with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings({}, env_file=None)

    assert settings.redis_url is None
    assert settings.database_url is None
    assert settings.port == 8000
    assert settings.run_persister is True
    assert settings.postgres_timeout_seconds == 2.0


def test_values_are_cast() -> None:
    settings = load_settings(
        {
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "PARKING_PORT": "9000",
            "PARKING_RUN_PERSISTER": "false",
            "PARKING_LOG_FORMAT": "JSON",
        },
        env_file=None,
    )

    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert settings.port == 9000
    assert settings.run_persister is False
    assert settings.log_format == "json"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PARKING_PORT", "eighty"),
        ("PARKING_PORT", "70000"),
        ("PARKING_WORKERS", "0"),
        ("PARKING_RUN_PERSISTER", "maybe"),
        ("PARKING_LOG_FORMAT", "xml"),
        ("PARKING_POSTGRES_TIMEOUT_SECONDS", "0"),
    ],
)
def test_bad_value_names_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({name: value}, env_file=None)

    assert name in str(caught.value)
    assert value in str(caught.value)


def test_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PARKING_PORT=8123\n")

    settings = load_settings({}, env_file=str(env_file))

    assert settings.port == 8123
