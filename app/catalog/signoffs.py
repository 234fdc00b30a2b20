"""Change sign-off: which runbook versions are signed off, by whom, and which run as drills.

On each catalog load, every newly stored version is classified against the last signed-off
version of its runbook (`signoff_diff.risky_changes`): no risky step changed, and it is
signed off automatically; otherwise it stays unsigned, and its executions run as drills
until a reviewer signs it off. A catalog seen for the first time (no sign-off at all) is
the baseline: every version in it is signed off, with an event that says so.

Services take the session and only flush; the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.models import RunbookVersion
from app.catalog.schema import Runbook
from app.catalog.signoff_diff import RiskyChange, risky_changes
from app.catalog.signoff_models import AUTOMATIC, INITIAL, REVIEWED, RunbookSignoff
from app.catalog.signoff_reviews import review_of
from app.db import utcnow
from app.errors import Conflict, Forbidden, Invalid
from app.events import record_event
from app.identity import Identity

SYSTEM = "system:signoff"
# The advisory lock (PostgreSQL) that classifying a load holds: "signoff" in ASCII.
_CLASSIFY_LOCK = int.from_bytes(b"signoff", "big")
MIN_PREFIX = 8  # a version may be named by a unique prefix this long (the pages show 12)


@dataclass(frozen=True)
class Pending:
    """A version that is not signed off, with what it changed against the signed-off one."""

    runbook_id: str
    version: str
    loaded_at: dt.datetime
    loaded_by: str | None
    base: RunbookVersion | None  # the last signed-off version, if any
    changes: list[RiskyChange]


async def _add(session: AsyncSession, *, runbook_id: str, version: str, reviewer: str,
               kind: str, comment: str, at: dt.datetime | None = None) -> RunbookSignoff:
    row = RunbookSignoff(runbook_id=runbook_id, version=version, reviewer=reviewer[:128],
                         kind=kind, signed_at=at or utcnow(), comment=comment)
    session.add(row)
    await session.flush()
    return row


async def any_signoff(session: AsyncSession) -> bool:
    """Whether any version of any runbook was ever signed off."""
    return (await session.execute(select(RunbookSignoff.id).limit(1))).first() is not None


async def signoffs_of(session: AsyncSession, runbook_id: str,
                      version: str) -> list[RunbookSignoff]:
    """The sign-offs of one version, newest first."""
    return list((await session.execute(select(RunbookSignoff).where(
        RunbookSignoff.runbook_id == runbook_id, RunbookSignoff.version == version,
    ).order_by(RunbookSignoff.signed_at.desc(), RunbookSignoff.id.desc()))).scalars())


async def last_signed_version(session: AsyncSession, runbook_id: str, *,
                              other_than: str | None = None) -> RunbookVersion | None:
    """The version of a runbook signed off last (by its sign-off time), if any."""
    query = (select(RunbookVersion).join(RunbookSignoff, (
        RunbookSignoff.runbook_id == RunbookVersion.runbook_id)
        & (RunbookSignoff.version == RunbookVersion.version))
        .where(RunbookVersion.runbook_id == runbook_id)
        .order_by(RunbookSignoff.signed_at.desc(), RunbookSignoff.id.desc()).limit(1))
    if other_than is not None:
        query = query.where(RunbookVersion.version != other_than)
    return (await session.execute(query)).scalar_one_or_none()


async def classify_new_versions(
    session: AsyncSession, *, current: Iterable[tuple[str, str, dict[str, Any]]],
    stored: list[dict[str, str]], actor: str,
) -> None:
    """Sign off what needs no reviewer, after a load stored `stored` ({runbook_id,
    version}); `current` is every (runbook id, version, content) of the loaded catalog."""
    current = list(current)
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        # Replicas loading at once classify one after another, so that a database with no
        # sign-off yet gets one baseline (SQLite has a single writer already).
        await session.execute(select(func.pg_advisory_xact_lock(_CLASSIFY_LOCK)))
    if not await any_signoff(session):
        versions = {rid: version for rid, version, _ in current}
        for rid, version in versions.items():
            await _add(session, runbook_id=rid, version=version, reviewer=SYSTEM, kind=INITIAL,
                       comment="the catalog was seen for the first time: the baseline")
        if versions:
            record_event(session, kind="signoff.baseline", entity="catalog", actor=SYSTEM,
                         reason=f"first catalog seen (loaded by {actor}): its {len(versions)} "
                                "runbook version(s) are treated as signed off",
                         data={"versions": versions})
        return
    contents = {(rid, version): content for rid, version, content in current}
    for item in stored:
        rid, version = item["runbook_id"], item["version"]
        content = contents.get((rid, version))
        if content is None:
            continue
        base = await last_signed_version(session, rid, other_than=version)
        changes = risky_changes(base.content if base else None, content)
        data = {"runbook_id": rid, "version": version,
                "against": base.version if base else None,
                "changes": [c.describe() for c in changes]}
        if not changes:
            await _add(session, runbook_id=rid, version=version, reviewer=SYSTEM,
                       kind=AUTOMATIC, comment="no risky step changed")
            record_event(session, kind="signoff.automatic", entity="catalog", actor=SYSTEM,
                         reason=f"{rid} version {version[:12]} changes no risky step: "
                                "signed off automatically", data=data)
        else:
            record_event(session, kind="signoff.required", entity="catalog", actor=actor,
                         reason=f"{rid} version {version[:12]} changes risky steps ("
                                + "; ".join(data["changes"]) + "): it runs as a drill until "
                                "a reviewer signs it off", data=data)


# Per database: the versions known to be signed off. A sign-off is never taken back, so
# once seen it spares every later execution of that version the query.
_SIGNED: weakref.WeakKeyDictionary[Any, set[tuple[str, str]]] = weakref.WeakKeyDictionary()


async def unsigned_note(session: AsyncSession, runbook_id: str, version: str) -> str | None:
    """Why an execution of this version must run as a drill, or None when it may run.

    A version is unsigned when it was stored, sign-off has begun (some version of some
    runbook is signed off) and nobody signed this one off."""
    bind = session.bind
    known = _SIGNED.setdefault(bind.sync_engine, set()) if bind is not None else set()
    if (runbook_id, version) in known:
        return None
    stored = exists().where(RunbookVersion.runbook_id == runbook_id,
                            RunbookVersion.version == version)
    signed = exists().where(RunbookSignoff.runbook_id == runbook_id,
                            RunbookSignoff.version == version)
    begun = exists().where(RunbookSignoff.id.is_not(None))
    is_signed, unsigned = (await session.execute(
        select(signed, stored & ~signed & begun))).one()
    if is_signed:
        known.add((runbook_id, version))
    if not unsigned:
        return None
    return (f"version {version[:12]} of {runbook_id} is not signed off: ran as a drill; sign it "
            f"off at /runbooks/{runbook_id} or with `runbookd signoff {runbook_id} --version "
            f"{version[:12]}`")


async def unsigned_among(session: AsyncSession,
                         pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (runbook id, version) pairs are unsigned, in two queries (the runbook
    list asks it for every live version)."""
    pairs = list(pairs)
    if not pairs or not await any_signoff(session):
        return set()
    ids = {rid for rid, _ in pairs}
    signed = {(rid, v) for rid, v in await session.execute(
        select(RunbookSignoff.runbook_id, RunbookSignoff.version).distinct()
        .where(RunbookSignoff.runbook_id.in_(ids)))}
    stored = {(rid, v) for rid, v in await session.execute(
        select(RunbookVersion.runbook_id, RunbookVersion.version)
        .where(RunbookVersion.runbook_id.in_(ids)))}
    return {pair for pair in pairs if pair in stored and pair not in signed}


