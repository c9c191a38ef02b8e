"""Hashing of access codes and staff passwords with Argon2id.

Access codes are hashed with less memory than staff passwords, because a
sale imports and checks thousands of them; the cost is a setting.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


@functools.lru_cache(maxsize=8)
def access_code_hasher(memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=memory_kib, parallelism=1)


@functools.lru_cache(maxsize=1)
def staff_password_hasher() -> PasswordHasher:
    return PasswordHasher()


def check(hasher: PasswordHasher, stored_hash: str, secret: str) -> bool:
    """Return whether `secret` matches `stored_hash`; a corrupt hash never matches."""
    try:
        return hasher.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False
