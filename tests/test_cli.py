"""The command line against the real servers: set up a sale, see errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.settings import Settings


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    assert settings.redis_url and settings.database_url
    environ = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "PARKING_ACCESS_CODE_MEMORY_KIB": "64",
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_sets_up_and_arms_sale(settings: Settings, tmp_path: Path) -> None:
    spaces = tmp_path / "spaces.csv"
    spaces.write_text("label,zone,level,kind,price_yuan\nE-108,E,B1,standard,10800\n")
    people = tmp_path / "people.csv"
    people.write_text(
        "registration_no,name,phone,access_code,limit\nR1,王伟,13800001234,123456,1\n"
    )

    created = cli(
        settings,
        "create-sale",
        "--name=CLI sale",
        "--zones=E",
        "--opens-in=3600",
    )
    sale = created.stdout.strip()
    imported = cli(settings, "import-spaces", sale, str(spaces))
    registered = cli(settings, "import-registrants", sale, str(people))
    armed = cli(settings, "arm", sale)
    reconciled = cli(settings, "reconcile", sale)

    assert created.returncode == 0, created.stderr
    assert sale.isdigit()
    assert imported.returncode == 0
    assert "imported 1 space(s)" in imported.stdout
    assert registered.returncode == 0
    assert armed.returncode == 0, armed.stderr
    assert "armed" in armed.stdout
    assert reconciled.returncode == 0
    assert "agree" in reconciled.stdout


def test_cli_import_lists_bad_lines(settings: Settings, tmp_path: Path) -> None:
    sale = cli(
        settings, "create-sale", "--name=Bad", "--zones=A", "--opens-in=60"
    ).stdout.strip()
    spaces = tmp_path / "spaces.csv"
    spaces.write_text(
        "label,zone,level,kind,price_yuan\n"
        "A-1,A,B1,standard,100\n"
        "A-2,Q,B1,standard,100\n"
        "A-3,A,B1,standard,free\n"
    )

    result = cli(settings, "import-spaces", sale, str(spaces))

    assert result.returncode == 1
    assert "nothing was imported" in result.stderr
    assert "line 3 (zone)" in result.stderr
    assert "line 4 (price_yuan)" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_import_rejects_nul(settings: Settings, tmp_path: Path) -> None:
    sale = cli(
        settings, "create-sale", "--name=Nul", "--zones=A", "--opens-in=60"
    ).stdout.strip()
    people = tmp_path / "people.csv"
    people.write_text(
        "registration_no,name,phone,access_code,limit\nR1,Wang\x00,13800001234,abcd,1\n"
    )

    result = cli(settings, "import-registrants", sale, str(people))

    assert result.returncode == 1
    assert "line 2 (name)" in result.stderr
    assert "control characters" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["create-sale", "--name=X", "--zones=A", "--opens-in=1e20"], "--opens-in"),
        (["create-sale", "--name=X", "--zones=A", "--opens-in=nan"], "--opens-in"),
        (
            [
                "create-sale",
                "--name=X",
                "--zones=A",
                "--opens-in=1",
                "--duration-minutes=inf",
            ],
            "--duration-minutes",
        ),
        (
            [
                "create-sale",
                "--name=X",
                "--zones=A",
                "--opens-in=1",
                "--payment-hours=1e-7",
            ],
            "--payment-hours",
        ),
        (["import-spaces", "99999999999999999999", "spaces.csv"], "sale"),
        (["import-registrants", "0", "people.csv"], "sale"),
        (["arm", "\u00b2"], "sale"),
        (["reconcile", "-1"], "sale"),
        (["verify-audit", "9223372036854775808"], "sale"),
        (["demo", "--opens-in=1e300"], "--opens-in"),
    ],
)
def test_cli_rejects_out_of_range_argument(
    settings: Settings, args: list[str], option: str
) -> None:
    result = cli(settings, *args)

    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("parking-sale")
    assert f"error: argument {option}: " in last_line
    assert "Traceback" not in result.stderr


def test_cli_missing_file(settings: Settings) -> None:
    result = cli(settings, "import-spaces", "1", "/nonexistent/spaces.csv")

    assert result.returncode == 1
    assert "cannot read /nonexistent/spaces.csv" in result.stderr


def test_cli_unknown_sale(settings: Settings) -> None:
    result = cli(settings, "arm", "987654")

    assert result.returncode == 1
    assert "Sale 987654 does not exist" in result.stderr


def test_cli_bad_sale_fields(settings: Settings) -> None:
    result = cli(
        settings, "create-sale", "--name=X", "--zones=A", "--opens-in=1", "--limit=0"
    )

    assert result.returncode == 1
    assert "limit must be between 1 and 100" in result.stderr


def test_cli_needs_urls() -> None:
    environ = {
        k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")
    }
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "REDIS_URL and DATABASE_URL must be set" in result.stderr


def test_cli_demo_uncreatable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    environ = {
        k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")
    }

    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", f"--data-dir={blocker}/data"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert f"cannot create the data folder {blocker}/data" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        env={**os.environ, "PARKING_PORT": "x"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "PARKING_PORT" in result.stderr


def test_serve_two_workers_sums_metrics(settings: Settings) -> None:
    import httpx

    from app.embedded import free_port

    assert settings.redis_url and settings.database_url
    port = free_port()
    environ = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "PARKING_LOG_LEVEL": "warning",
    }
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", f"--port={port}", "--workers=2"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.1)
        for _ in range(20):
            httpx.get(f"{url}/livez")

        # Each worker hands its counts to the shared files once a second,
        # so a scrape may lag the other worker by that much.
        deadline = time.monotonic() + 10
        while True:
            scraped = httpx.get(f"{url}/metrics")
            assert scraped.status_code == 200
            count = next(
                (
                    line
                    for line in scraped.text.splitlines()
                    if line.startswith(
                        'parking_request_duration_seconds_count{endpoint="live"}'
                    )
                ),
                "absent 0",
            )
            if float(count.split()[-1]) >= 20 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=60)

    assert float(count.split()[-1]) >= 20


def test_cli_unknown_sale_reconcile_and_verify(settings: Settings) -> None:
    reconciled = cli(settings, "reconcile", "987654")
    verified = cli(settings, "verify", "987654")

    assert reconciled.returncode == 1
    assert "Sale 987654 does not exist" in reconciled.stderr
    assert verified.returncode == 1
    assert "Sale 987654 does not exist" in verified.stderr


def test_cli_unreachable_postgres() -> None:
    environ = {
        **os.environ,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "reconcile", "1"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "cannot reach Redis or Postgres" in result.stderr
    assert "Traceback" not in result.stderr