async def find_version(session: AsyncSession, runbook_id: str, version: str) -> RunbookVersion:
    """A stored version by its hash or a unique prefix of it; 422 saying what exists."""
    version = version.strip().lower()
    if len(version) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in version):
        raise Invalid(f"version {version[:64]!r} is not a version hash: give the sha256 (or "
                      f"at least its first {MIN_PREFIX} hex digits) from "
                      f"GET /api/v1/runbooks/{runbook_id}/versions")
    rows = (await session.execute(select(RunbookVersion).where(
        RunbookVersion.runbook_id == runbook_id,
        RunbookVersion.version.startswith(version, autoescape=True)).limit(2))).scalars().all()
    if len(rows) != 1:
        why = "no stored version" if not rows else "more than one stored version"
        raise Invalid(f"runbook {runbook_id} has {why} starting {version!r}; "
                      f"GET /api/v1/runbooks/{runbook_id}/versions lists them")
    return rows[0]


def reviewers_for(row: RunbookVersion, base: RunbookVersion | None) -> list[str]:
    """Who may sign off `row`: the reviewers of the version signed off before it, so that a
    change cannot name its own reviewer; the version's own list when none was."""
    source = base.content if base is not None else row.content
    return [str(r) for r in source.get("reviewers") or []]


def signoff_blocker(identity: Identity, row: RunbookVersion,
                    reviewers: list[str]) -> str | None:
    """Why `identity` may not sign off `row`, or None when it may. The one rule for who
    signs off; the API enforces it and the page asks it."""
    if identity.name not in reviewers and not identity.has_role("admin"):
        return (f"identity {identity.name!r} is not a reviewer of {row.runbook_id} (its "
                f"reviewers: {', '.join(reviewers) or 'none'}) and not an admin")
    if row.loaded_by is not None and row.loaded_by == identity.name:
        return (f"identity {identity.name!r} loaded version {row.version[:12]} itself: a change "
                f"is signed off by someone else ({', '.join(reviewers)} or an admin)")
    return None


