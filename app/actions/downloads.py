"""Bounded HTTP reads for the actions that check artifacts: a streamed digest, a small body.

Shared by `artifact.verify` and the MLflow actions; every request goes through the
allow-listed client in the action context.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from app.actions._support import outbound_failure
from app.actions.base import ActionContext, ActionFailed
from app.actions.checksums import CHUNK, MAX_MANIFEST_BYTES, Digest

if TYPE_CHECKING:  # imported where used: not at start-up (app/outbound.py says why)
    import httpx


def display(url: str) -> str:
    """A URL without its query string, for messages (a query may carry a token)."""
    import httpx

    return str(httpx.URL(url).copy_with(query=None, fragment=None))


@contextlib.asynccontextmanager
async def _get_ok(ctx: ActionContext, url: str, *, doing: str,
                  headers: dict[str, str] | None) -> AsyncIterator[httpx.Response | None]:
    """A streamed GET that answered 200, or None on 404; anything that goes wrong while the
    caller reads it becomes an ActionFailed naming what was being done."""
    try:
        async with ctx.http.stream("GET", url, headers=headers) as response:
            if response.status_code == 404:
                yield None
                return
            if response.status_code != 200:
                raise ActionFailed(f"{doing}: GET {display(url)} answered "
                                   f"{response.status_code}, expected 200")
            yield response
    except ActionFailed:
        raise
    except Exception as exc:
        raise outbound_failure(exc, url=url, doing=doing) from exc


async def stream_digest(ctx: ActionContext, url: str, *, doing: str,
                        headers: dict[str, str] | None = None) -> Digest | None:
    """sha256 and size of an HTTP resource, streamed; None when it answers 404."""
    async with _get_ok(ctx, url, doing=doing, headers=headers) as response:
        return None if response is None else await digest_body(response)


async def fetch_small(ctx: ActionContext, url: str, *, doing: str,
                      headers: dict[str, str] | None = None,
                      limit: int = MAX_MANIFEST_BYTES) -> bytes | None:
    """The body of a small HTTP resource (a manifest); None on 404; refuses more than `limit`."""
    async with _get_ok(ctx, url, doing=doing, headers=headers) as response:
        if response is None:
            return None
        return await small_body(response, limit=limit,
                                too_big=f"{doing}: {display(url)} is larger than {limit} bytes")


async def digest_body(response: httpx.Response) -> Digest:
    """sha256 and size of a streamed answer's body, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    async for chunk in response.aiter_bytes(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return Digest(digest.hexdigest(), size)


async def small_body(response: httpx.Response, *, limit: int, too_big: str) -> bytes:
    """A streamed answer's body, refused (ActionFailed `too_big`) past `limit` bytes."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise ActionFailed(too_big)
    return bytes(body)
