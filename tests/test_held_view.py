"""Each worker's view of held spaces answers only what Redis would answer.

Every test runs real grabs through `GrabService` against the test Redis and
Postgres; two services side by side stand for two workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from app import arming
from app.cancellation import cancel_hold
from app.catalog import Catalog
from app.grabbing import GrabAnswer, GrabService
from app.held_view import HeldViews
from app.ratelimit import TokenBuckets
from app.redis_store import RedisStore
from app.settings import Settings
from tests.office import add_member, stores
from tests.support import SaleSetup, make_sale, run

MAX_AGE = 0.1


class Worker:
    """A grab service with its own view, as in one uvicorn worker."""

    def __init__(
        self,
        pool: object,
        store: RedisStore,
        client: aioredis.Redis,
        max_age: float | None = MAX_AGE,
    ):
        # No max_age: no view, every click goes to Redis.
        self.views = HeldViews(client, max_age) if max_age else None
        self.service = GrabService(
            store,
            pool,  # type: ignore[arg-type]
            Catalog(pool),  # type: ignore[arg-type]
            TokenBuckets(1000, 1000),
            2.0,
            self.views,
        )

    async def click(
        self, setup: SaleSetup, buyer: int, labels: list[str], key: str = ""
    ) -> GrabAnswer:
        return await self.service.grab(
            setup.sale.id,
            setup.buyers[buyer].registration_no,
            key or uuid.uuid4().hex,
            labels,
        )

    async def fresh(self, setup: SaleSetup) -> None:
        assert self.views is not None
        await self.views.refresh(setup.sale.id)

    def would_decide(
        self, setup: SaleSetup, buyer: int, labels: list[str]
    ) -> tuple[str, int] | None:
        assert self.views is not None
        sale_id = setup.sale.id
        view = self.views.current(sale_id)
        return self.views.decide(view, setup.buyers[buyer].registration_no, labels)


@contextlib.asynccontextmanager
async def workers(
    settings: Settings, count: int = 1, max_age: float | None = MAX_AGE
) -> AsyncIterator[tuple[list[Worker], RedisStore]]:
    async with stores(settings) as (pool, store):
        yield [Worker(pool, store, store.client, max_age) for _ in range(count)], store


def test_view_answers_taken_only_for_a_buyer_redis_has_seen(
    settings: Settings,
) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=3))

    async def scenario() -> None:
        async with workers(settings) as ([worker], _):
            assert (await worker.click(setup, 0, ["A-001"])).status == 201
            await worker.fresh(setup)
            # Nobody has been answered by Redis yet but the winner.
            assert worker.would_decide(setup, 1, ["A-001"]) is None

            first = await worker.click(setup, 1, ["A-001"])
            await worker.fresh(setup)

            assert worker.would_decide(setup, 1, ["A-001"]) == ("space_taken", 0)
            again = await worker.click(setup, 1, ["A-001"])
            assert (
                (again.status, again.body)
                == (first.status, first.body)
                == (
                    409,
                    {
                        "error": "space_taken",
                        "message": "A-001 is already taken.",
                        "spaces": ["A-001"],
                    },
                )
            )
            # A free space, an unknown one, or a buyer Redis never answered.
            assert worker.would_decide(setup, 1, ["A-001", "A-002"]) is None
            assert worker.would_decide(setup, 1, ["A-001", "Z-9"]) is None
            assert worker.would_decide(setup, 2, ["A-001"]) is None
            assert worker.service.outcomes == {"granted": 1, "space_taken": 2}
            assert worker.service.decided_by_view == 1

    run(scenario())


def test_view_older_than_max_age_answers_nothing(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=2))

    async def scenario() -> None:
        async with workers(settings) as ([worker], _):
            await worker.click(setup, 0, ["A-001"])
            await worker.click(setup, 1, ["A-001"])
            await worker.fresh(setup)
            view = worker.views.current(setup.sale.id)
            assert view is not None
            buyer = setup.buyers[1].registration_no
            assert worker.views.decide(view, buyer, ["A-001"]) is not None

            await asyncio.sleep(MAX_AGE + 0.02)

            # The refresh that current() starts has not run yet.
            assert worker.views.decide(view, buyer, ["A-001"]) is None

    run(scenario())


def test_released_space_can_be_won_at_once(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=2))
    manager = run(add_member(settings, "manager"))

    async def scenario() -> None:
        # A view that would stay usable for 30 s: only Redis's checks stop it.
        async with workers(settings, max_age=30.0) as ([worker], store):
            won = await worker.click(setup, 0, ["A-001"])
            await worker.click(setup, 1, ["A-001"])
            await worker.fresh(setup)

            async with stores(settings) as (pool, _):
                await cancel_hold(pool, store, won.body["hold"], "test", manager)

            # The view still shows A-001 held, but the click is not rejected.
            assert worker.would_decide(setup, 1, ["A-001"]) == ("space_taken", 0)
            answer = await worker.click(setup, 1, ["A-001"])
            assert answer.status == 201, answer.body
            assert worker.service.decided_by_view == 0

    run(scenario())


def test_limit_is_not_proposed_after_holds_end(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=2))
    manager = run(add_member(settings, "manager"))

    async def scenario() -> None:
        async with workers(settings, max_age=30.0) as ([worker], store):
            await worker.fresh(setup)
            await worker.click(setup, 1, ["A-002"])
            won = await worker.click(setup, 0, ["A-001"])
            await worker.click(setup, 0, ["A-002"])
            await worker.fresh(setup)
            assert worker.would_decide(setup, 0, ["A-002"]) == ("limit_reached", 1)

            async with stores(settings) as (pool, _):
                await cancel_hold(pool, store, won.body["hold"], "test", manager)

            # Without a refresh the view still proposes the limit; Redis does
            # not agree, so the grab script decides: A-002 is taken.
            answer = await worker.click(setup, 0, ["A-002"])
            assert answer.body["error"] == "space_taken"
            assert worker.service.decided_by_view == 0

    run(scenario())


def test_repeat_of_a_win_on_another_worker_gets_the_win(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=2))

    async def scenario() -> None:
        async with workers(settings, count=2) as ([first, second], _):
            # Both workers know both buyers, and buyer 1 holds A-002.
            await first.click(setup, 1, ["A-002"])
            for worker in (first, second):
                await worker.click(setup, 0, ["A-002"])
                await worker.fresh(setup)

            won = await first.click(setup, 0, ["A-001"], key="double")
            # The second worker's view does not have the win yet: it must ask.
            assert second.would_decide(setup, 0, ["A-001"]) is None
            repeat = await second.click(setup, 0, ["A-001"], key="double")
            await second.fresh(setup)
            later = await second.click(setup, 0, ["A-001"], key="double")

            assert won.status == repeat.status == later.status == 201
            assert won.body["hold"] == repeat.body["hold"] == later.body["hold"]
            assert repeat.replayed and later.replayed

    run(scenario())


def test_view_answers_limit_only_on_spaces_held_by_others(
    settings: Settings,
) -> None:
    setup = run(make_sale(settings, spaces=3, buyers=2))

    async def scenario() -> None:
        async with workers(settings) as ([worker], _):
            # Holders are learnt from grants made after the view was loaded.
            await worker.fresh(setup)
            await worker.click(setup, 1, ["A-003"])
            won = await worker.click(setup, 0, ["A-001"], key="win")
            first = await worker.click(setup, 0, ["A-003"])
            await worker.fresh(setup)

            assert worker.would_decide(setup, 0, ["A-003"]) == ("limit_reached", 1)
            again = await worker.click(setup, 0, ["A-003"])
            assert (again.status, again.body) == (first.status, first.body)
            assert first.body["error"] == "limit_reached"
            # Its own space, or a free one: the grab script must answer.
            assert worker.would_decide(setup, 0, ["A-001"]) is None
            assert worker.would_decide(setup, 0, ["A-002"]) is None
            repeat = await worker.click(setup, 0, ["A-001"], key="win")
            assert repeat.status == 201
            assert repeat.body["hold"] == won.body["hold"]

    run(scenario())


def test_ended_hold_clears_what_the_view_learnt_of_limits(
    settings: Settings,
) -> None:
    setup = run(make_sale(settings, spaces=2, buyers=2))
    manager = run(add_member(settings, "manager"))

    async def scenario() -> None:
        async with workers(settings) as ([worker], store):
            await worker.fresh(setup)
            await worker.click(setup, 1, ["A-002"])
            won = await worker.click(setup, 0, ["A-001"])
            await worker.click(setup, 0, ["A-002"])
            await worker.fresh(setup)
            assert worker.would_decide(setup, 0, ["A-002"]) == ("limit_reached", 1)

            async with stores(settings) as (pool, _):
                await cancel_hold(pool, store, won.body["hold"], "test", manager)
            await worker.fresh(setup)

            assert worker.would_decide(setup, 0, ["A-002"]) is None
            answer = await worker.click(setup, 0, ["A-002"])
            assert answer.body["error"] == "space_taken"

    run(scenario())


def test_rearmed_sale_starts_a_new_view(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=2))

    async def scenario() -> None:
        async with workers(settings) as ([worker], store):
            await worker.click(setup, 0, ["A-001"])
            await worker.click(setup, 1, ["A-001"])
            await worker.fresh(setup)
            old = worker.views.current(setup.sale.id)
            assert worker.would_decide(setup, 1, ["A-001"]) == ("space_taken", 0)

            async with stores(settings) as (pool, _):
                await arming.arm_sale(pool, store.client, setup.sale.id, force=True)
            await worker.fresh(setup)

            new = worker.views.current(setup.sale.id)
            assert old is not None and new is not None and new is not old
            assert new.generation != old.generation
            # Nothing learnt in the earlier generation carries over: the
            # re-armed sale must find buyer 1 registered again.
            assert worker.would_decide(setup, 1, ["A-001"]) is None
            answer = await worker.click(setup, 1, ["A-001"])
            assert answer.body["error"] == "space_taken"
            await worker.fresh(setup)
            assert worker.would_decide(setup, 1, ["A-001"]) == ("space_taken", 0)
            # The hold was loaded from Postgres: its buyer is asked about.
            assert worker.would_decide(setup, 0, ["A-001"]) is None

    run(scenario())


def test_paused_and_unopened_sales_are_answered_by_redis(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=2))
    later = run(make_sale(settings, spaces=1, buyers=1, opens_in=3600))

    async def scenario() -> None:
        async with workers(settings) as ([worker], store):
            await worker.click(setup, 0, ["A-001"])
            await worker.click(setup, 1, ["A-001"])
            await store.set_state(setup.sale.id, "paused")
            await worker.fresh(setup)

            assert worker.would_decide(setup, 1, ["A-001"]) is None
            paused = await worker.click(setup, 1, ["A-001"])
            assert paused.body["error"] == "sale_paused"

            await worker.fresh(later)
            early = await worker.click(later, 0, ["A-001"])
            assert early.body["error"] == "sale_not_open"

    run(scenario())


def test_repeats_get_the_first_answer_whoever_gave_it(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=3, buyers=2))

    async def scenario() -> None:
        async with (
            workers(settings, max_age=30.0) as ([viewing], _),
            workers(settings, max_age=None) as ([plain], _),
        ):
            await viewing.fresh(setup)
            await viewing.click(setup, 1, ["A-003"])
            await viewing.click(setup, 0, ["A-003"])
            await viewing.fresh(setup)
            assert viewing.would_decide(setup, 0, ["A-003"]) == ("space_taken", 0)

            # The view answers first; Redis gives that answer to the repeat.
            first = await viewing.click(setup, 0, ["A-003"], key="one")
            repeat = await plain.click(setup, 0, ["A-003"], key="one")
            assert (first.status, first.replayed) == (409, False)
            assert repeat.replayed
            assert repeat.body == {**first.body, "replayed": True}

            # Redis answers first (buyer 0 is at its limit now, which the
            # view has not seen); the view then gives Redis's answer.
            assert (await plain.click(setup, 0, ["A-001"])).status == 201
            first = await plain.click(setup, 0, ["A-003"], key="two")
            assert viewing.would_decide(setup, 0, ["A-003"]) == ("space_taken", 0)
            repeat = await viewing.click(setup, 0, ["A-003"], key="two")
            assert first.body["error"] == "limit_reached"
            assert repeat.replayed
            assert repeat.body == {**first.body, "replayed": True}

    run(scenario())


def test_pause_close_and_rearm_take_effect_at_once(settings: Settings) -> None:
    setup = run(make_sale(settings, spaces=1, buyers=2))

    async def scenario() -> None:
        # A view that would stay usable for 30 s: only Redis's checks stop it.
        async with workers(settings, max_age=30.0) as ([worker], store):
            await worker.fresh(setup)
            await worker.click(setup, 0, ["A-001"])
            await worker.click(setup, 1, ["A-001"])
            await worker.fresh(setup)
            assert worker.would_decide(setup, 1, ["A-001"]) == ("space_taken", 0)

            await store.set_state(setup.sale.id, "paused")
            paused = await worker.click(setup, 1, ["A-001"], key="during-pause")
            assert paused.body["error"] == "sale_paused"

            await store.set_state(setup.sale.id, "armed")
            resumed = await worker.click(setup, 1, ["A-001"], key="during-pause")
            # The pause was not stored under the key, so the click is decided
            # afresh, here by the view again.
            assert resumed.body["error"] == "space_taken"
            assert not resumed.replayed
            assert worker.service.decided_by_view == 1

            async with stores(settings) as (pool, _):
                await arming.arm_sale(pool, store.client, setup.sale.id, force=True)
            rearmed = await worker.click(setup, 1, ["A-001"])
            assert rearmed.body["error"] == "space_taken"
            # The view still has the earlier generation, so the grab script
            # decided.
            assert worker.service.decided_by_view == 1

            await store.set_state(setup.sale.id, "closed")
            closed = await worker.click(setup, 1, ["A-001"])
            assert closed.body["error"] == "sale_closed"

    run(scenario())