async def sign_off(session: AsyncSession, *, runbook_id: str, version: str, identity: Identity,
                   comment: str = "", source_addr: str | None = None) -> RunbookSignoff:
    """Record a reviewer's sign-off of one version: 422 for an unknown version, 409 when a
    reviewer signed it off already and the runbook's review is not due yet, 403 for a
    non-reviewer or the identity that loaded it. A sign-off is also the runbook's review."""
    row = await find_version(session, runbook_id, version)
    reviewed = [s for s in await signoffs_of(session, runbook_id, row.version)
                if s.kind == REVIEWED]
    if reviewed:
        review = await review_of(session, Runbook.model_validate(row.content))
        if not review.overdue:
            done = reviewed[0]
            raise Conflict(f"version {row.version[:12]} of {runbook_id} is already signed off "
                           f"by {done.reviewer} at {done.signed_at.isoformat(timespec='seconds')}"
                           f"; its next review is due {review.due_at.date()}",
                           current_state="signed")
    base = await last_signed_version(session, runbook_id, other_than=row.version)
    blocker = signoff_blocker(identity, row, reviewers_for(row, base))
    if blocker is not None:
        raise Forbidden(blocker)
    signed = await _add(session, runbook_id=runbook_id, version=row.version,
                        reviewer=identity.name, kind=REVIEWED, comment=comment)
    changes = risky_changes(base.content if base else None, row.content)
    record_event(session, kind="signoff.recorded", entity="catalog", actor=identity.name,
                 source_addr=source_addr, reason=comment or "signed off",
                 data={"runbook_id": runbook_id, "version": row.version,
                       "against": base.version if base else None,
                       "changes": [c.describe() for c in changes]})
    return signed


async def list_signoffs(session: AsyncSession, runbook_id: str) -> list[RunbookSignoff]:
    """Every sign-off of a runbook, newest first."""
    return list((await session.execute(
        select(RunbookSignoff).where(RunbookSignoff.runbook_id == runbook_id)
        .order_by(RunbookSignoff.signed_at.desc(), RunbookSignoff.id.desc()))).scalars())


async def pending_for(session: AsyncSession, runbook_id: str,
                      version: str) -> Pending | None:
    """The live version's pending sign-off (None when it is signed off, or sign-off has not
    begun): its loader, and its risky changes against the last signed-off version."""
    if await unsigned_note(session, runbook_id, version) is None:
        return None
    row = await session.get(RunbookVersion, (runbook_id, version))
    if row is None:
        return None
    base = await last_signed_version(session, runbook_id, other_than=version)
    return Pending(runbook_id, version, row.loaded_at, row.loaded_by, base,
                   risky_changes(base.content if base else None, row.content))
