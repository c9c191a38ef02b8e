"""The long-lived objects one worker shares between requests."""

from __future__ import annotations

import dataclasses

import redis.asyncio as aioredis
from starlette.requests import Request

from app.catalog import Catalog
from app.grabbing import GrabService
from app.hold_refs import HoldRefs
from app.redis_store import RedisStore
from app.sessions import BuyerSessions
from app.settings import Settings
from app.types import DbPool


@dataclasses.dataclass(slots=True)
class Services:
    settings: Settings
    redis: aioredis.Redis
    pool: DbPool
    store: RedisStore
    catalog: Catalog
    grabs: GrabService
    buyer_sessions: BuyerSessions
    hold_refs: HoldRefs


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
