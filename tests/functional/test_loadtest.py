"""The launch load test: its demand model, and a short run that verifies.

The run goes through `parking-sale loadtest` as an engineer would: a sale of
50 spaces and 300 buyers on the test servers, one service worker, Locust
headless on loopback, then the verifier. Locust stops by itself once every
buyer is done, and the command kills it after a fixed bound otherwise.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from app import cli
from app.settings import Settings
from loadtest.demand import MISBEHAVIOURS, Demand, misbehaviour, taken_labels


def _spaces(count: int) -> list[dict[str, object]]:
    return [
        {"label": f"A-{i:03d}", "price_fen": 1_000_000 + i, "level": "B1", "zone": "A"}
        for i in range(count)
    ]


def test_demand_ranks_cheapest_first() -> None:
    demand = Demand.from_spaces(list(reversed(_spaces(5))), exponent=1.1)

    assert demand.ranked == ("A-000", "A-001", "A-002", "A-003", "A-004")


def test_demand_shortlist_distinct_and_skewed() -> None:
    demand = Demand.from_spaces(_spaces(600), exponent=1.1)
    rng = random.Random(1)
    first_choices: Counter[str] = Counter()

    for _ in range(2000):
        shortlist = demand.shortlist(rng, 10)
        assert len(shortlist) == 10
        assert len(set(shortlist)) == 10
        first_choices[shortlist[0]] += 1

    assert first_choices.most_common(1)[0][0] == "A-000"
    assert first_choices["A-000"] > 5 * first_choices["A-099"]


def test_demand_shortlist_capped_by_spaces() -> None:
    demand = Demand.from_spaces(_spaces(3), exponent=1.1)

    assert sorted(demand.shortlist(random.Random(2), 10)) == ["A-000", "A-001", "A-002"]


def test_misbehaviour_share_and_kinds() -> None:
    kinds = [misbehaviour(index, 0.04) for index in range(1000)]

    assert sum(kind is not None for kind in kinds) == 40
    assert set(kinds) - {None} == set(MISBEHAVIOURS)
    assert misbehaviour(24, 0.0) is None


def test_taken_labels_reads_bits_msb_first() -> None:
    positions = {"A": 0, "B": 1, "H": 7, "I": 8, "Z": 40}

    assert taken_labels(bytes([0b1000_0001, 0b1000_0000]), positions) == {
        "A",
        "H",
        "I",
    }


def _diagnostics(output: Path) -> str:
    """Return the verifier's report and Locust's failures, for a failed run."""
    texts = []
    for name in ("verify.txt", "stats_failures.csv", "stats_exceptions.csv"):
        path = output / name
        texts.append(f"{name}:\n{path.read_text() if path.exists() else 'missing'}")
    return "\n".join(texts)


@pytest.mark.timeout(240)
def test_loadtest_command_passes_verifier(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.redis_url and settings.database_url
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    output = tmp_path / "run"

    code = cli.main(
        [
            "loadtest",
            "--spaces",
            "50",
            "--buyers",
            "300",
            "--workers",
            "1",
            "--spawn-rate",
            "300",
            "--lead-seconds",
            "8",
            "--output",
            str(output),
        ]
    )

    assert code == 0, _diagnostics(output)
    assert (output / "verify.txt").read_text().strip().endswith("passed")
    assert (output / "report.html").stat().st_size > 0
    with (output / "stats_stats.csv").open(newline="") as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    assert int(rows["before launch: POST session"]["Request Count"]) == 300
    assert int(rows["launch: POST holds 201"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    lines = [
        orjson.loads(line)
        for path in (output / "responses").glob("*.jsonl")
        for line in path.read_bytes().splitlines()
    ]
    won = {line["space"] for line in lines}
    assert len(lines) == len(won)
    assert 45 <= len(won) <= 50
