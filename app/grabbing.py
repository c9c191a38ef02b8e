"""The grab: one Redis script call decides, then the winner is recorded.

Only Redis decides, and it fails closed: if Redis fails, nothing is granted
and the 503 response asks the client to retry with the same idempotency key.
Recording a win waits at most `postgres_timeout_seconds` for Postgres. A win
recorded in time gets 201; otherwise it gets 202 "pending" and the persister
records it from the grant stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from app import errors, metrics
from app.catalog import Catalog, SaleView
from app.holds import Grant
from app.ratelimit import TokenBuckets
from app.recorder import GrantRecorder
from app.redis_store import GrabReply, RedisStore
from app.types import DbPool

logger = logging.getLogger(__name__)

MAX_RANKED = 5


@dataclasses.dataclass(frozen=True, slots=True)
class GrabAnswer:
    status: int
    body: dict[str, Any]
    replayed: bool

    def headers(self) -> dict[str, str] | None:
        return {"Idempotent-Replayed": "true"} if self.replayed else None


def _iso(milliseconds: int) -> str:
    return dt.datetime.fromtimestamp(milliseconds / 1000, tz=dt.UTC).isoformat()


class GrabService:
    def __init__(
        self,
        store: RedisStore,
        pool: DbPool,
        catalog: Catalog,
        limiter: TokenBuckets,
        postgres_timeout: float,
    ) -> None:
        self.store = store
        self.pool = pool
        self.catalog = catalog
        self.limiter = limiter
        self.postgres_timeout = postgres_timeout
        self.recorder = GrantRecorder(pool, flush_timeout=postgres_timeout * 2)
        self.outcomes: dict[str, int] = {}

    async def grab(
        self,
        sale_id: int,
        registration_no: str,
        idempotency_key: str,
        labels: list[str],
    ) -> GrabAnswer:
        """Hold the first free space of `labels` and return the win or the loss.

        Losses are returned, not raised, because at launch nearly every click
        loses. Only a refused request (429) and a store that is down (503)
        raise an `AppError`.
        """
        if not self.limiter.allow((sale_id, registration_no)):
            retry = self.limiter.retry_after((sale_id, registration_no))
            self._count("too_many_requests")
            raise errors.TooManyRequests(
                f"Too many requests; wait {retry:.1f} s before trying again.",
                retry_after=round(retry, 2),
            )
        try:
            reply = await self.store.grab(
                sale_id, registration_no, idempotency_key, labels
            )
        except RedisError as exc:
            raise self._unavailable(sale_id, registration_no, exc) from None
        self._count(reply.outcome)
        if reply.outcome != "granted":
            return self._loss(reply, labels)
        return await self._record(sale_id, registration_no, reply)

    def _unavailable(
        self, sale_id: int, registration_no: str, exc: RedisError
    ) -> errors.ServiceUnavailable:
        self._count("redis_error")
        metrics.count_store_error("redis", "grab")
        logger.error(
            "grab_redis_failed",
            extra={"sale_id": sale_id, "buyer": registration_no, "error": repr(exc)},
        )
        return errors.ServiceUnavailable(
            "The sale could not be reached; retry with the same "
            "Idempotency-Key, which never grants twice."
        )

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        metrics.count_grab(outcome)

    async def _record(
        self, sale_id: int, registration_no: str, reply: GrabReply
    ) -> GrabAnswer:
        grant = Grant(
            hold_id=reply.hold_id,
            sale_id=sale_id,
            label=reply.label,
            registration_no=registration_no,
            granted_ms=reply.granted_ms,
            deadline_ms=reply.deadline_ms,
        )
        recorded = False
        try:
            recorded = await asyncio.wait_for(
                self.recorder.record(grant), self.postgres_timeout
            )
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        ) as exc:
            metrics.count_store_error("postgres", "record_grant")
            logger.warning(
                "grant_recording_deferred",
                extra={"sale_id": sale_id, "hold": grant.hold_id, "error": repr(exc)},
            )
        if recorded:
            view = await self.catalog.view_or_stale(sale_id, self.postgres_timeout)
        else:
            view = self.catalog.cached(sale_id)
        body = self._hold_body(reply, view, recorded)
        return GrabAnswer(201 if recorded else 202, body, reply.replayed)

    @staticmethod
    def _hold_body(
        reply: GrabReply, view: SaleView | None, recorded: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "hold": reply.hold_id,
            "status": "held" if recorded else "pending",
            "recorded": recorded,
            "space": reply.label,
            "granted_at": _iso(reply.granted_ms),
            "deadline": _iso(reply.deadline_ms),
        }
        space = view.by_label.get(reply.label) if view else None
        if space is not None:
            body.update(
                zone=space.zone,
                level=space.level,
                kind=space.kind,
                amount_fen=space.price_fen,
                amount_yuan=space.price_fen / 100,
            )
        if recorded:
            body["message"] = f"You won {reply.label}. Pay before the deadline."
        else:
            body["message"] = (
                f"{reply.label} is held for you and is being recorded; it will "
                "appear under your holds shortly."
            )
        return body

    @classmethod
    def _loss(cls, reply: GrabReply, labels: list[str]) -> GrabAnswer:
        error = cls._loss_error(reply, labels)
        return GrabAnswer(error.status, error.body(), reply.replayed)

    @staticmethod
    def _loss_error(reply: GrabReply, labels: list[str]) -> errors.AppError:
        outcome = reply.outcome
        replayed = {"replayed": True} if reply.replayed else {}
        if outcome == "space_taken":
            which = labels[0] if len(labels) == 1 else ", ".join(labels)
            return errors.SpaceTaken(
                f"{which} {'is' if len(labels) == 1 else 'are all'} already taken.",
                spaces=labels,
                **replayed,
            )
        if outcome == "limit_reached":
            return errors.LimitReached(
                f"You already hold {reply.limit} space(s), your limit in this sale.",
                limit=reply.limit,
                **replayed,
            )
        if outcome == "unknown_space":
            return errors.UnknownSpace(
                f"Space {reply.label!r} does not exist in this sale.",
                space=reply.label,
                **replayed,
            )
        if outcome == "not_registered":
            return errors.NotRegistered(
                "You are not registered for this sale.", **replayed
            )
        if outcome == "sale_not_open":
            wait = max(0, reply.opens_ms - reply.now_ms)
            return errors.SaleNotOpen(
                f"The sale opens at {_iso(reply.opens_ms)}, in {wait / 1000:.3f} s.",
                opens_at=_iso(reply.opens_ms),
                server_time=_iso(reply.now_ms),
            )
        if outcome == "sale_paused":
            return errors.SalePaused(
                "The sale is paused by the sales office; try again when it resumes."
            )
        if outcome == "sale_closed":
            return errors.SaleClosed("The sale is closed.", **replayed)
        if outcome == "not_armed":
            return errors.SaleNotOpen(
                "The sale has not been prepared for grabbing yet."
            )
        logger.error("grab_unexpected_reply", extra={"outcome": outcome})
        return errors.ServiceUnavailable("The sale answered unexpectedly; try again.")
