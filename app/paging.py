"""Query helpers shared by list endpoints: keyset cursors, label filters, and parameter types
that refuse (422) what no column can hold.

A cursor is the opaque `(timestamp, id)` of the last row of a page.
Keyset paging stays fast at any depth and stable while new rows arrive, which OFFSET is not.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator
from sqlalchemy import tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import LABEL_NAME
from app.errors import Invalid

MAX_LIMIT = 500
BIGINT_MAX = 2**63 - 1
# A row id in a path: out-of-range numbers are a 422, never a database error.
RowId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


def as_utc(value: dt.datetime) -> dt.datetime:
    """A timestamp in UTC (naive means UTC); ValueError for one beyond the years 1 to 9999.

    `9999-12-31T23:59:59-14:00` parses, but it is in the year 10000 in UTC, where Python and
    the databases end.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("must fall between the years 1 and 9999 once converted to UTC "
                         "(mind the offset)") from None


# A `since`/`until` query parameter, as an aware UTC timestamp the databases can hold.
UtcInstant = Annotated[dt.datetime, AfterValidator(as_utc)]


def encode_cursor(at: dt.datetime, row_id: int) -> str:
    raw = f"{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """Parse a cursor from a previous page; a damaged one is a 422 that says so."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at_text, _, id_text = base64.urlsafe_b64decode(padded).decode().partition("|")
        at = dt.datetime.fromisoformat(at_text)
        if at.tzinfo is None:
            raise ValueError("naive")
        row_id = int(id_text)
        if not 0 <= row_id <= BIGINT_MAX:
            raise ValueError("beyond 64 bits")
        return as_utc(at), row_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Invalid("cursor is not valid: pass next_cursor from the previous page unchanged",
                      details=[{"field": "cursor", "message": "not a cursor"}]) from None


def parse_label_filters(values: list[str]) -> list[tuple[str, str]]:
    """`name=value` pairs from repeated `label` query parameters."""
    pairs = []
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not LABEL_NAME.match(name):
            raise Invalid(f"label filter {item[:80]!r} must look like name=value, with a "
                          "Prometheus label name",
                          details=[{"field": "label", "message": "expected name=value"}])
        pairs.append((name, value))
    return pairs


async def keyset_page(session: AsyncSession, query: Any, *, at: Any, row_id: Any,
                      cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    """One page of `query`, newest first by (`at`, `row_id`), and the cursor of the next."""
    if cursor:
        last_at, last_id = decode_cursor(cursor)
        query = query.where(tuple_(at, row_id) < tuple_(last_at, last_id))
    query = query.order_by(at.desc(), row_id.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor(getattr(last, at.key), getattr(last, row_id.key))
