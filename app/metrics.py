"""Prometheus metrics: grab outcomes, request latency, store errors, lag.

Counting happens on the hot path, so each recording function is a dict
lookup and one increment, and all of them do nothing when metrics are off
(`PARKING_METRICS=false`, used by the benchmark to show their cost). Gauges
that need a query (persister lag, holds by status) are computed when
`/metrics` is scraped. With several uvicorn workers, `parking-sale serve`
sets PROMETHEUS_MULTIPROC_DIR so that a scrape of any worker sums them all.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

GRAB_OUTCOMES = Counter(
    "parking_grab_outcomes_total",
    "Grab requests by outcome (granted, space_taken, limit_reached, ...).",
    ["outcome"],
)
REQUEST_SECONDS = Histogram(
    "parking_request_duration_seconds",
    "Time from request to the end of the response, by endpoint.",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
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
_outcomes: dict[str, Counter] = {}
_endpoints: dict[str, Histogram] = {}


def count_grab(outcome: str) -> None:
    if not switch.enabled:
        return
    child = _outcomes.get(outcome)
    if child is None:
        child = _outcomes[outcome] = GRAB_OUTCOMES.labels(outcome)
    child.inc()


def observe_request(endpoint: str, seconds: float) -> None:
    if not switch.enabled:
        return
    child = _endpoints.get(endpoint)
    if child is None:
        child = _endpoints[endpoint] = REQUEST_SECONDS.labels(endpoint)
    child.observe(seconds)


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


def _clock() -> type[float] | object:
    import time

    return time.perf_counter
