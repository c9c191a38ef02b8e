"""PNG chart of a launch run: requests per second and p99 latency per second.

Reads the stats history that Locust writes with `--csv-full-history`
(`stats_stats_history.csv`, one row per entry and second) and plots its
"Aggregated" rows, with the launch instant marked. Requests per second come
from the growth of the total request count between rows, because Locust's
own "Requests/s" column averages the last 10 seconds and flattens the spike.
The p99 column is Locust's, over a window of about the last 10 seconds.

Needs matplotlib (a dev extra); importing this module raises ImportError
without it. It draws with the Agg backend, so it needs no display.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

# Imported after use("Agg"), so pyplot never starts a GUI backend.
from matplotlib import pyplot


@dataclasses.dataclass(frozen=True, slots=True)
class Second:
    """One second of the run: its Unix time, requests sent in it, p99 in ms."""

    timestamp: float
    requests_per_second: float
    p99_ms: float


_COLUMNS = ("Timestamp", "Name", "99%", "Total Request Count")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_history(path: Path) -> list[Second]:
    """Return the run's seconds from Locust's stats history CSV, in order."""
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        missing = set(_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{path} is missing the columns {sorted(missing)}; expected "
                "the stats history CSV that Locust writes with --csv"
            )
        rows = [row for row in reader if row["Name"] == "Aggregated"]
    rows.sort(key=lambda row: _number(row["Timestamp"]))

    seconds: list[Second] = []
    previous_time: float | None = None
    previous_count = 0.0
    for row in rows:
        timestamp = _number(row["Timestamp"])
        count = _number(row["Total Request Count"])
        if previous_time is not None and timestamp > previous_time:
            rate = (count - previous_count) / (timestamp - previous_time)
            seconds.append(Second(timestamp, rate, _number(row["99%"])))
        if previous_time is None or timestamp > previous_time:
            previous_time, previous_count = timestamp, count
    return seconds


def write_chart(
    history: Path, png: Path, launch_at: float | None, title: str = ""
) -> int:
    """Draw the run in `history` into `png`; return how many seconds it shows.

    `launch_at` is the sale's opening as a Unix time: the x axis counts
    seconds from it, and a vertical line marks it. Without it the axis
    starts at the first row. Raises ValueError if the CSV has fewer than two
    "Aggregated" rows.
    """
    seconds = read_history(history)
    if not seconds:
        raise ValueError(
            f"{history} has fewer than two 'Aggregated' rows; run Locust with "
            "--csv and --csv-full-history for at least two seconds"
        )
    origin = launch_at if launch_at is not None else seconds[0].timestamp
    x = [s.timestamp - origin for s in seconds]

    figure, (rate_axes, p99_axes) = pyplot.subplots(
        2, 1, sharex=True, figsize=(10, 6), dpi=100
    )
    try:
        # A row counts the requests of the second before it, hence steps-pre.
        rate_axes.plot(
            x,
            [s.requests_per_second for s in seconds],
            color="tab:blue",
            drawstyle="steps-pre",
        )
        rate_axes.set_ylabel("requests per second")
        rate_axes.set_title(title or "Launch run")
        p99_axes.plot(x, [s.p99_ms for s in seconds], color="tab:red")
        p99_axes.set_ylabel("p99 ms (last ~10 s)")
        p99_axes.set_xlabel(
            "seconds from the launch" if launch_at is not None else "seconds"
        )
        for axes in (rate_axes, p99_axes):
            axes.grid(True, alpha=0.3)
            if launch_at is not None:
                axes.axvline(0, color="black", linestyle="--", linewidth=1)
        if launch_at is not None:
            rate_axes.annotate(
                "launch",
                xy=(0, 1),
                xycoords=("data", "axes fraction"),
                xytext=(4, -12),
                textcoords="offset points",
            )
        figure.tight_layout()
        figure.savefig(png, format="png")
    finally:
        pyplot.close(figure)
    return len(seconds)
