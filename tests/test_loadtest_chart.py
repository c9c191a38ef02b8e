"""The launch-run chart, drawn from a small synthetic Locust stats history."""

from __future__ import annotations

import csv
import struct
import sys
from pathlib import Path

import pytest

import app
from app import loadtest_chart, loadtest_runner

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LAUNCH_AT = 1_700_000_010

COLUMNS = [
    "Timestamp",
    "User Count",
    "Type",
    "Name",
    "Requests/s",
    "Failures/s",
    "50%",
    "99%",
    "Total Request Count",
]


def write_history(path: Path) -> None:
    """Write 20 seconds of a run: quiet polling, then a spike at LAUNCH_AT."""
    total = 0
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for second in range(20):
            timestamp = LAUNCH_AT - 10 + second
            sent = 3000 if second in (10, 11) else 50
            total += sent
            # Locust writes N/A before the first response.
            p99 = "N/A"
            if second >= 10:
                p99 = "400"
            elif second > 0:
                p99 = "20"
            writer.writerow(
                [timestamp, 500, "POST", "grab", sent, 0, 10, p99, total - sent]
            )
            writer.writerow([timestamp, 500, "", "Aggregated", sent, 0, 10, p99, total])


def png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_read_history_rates_from_counts(tmp_path: Path) -> None:
    history = tmp_path / "stats_stats_history.csv"
    write_history(history)

    seconds = loadtest_chart.read_history(history)

    assert len(seconds) == 19
    assert seconds[0].requests_per_second == 50
    assert seconds[9].timestamp == LAUNCH_AT
    assert seconds[9].requests_per_second == 3000
    assert seconds[9].p99_ms == 400


def test_write_chart_valid_png(tmp_path: Path) -> None:
    history = tmp_path / "stats_stats_history.csv"
    write_history(history)
    png = tmp_path / "chart.png"

    drawn = loadtest_chart.write_chart(history, png, LAUNCH_AT, "synthetic launch")

    assert drawn == 19
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    assert png_size(data) == (1000, 600)
    assert 10_000 < len(data) < 2_000_000


def test_write_chart_rejects_other_csv(tmp_path: Path) -> None:
    history = tmp_path / "stats_stats.csv"
    history.write_text("Type,Name,Request Count\nPOST,grab,10\n")

    with pytest.raises(ValueError, match="missing the columns"):
        loadtest_chart.write_chart(history, tmp_path / "chart.png", None)


def test_runner_chart_skipped_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_history(tmp_path / "stats_stats_history.csv")
    # None in sys.modules makes the next import of that name raise ImportError;
    # the package attribute goes too, or `from app import ...` would find it.
    monkeypatch.setitem(sys.modules, "app.loadtest_chart", None)
    monkeypatch.delattr(app, "loadtest_chart")

    loadtest_runner.write_chart(tmp_path, LAUNCH_AT, "no matplotlib")

    assert "chart.png skipped" in capsys.readouterr().out
    assert not (tmp_path / "chart.png").exists()


def test_runner_chart_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_history(tmp_path / "stats_stats_history.csv")

    loadtest_runner.write_chart(tmp_path, LAUNCH_AT, "launch")

    assert (tmp_path / "chart.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "wrote" in capsys.readouterr().out
