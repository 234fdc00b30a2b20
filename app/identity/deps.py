"""FastAPI dependencies that resolve the caller's identity and check its role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request

from app.errors import Forbidden, Unauthenticated, no_identity
from app.identity import Identity, IdentityStore, Role


def identity_store(request: Request) -> IdentityStore:
    """The process's identities (the tokens file, re-read when it changes)."""
    return request.app.state.identities


# The web layer's hook (`app.state.session_identity`): the identity of the request's sign-in
# session, checked against its row in the database, hence async.
SessionLookup = Callable[[Request], Awaitable[Identity | None]]


async def identity_from_request(request: Request) -> Identity | None:
    """The identity behind the request's bearer token, or its web session, or None."""
    token = _bearer(request)
    if token is not None:
        return identity_store(request).lookup(token)
    session_lookup: SessionLookup | None = getattr(request.app.state, "session_identity", None)
    if session_lookup is not None:
        return await session_lookup(request)
    return None


def _bearer(request: Request) -> str | None:
    """The request's bearer token, if it sent one."""
    auth = request.headers.get("authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def unauthenticated(request: Request) -> Unauthenticated:
    """The 401 for a request without an identity: a token was sent and is wrong, or none was."""
    return no_identity(token_sent=_bearer(request) is not None)


def require(role: Role) -> Callable[[Request], Coroutine[Any, Any, Identity]]:
    """A dependency that returns the caller's identity, or 401/403."""

    async def dependency(request: Request) -> Identity:
        identity = await identity_from_request(request)
        if identity is None:
            raise unauthenticated(request)
        if not identity.has_role(role):
            raise Forbidden(f"identity {identity.name!r} lacks the {role} role")
        return identity

    return dependency
