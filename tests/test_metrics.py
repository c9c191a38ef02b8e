"""Counts gathered on the hot path reach Prometheus unchanged."""

from __future__ import annotations

import asyncio
import uuid

from prometheus_client import CollectorRegistry, Histogram

from app import metrics

# Below, between and above the buckets, and exactly on two bounds.
SECONDS = [0.0004, 0.001, 0.003, 0.003, 0.07, 0.25, 4.0, 9.5]


def samples(histogram: Histogram, endpoint: str) -> dict[tuple[str, str], float]:
    found = {}
    for family in histogram.collect():
        for sample in family.samples:
            if sample.labels.get("endpoint") == endpoint and not sample.name.endswith(
                "_created"
            ):
                found[sample.name, sample.labels.get("le", "")] = sample.value
    return found


def test_flushed_latencies_equal_observed_ones() -> None:
    endpoint = f"test-{uuid.uuid4().hex}"
    reference = Histogram(
        "reference_seconds",
        "the same buckets, observed one by one",
        ["endpoint"],
        buckets=metrics.BUCKETS,
        registry=CollectorRegistry(),
    )
    for seconds in SECONDS:
        reference.labels(endpoint).observe(seconds)
        metrics.observe_request(endpoint, seconds)

    metrics.flush()

    ours = samples(metrics.REQUEST_SECONDS, endpoint)
    theirs = samples(reference, endpoint)
    renamed = {
        (name.replace("reference_seconds", "parking_request_duration_seconds"), le): v
        for (name, le), v in theirs.items()
    }
    assert ours == renamed
    assert ours["parking_request_duration_seconds_count", ""] == len(SECONDS)
    assert ours["parking_request_duration_seconds_bucket", "0.001"] == 2


def test_flushed_outcomes_add_up() -> None:
    outcome = f"test-{uuid.uuid4().hex}"
    other = f"{outcome}-other"
    for _ in range(3):
        metrics.count_grab(outcome)
    metrics.count_grab(other)
    before_flush = metrics.GRAB_OUTCOMES.labels(outcome)._value.get()

    metrics.flush()
    metrics.flush()  # a second flush adds nothing

    assert before_flush == 0
    assert metrics.GRAB_OUTCOMES.labels(outcome)._value.get() == 3
    assert metrics.GRAB_OUTCOMES.labels(other)._value.get() == 1


def test_nothing_is_counted_when_switched_off() -> None:
    outcome = f"test-{uuid.uuid4().hex}"
    metrics.switch.enabled = False
    try:
        metrics.count_grab(outcome)
        metrics.observe_request(outcome, 0.01)
    finally:
        metrics.switch.enabled = True
    metrics.flush()

    assert metrics.GRAB_OUTCOMES.labels(outcome)._value.get() == 0
    assert samples(metrics.REQUEST_SECONDS, outcome) == {}


def test_flusher_flushes_when_cancelled() -> None:
    outcome = f"test-{uuid.uuid4().hex}"

    async def scenario() -> None:
        flusher = asyncio.create_task(metrics.run_flusher(interval_seconds=60))
        await asyncio.sleep(0)
        metrics.count_grab(outcome)
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)

    asyncio.run(scenario())

    assert metrics.GRAB_OUTCOMES.labels(outcome)._value.get() == 1
