"""Settings, read once from environment variables and an optional `.env` file.

Every other module receives a `Settings` object; nothing else reads the
environment. `config/defaults.env` documents each variable and its default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

from starlette.config import Config, EnvironError

T = TypeVar("T", int, float)


# Shown to buyers as where to pay; each deployment sets its own.
DEMO_SALES_OFFICE = "Sales office, Riverside Gardens, 1 Riverside Road (demo address)"


class SettingsError(ValueError):
    """A variable is set to a value that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Settings:
    redis_url: str | None
    database_url: str | None
    secret_key: str | None
    host: str
    port: int
    workers: int
    log_format: str
    log_level: str
    session_ttl_seconds: int
    postgres_timeout_seconds: float
    run_persister: bool
    run_expirer: bool
    expire_interval_seconds: float
    idempotency_ttl_seconds: int
    rate_per_second: float
    rate_burst: int
    max_body_bytes: int
    max_upload_bytes: int
    availability_cache_ms: int
    access_code_memory_kib: int
    staff_session_ttl_seconds: int
    sales_office_address: str
    # Grab levers, switchable for benchmarks: answer grabs before the router,
    # and send them over one pipelined connection instead of redis-py's pool.
    grab_fast_path: bool = True
    grab_lean_client: bool = True
    # Prometheus counters and histograms; off only to measure their cost.
    metrics: bool = True
    # Password for `parking-sale add-staff` in scripts; kept out of repr.
    staff_password: str | None = dataclasses.field(default=None, repr=False)

    def with_urls(self, redis_url: str, database_url: str) -> Settings:
        """Return a copy that points at the given servers."""
        return dataclasses.replace(self, redis_url=redis_url, database_url=database_url)


def _ranged(
    config: Config, name: str, cast: Callable[[str], T], default: T, low: T, high: T
) -> T:
    try:
        value = config(name, cast=cast, default=default)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {exc}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value!r}")
    return value


def _choice(config: Config, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = config(name, default=default).lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _optional(config: Config, name: str) -> str | None:
    value = config(name, default="")
    return value or None


def _text(config: Config, name: str, default: str, max_length: int) -> str:
    value = config(name, default=default).strip()
    if not 1 <= len(value) <= max_length:
        raise SettingsError(
            f"{name} must have 1 to {max_length} characters, got {len(value)}"
        )
    return value


def _flag(config: Config, name: str, default: bool) -> bool:
    try:
        return bool(config(name, cast=bool, default=default))
    except ValueError:
        raise SettingsError(
            f"{name} must be true/false, 1/0 or yes/no, got {config(name)!r}"
        ) from None


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | None = ".env"
) -> Settings:
    """Read and validate all settings; raise `SettingsError` naming the variable."""
    if env_file is not None and not os.path.isfile(env_file):
        env_file = None
    config = Config(env_file=env_file, environ=environ or os.environ)
    try:
        return Settings(
            redis_url=_optional(config, "REDIS_URL"),
            database_url=_optional(config, "DATABASE_URL"),
            secret_key=_optional(config, "PARKING_SECRET_KEY"),
            host=config("PARKING_HOST", default="127.0.0.1"),
            port=_ranged(config, "PARKING_PORT", int, 8000, 0, 65535),
            workers=_ranged(config, "PARKING_WORKERS", int, 1, 1, 64),
            log_format=_choice(config, "PARKING_LOG_FORMAT", "text", ("text", "json")),
            log_level=_choice(
                config,
                "PARKING_LOG_LEVEL",
                "info",
                ("debug", "info", "warning", "error"),
            ),
            session_ttl_seconds=_ranged(
                config, "PARKING_SESSION_TTL_SECONDS", int, 43200, 60, 604800
            ),
            postgres_timeout_seconds=_ranged(
                config, "PARKING_POSTGRES_TIMEOUT_SECONDS", float, 2.0, 0.05, 60.0
            ),
            run_persister=_flag(config, "PARKING_RUN_PERSISTER", True),
            run_expirer=_flag(config, "PARKING_RUN_EXPIRER", True),
            grab_fast_path=_flag(config, "PARKING_GRAB_FAST_PATH", True),
            grab_lean_client=_flag(config, "PARKING_GRAB_LEAN_CLIENT", True),
            metrics=_flag(config, "PARKING_METRICS", True),
            expire_interval_seconds=_ranged(
                config, "PARKING_EXPIRE_INTERVAL_SECONDS", float, 30.0, 0.1, 3600.0
            ),
            idempotency_ttl_seconds=_ranged(
                config, "PARKING_IDEMPOTENCY_TTL_SECONDS", int, 86400, 60, 2592000
            ),
            rate_per_second=_ranged(
                config, "PARKING_RATE_PER_SECOND", float, 5.0, 0.1, 10000.0
            ),
            rate_burst=_ranged(config, "PARKING_RATE_BURST", int, 10, 1, 100000),
            max_body_bytes=_ranged(
                config, "PARKING_MAX_BODY_BYTES", int, 4096, 256, 1048576
            ),
            max_upload_bytes=_ranged(
                config, "PARKING_MAX_UPLOAD_BYTES", int, 20971520, 1024, 1073741824
            ),
            availability_cache_ms=_ranged(
                config, "PARKING_AVAILABILITY_CACHE_MS", int, 250, 0, 10000
            ),
            access_code_memory_kib=_ranged(
                config, "PARKING_ACCESS_CODE_MEMORY_KIB", int, 8192, 64, 1048576
            ),
            staff_session_ttl_seconds=_ranged(
                config, "PARKING_STAFF_SESSION_TTL_SECONDS", int, 28800, 60, 604800
            ),
            sales_office_address=_text(
                config, "PARKING_SALES_OFFICE_ADDRESS", DEMO_SALES_OFFICE, 300
            ),
            staff_password=_optional(config, "PARKING_STAFF_PASSWORD"),
        )
    except EnvironError as exc:
        raise SettingsError(str(exc)) from None
