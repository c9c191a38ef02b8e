"""The audit log: writing staff changes, reading history, verifying the chain.

Every entry is chained per sale by a Postgres trigger (see
`sql/003_audit_chain.sql`): it gets the next `seq`, the previous entry's
hash as `prev_hash`, and its own `hash`. `verify_chain` recomputes those
hashes here, independently of the trigger, and names the first entry that
was changed, removed or inserted.

The hashes carry no secret, so someone who can write the tables directly
can rebuild a consistent chain after tampering. Only a final hash kept
outside the database (the exports print it) reveals that, which is why
`verify-audit` accepts a published `--final-hash`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any

import orjson

from app.types import DbExecutor


async def record(
    db: DbExecutor,
    sale_id: int | None,
    actor: str,
    action: str,
    subject: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Append one entry; call it inside the transaction that makes the change."""
    await db.execute(
        """
        INSERT INTO audit_log (sale_id, actor, action, subject, before, after)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)
        """,
        sale_id,
        actor,
        action,
        subject,
        None if before is None else orjson.dumps(before, default=str).decode(),
        None if after is None else orjson.dumps(after, default=str).decode(),
    )


def entry_hash(
    prev_hash: str,
    seq: int,
    sale_id: int | None,
    at: dt.datetime,
    actor: str,
    action: str,
    subject: str,
    before_text: str | None,
    after_text: str | None,
) -> str:
    """Return the hex SHA-256 of one entry, as the trigger computes it.

    `before_text` and `after_text` are the jsonb values as Postgres prints
    them (`before::text`), since jsonb orders keys in its own way.
    """
    stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    parts = [
        prev_hash,
        str(seq),
        "" if sale_id is None else str(sale_id),
        stamp,
        actor,
        action,
        subject,
        "null" if before_text is None else before_text,
        "null" if after_text is None else after_text,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class ChainVerdict:
    """The result of recomputing one sale's chain."""

    sale_id: int
    entries: int
    final_hash: str
    problem: str | None
    # The id of the first entry that does not fit, when it still exists.
    entry_id: int | None = None
    seq: int | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


_CHAIN = """
    SELECT id, seq, sale_id, at, actor, action, subject,
           before::text AS before_text, after::text AS after_text,
           prev_hash, hash
    FROM audit_log WHERE sale_id = $1 ORDER BY seq, id
"""


async def verify_chain(db: DbExecutor, sale_id: int) -> ChainVerdict:
    """Recompute the sale's chain; the verdict names the first bad entry."""
    rows = await db.fetch(_CHAIN, sale_id)
    head = await db.fetchrow(
        "SELECT last_seq, last_hash FROM audit_chain_heads WHERE chain = $1", sale_id
    )
    previous_hash = ""
    expected_seq = 1

    def bad(problem: str, row: Any = None) -> ChainVerdict:
        return ChainVerdict(
            sale_id,
            len(rows),
            previous_hash,
            problem,
            entry_id=row["id"] if row is not None else None,
            seq=row["seq"] if row is not None else expected_seq,
        )

    for row in rows:
        label = f"entry {row['id']} (seq {row['seq']}, {row['action']})"
        recomputed = entry_hash(
            row["prev_hash"],
            row["seq"],
            row["sale_id"],
            row["at"],
            row["actor"],
            row["action"],
            row["subject"],
            row["before_text"],
            row["after_text"],
        )
        if row["seq"] < expected_seq:
            return bad(f"{label} was inserted: seq {row['seq']} is already used", row)
        if row["seq"] > expected_seq:
            missing = (
                f"seq {expected_seq}"
                if row["seq"] == expected_seq + 1
                else f"seq {expected_seq} to {row['seq'] - 1}"
            )
            return bad(f"the entry with {missing} was removed before {label}", row)
        if recomputed != row["hash"]:
            return bad(f"{label} was changed: its content does not match its hash", row)
        if row["prev_hash"] != previous_hash:
            return bad(
                f"{label} was inserted or its predecessor replaced: it does not "
                "chain to the entry before it",
                row,
            )
        previous_hash = row["hash"]
        expected_seq += 1

    if head is not None and head["last_seq"] >= expected_seq:
        return bad(
            f"the last entries were removed: the chain ends at seq "
            f"{expected_seq - 1} but seq {head['last_seq']} was written"
        )
    if head is not None and head["last_hash"] != previous_hash:
        return bad(
            "the final hash differs from the one written with the last entry; "
            "the chain was rewritten"
        )
    return ChainVerdict(sale_id, len(rows), previous_hash, None)


async def final_hash(db: DbExecutor, sale_id: int) -> tuple[int, str]:
    """Return the sale's number of entries and the hash of its last entry."""
    head = await db.fetchrow(
        "SELECT last_seq, last_hash FROM audit_chain_heads WHERE chain = $1", sale_id
    )
    if head is None:
        return 0, ""
    return int(head["last_seq"]), str(head["last_hash"])


async def history(db: DbExecutor, subject: str) -> list[dict[str, Any]]:
    """Return the entries about one subject (a hold id), oldest first."""
    rows = await db.fetch(
        """
        SELECT seq, at, actor, action, before, after, hash
        FROM audit_log WHERE subject = $1 ORDER BY sale_id, seq
        """,
        subject,
    )
    return [
        {
            "seq": row["seq"],
            "at": row["at"].isoformat(),
            "actor": row["actor"],
            "action": row["action"],
            "before": _json(row["before"]),
            "after": _json(row["after"]),
            "hash": row["hash"],
        }
        for row in rows
    ]


def _json(value: str | None) -> Any:
    # asyncpg returns jsonb as text unless a codec is set on the connection.
    return None if value is None else orjson.loads(value)
