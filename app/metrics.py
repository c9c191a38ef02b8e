"""Prometheus metrics: grab outcomes, request latency, store errors, lag.

Counting happens on the hot path, so grab outcomes and request latencies
are added up in plain dictionaries and handed to the Prometheus client in
one go by `flush`: every second (`run_flusher`, started with the service)
and before each scrape. All recording does nothing when metrics are off
(`PARKING_METRICS=false`, used by the benchmark to show their cost). Gauges
that need a query (persister lag, holds by status) are computed when
`/metrics` is scraped. With several uvicorn workers, `parking-sale serve`
sets PROMETHEUS_MULTIPROC_DIR so that a scrape of any worker sums them all.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

GRAB_OUTCOMES = Counter(
    "parking_grab_outcomes_total",
    "Grab requests by outcome (granted, space_taken, limit_reached, ...).",
    ["outcome"],
)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
REQUEST_SECONDS = Histogram(
    "parking_request_duration_seconds",
    "Time from request to the end of the response, by endpoint.",
    ["endpoint"],
    buckets=BUCKETS,
)
STORE_ERRORS = Counter(
    "parking_store_errors_total",
    "Errors talking to Redis or Postgres that were caught and answered.",
    ["store", "operation"],
)
PERSISTER_LAG = Gauge(
    "parking_persister_lag_grants",
    "Grants in a sale's stream not yet acknowledged by the persister.",
    ["sale"],
    multiprocess_mode="max",
)
HOLDS = Gauge(
    "parking_holds",
    "Holds in Postgres by sale and status.",
    ["sale", "status"],
    multiprocess_mode="max",
)


class _Switch:
    enabled = True


switch = _Switch()
# Counts since the last flush: outcomes, and per endpoint the number of
# requests in each latency bucket (the last one is +Inf) and their sum.
_outcomes: dict[str, int] = {}
_latencies: dict[str, list[int]] = {}
_latency_sums: dict[str, float] = {}


def count_grab(outcome: str) -> None:
    if switch.enabled:
        _outcomes[outcome] = _outcomes.get(outcome, 0) + 1


def observe_request(endpoint: str, seconds: float) -> None:
    if not switch.enabled:
        return
    counts = _latencies.get(endpoint)
    if counts is None:
        counts = _latencies[endpoint] = [0] * (len(BUCKETS) + 1)
        _latency_sums[endpoint] = 0.0
    counts[bisect.bisect_left(BUCKETS, seconds)] += 1
    _latency_sums[endpoint] += seconds


def flush() -> None:
    """Add the counts gathered since the last call to the Prometheus metrics."""
    for outcome, count in _outcomes.items():
        GRAB_OUTCOMES.labels(outcome).inc(count)
    _outcomes.clear()
    for endpoint, counts in _latencies.items():
        child = REQUEST_SECONDS.labels(endpoint)
        # The client has no call for many observations at once. Its own
        # observe() adds to these per-bucket values, and tests/test_metrics.py
        # compares the result with a histogram fed by observe().
        child._sum.inc(_latency_sums[endpoint])
        for bucket, count in zip(child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)
    _latencies.clear()
    _latency_sums.clear()


async def run_flusher(interval_seconds: float = 1.0) -> None:
    """Flush every `interval_seconds` until cancelled, then once more."""
    try:
        while True:
            await asyncio.sleep(interval_seconds)
            flush()
    finally:
        with contextlib.suppress(Exception):
            flush()


def count_store_error(store: str, operation: str) -> None:
    if switch.enabled:
        STORE_ERRORS.labels(store, operation).inc()


def _endpoint_name(scope: Scope) -> str:
    endpoint = scope.get("endpoint")
    if endpoint is not None:
        return str(getattr(endpoint, "__name__", "other"))
    path: str = scope.get("path", "")
    return "static" if path.startswith("/static/") else "unmatched"


class MetricsMiddleware:
    """Times every routed request; the fast grab path times itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not switch.enabled:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get(
                "more_body", False
            ):
                observe_request(_endpoint_name(scope), time.perf_counter() - started)

        await self.app(scope, receive, timed_send)
