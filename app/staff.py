"""Staff accounts: creating them, checking passwords, slowing down guessing.

Passwords are hashed with Argon2id (`passwords.staff_password_hasher`).
Failed logins are counted in Redis for `FAILURE_WINDOW_SECONDS`, per account
and client address, per address, and per account with a much higher limit;
past a limit a login is rejected with 429 before the password is checked.
Someone guessing from one address therefore cannot lock a cashier out on
another machine, while guessing spread over many addresses still meets the
per-account limit. Counting fails open when Redis is down, because the
password hash still protects the account.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app import audit, passwords
from app.errors import BadRequest, Conflict, TooManyRequests, Unauthorized
from app.types import DbExecutor, DbPool

logger = logging.getLogger(__name__)

ROLES = ("cashier", "manager")
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
MAX_FAILURES_PER_ACCOUNT_AND_ADDRESS = 5
MAX_FAILURES_PER_ADDRESS = 20
MAX_FAILURES_PER_ACCOUNT = 100
FAILURE_WINDOW_SECONDS = 900


@functools.lru_cache(maxsize=1)
def _unknown_user_hash() -> str:
    """Return a hash to check when the username does not exist.

    Checking it makes a wrong name take as long as a wrong password, so the
    timing does not reveal which names exist.
    """
    return passwords.staff_password_hasher().hash("no such account")


@dataclasses.dataclass(frozen=True, slots=True)
class StaffMember:
    id: int
    username: str
    role: str
    session_epoch: int

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"

    @property
    def actor(self) -> str:
        """The name written to the audit log for this member's changes."""
        return f"staff:{self.username}"


def validate_account(username: str, role: str, password: str) -> None:
    """Raise `BadRequest` naming the first field that is not acceptable."""
    if not USERNAME.fullmatch(username):
        raise BadRequest(
            f"username {username!r} must be 2 to 32 lower-case letters, digits, "
            "'.', '_' or '-', starting with a letter or digit.",
            field="username",
        )
    if role not in ROLES:
        raise BadRequest(
            f"role must be one of {', '.join(ROLES)}, got {role!r}.", field="role"
        )
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise BadRequest(
            f"password must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} "
            "characters.",
            field="password",
        )


async def create_staff(
    pool: DbPool, username: str, role: str, password: str, actor: str = "cli"
) -> StaffMember:
    """Create an account; raise `BadRequest` or `Conflict` when it cannot be."""
    validate_account(username, role, password)
    hashed = await asyncio.to_thread(passwords.staff_password_hasher().hash, password)
    async with pool.acquire() as connection, connection.transaction():
        try:
            row = await connection.fetchrow(
                """
                INSERT INTO staff (username, role, password_hash)
                VALUES ($1, $2, $3)
                RETURNING id, username, role, session_epoch
                """,
                username,
                role,
                hashed,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"A staff account {username!r} already exists.") from None
        assert row is not None
        await audit.record(
            connection,
            None,
            actor,
            "staff_created",
            f"staff:{username}",
            after={"username": username, "role": role},
        )
    return _member(row)


async def load_member(db: DbExecutor, staff_id: int) -> StaffMember | None:
    row = await db.fetchrow(
        "SELECT id, username, role, session_epoch FROM staff WHERE id = $1", staff_id
    )
    return None if row is None else _member(row)


def _member(row: asyncpg.Record) -> StaffMember:
    return StaffMember(row["id"], row["username"], row["role"], row["session_epoch"])


class LoginThrottle:
    """Counts failed logins per account and per address in Redis."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str, str]:
        prefix = "parking:staff-login-failures"
        return (
            f"{prefix}:user-addr:{username}:{address}",
            f"{prefix}:addr:{address}",
            f"{prefix}:user:{username}",
        )

    async def check(self, username: str, address: str) -> None:
        """Raise `TooManyRequests` when any counter is at its limit."""
        pair_key, address_key, user_key = self._keys(username, address)
        try:
            counts = await self.client.mget(pair_key, address_key, user_key)
            retry = max(await self.client.ttl(pair_key), 1)
        except RedisError as exc:
            logger.warning("login_throttle_unavailable", extra={"error": repr(exc)})
            return
        pair, per_address, per_user = (int(count or 0) for count in counts)
        if pair >= MAX_FAILURES_PER_ACCOUNT_AND_ADDRESS:
            raise TooManyRequests(
                f"Too many wrong passwords for {username!r} from this address; "
                f"wait {retry} s or ask a manager.",
                retry_after=retry,
            )
        if per_address >= MAX_FAILURES_PER_ADDRESS:
            raise TooManyRequests(
                "Too many failed logins from this address; wait 15 minutes.",
                retry_after=FAILURE_WINDOW_SECONDS,
            )
        if per_user >= MAX_FAILURES_PER_ACCOUNT:
            raise TooManyRequests(
                f"Too many wrong passwords for {username!r}; wait 15 minutes or "
                "ask a manager.",
                retry_after=FAILURE_WINDOW_SECONDS,
            )

    async def count_failure(self, username: str, address: str) -> None:
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for key in self._keys(username, address):
                    pipe.incr(key)
                    pipe.expire(key, FAILURE_WINDOW_SECONDS)
                await pipe.execute()
        except RedisError as exc:
            logger.warning("login_failure_not_counted", extra={"error": repr(exc)})

    async def clear_address(self, username: str, address: str) -> None:
        """Forget the account's failures from this address, after a login."""
        try:
            await self.client.delete(self._keys(username, address)[0])
        except RedisError as exc:
            logger.warning("login_failures_not_cleared", extra={"error": repr(exc)})


async def authenticate(
    pool: DbPool,
    throttle: LoginThrottle,
    username: str,
    password: str,
    address: str,
) -> StaffMember:
    """Return the member whose password this is, or raise `Unauthorized`.

    Raises `TooManyRequests` while the account or the address is throttled.
    """
    username = username.lower()
    await throttle.check(username, address)
    row = await pool.fetchrow(
        """
        SELECT id, username, role, session_epoch, password_hash
        FROM staff WHERE username = $1
        """,
        username,
    )
    stored = row["password_hash"] if row is not None else _unknown_user_hash()
    hasher = passwords.staff_password_hasher()
    valid = await asyncio.to_thread(passwords.check, hasher, stored, password)
    if row is None or not valid:
        await throttle.count_failure(username, address)
        logger.info("staff_login_failed", extra={"username": username})
        raise Unauthorized("The username or the password is wrong.")
    await throttle.clear_address(username, address)
    return _member(row)


async def end_sessions(pool: DbPool, member: StaffMember) -> None:
    """End every session of this member by moving the session epoch on."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "UPDATE staff SET session_epoch = session_epoch + 1 WHERE id = $1",
            member.id,
        )
        await audit.record(connection, None, member.actor, "staff_logout", member.actor)
