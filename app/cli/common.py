"""What the command modules share: logging, the acting identity, and work on a fresh engine.

The commands use the same services as the API, so the rules (roles, quorum, separation of
duties, the transition table, events with an actor) are the same from a terminal.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from app import logs
from app.config import Settings, get_settings
from app.identity import Identity, IdentityStore

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")

TokenOption = Annotated[str | None, typer.Option(
    "--token", envvar="RUNBOOKD_TOKEN", help="API token of the identity acting.")]


def configure_logging() -> None:
    """Log to stderr at RUNBOOKD_LOG_LEVEL (default INFO), as text or, with
    RUNBOOKD_LOG_FORMAT=json, one JSON object per line; a bad value is one line, exit 2."""
    try:
        logs.configure()
    except ValueError as exc:
        typer.secho(f"runbookd: {exc}", err=True, fg="red")
        raise typer.Exit(2) from None


def key_values(items: list[str], option: str) -> dict[str, str]:
    """Repeated `--option key=value` arguments as a dict; a malformed one says how to write it."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{option} takes key=value (like model=fraud), "
                                     f"not {item[:60]!r}")
        out[key] = value
    return out


def identity_of(settings: Settings, token: str | None) -> Identity:
    """The identity behind --token (or RUNBOOKD_TOKEN), from the tokens file."""
    if not token:
        raise typer.BadParameter("pass --token or set RUNBOOKD_TOKEN: approvals need an identity")
    store = IdentityStore(
        settings.api_tokens_file,
        dev_token=settings.dev_token.get_secret_value() if settings.dev_token else None)
    identity = store.lookup(token)
    if identity is None:
        raise typer.BadParameter("the token matches no identity in RUNBOOKD_API_TOKENS_FILE")
    return identity


def cli_actor() -> str:
    """The actor recorded for a command run without a token: the local user."""
    return f"cli:{getpass.getuser()}"


async def on_fresh_engine(
    url: str, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]],
) -> T:
    """Await `work(session_factory)` on an engine of its own, disposed afterwards."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.db import make_engine, make_session_factory

    engine = make_engine(url, pool_size=2)
    try:
        return await work(make_session_factory(engine))
    finally:
        await engine.dispose()


def run(work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """Run `work(session_factory)` on the configured database; a runbookd error exits 1."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: app.errors pulls FastAPI.
    from app.errors import RunbookdError

    url = get_settings().database_url
    try:
        return asyncio.run(on_fresh_engine(url, work))
    except RunbookdError as exc:
        typer.secho(f"error ({exc.status_code}): {exc.message}", err=True, fg="red")
        raise typer.Exit(1) from None


def in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work(session)` in one session that only reads."""
    return run(partial(_in_session, work))


def in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work(session)` in one transaction, committed if it returns (`session_scope`)."""
    return run(partial(_in_transaction, work))


async def _in_session(work: Callable[[AsyncSession], Awaitable[T]],
                      factory: async_sessionmaker[AsyncSession]) -> T:
    async with factory() as session:
        return await work(session)


async def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]],
                          factory: async_sessionmaker[AsyncSession]) -> T:
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it needs no SQLAlchemy.
    from app.db import session_scope

    async with session_scope(factory) as session:
        return await work(session)
