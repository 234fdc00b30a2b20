"""Review cadence from real records: when each runbook was last reviewed, whether the review
is overdue, the gauges that say so, and the reminder its owner gets once per period.

`reviewed_at` is the time of the runbook's latest sign-off by a person (an automatic or
baseline sign-off reviews nothing); without one it is the date typed in the YAML. A review
is overdue once `reviewed_at + review_every` has passed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics
from app.catalog.loader import Catalog
from app.catalog.schema import Runbook
from app.catalog.signoff_models import REVIEWED, ReviewNotice, RunbookSignoff
from app.db import dialect_insert, session_scope, utcnow
from app.durations import format_duration
from app.events import record_event
from app.notify.outbox import enqueue

log = logging.getLogger(__name__)
ACTOR = "system:review"
_CHANNEL_KINDS = ("slack:", "webhook:")  # a reminder is not a page: never PagerDuty


@dataclass(frozen=True)
class ReviewState:
    runbook_id: str
    reviewed_at: dt.datetime
    source: str  # signoff | yaml
    due_at: dt.datetime
    overdue: bool

    def since(self) -> str:
        return self.due_at.date().isoformat()


def review_state(runbook: Runbook, last_signoff: dt.datetime | None,
                 now: dt.datetime) -> ReviewState:
    """When `runbook` was reviewed (its latest sign-off, else its YAML date) and whether its
    review is overdue at `now`."""
    if last_signoff is not None:
        reviewed, source = last_signoff, "signoff"
    else:
        reviewed = dt.datetime.combine(runbook.reviewed_at, dt.time(), tzinfo=dt.UTC)
        source = "yaml"
    due = reviewed + runbook.review_every
    return ReviewState(runbook.id, reviewed, source, due, due < now)


def reminder_period(state: ReviewState, every: dt.timedelta, now: dt.datetime) -> dt.datetime:
    """The start of the overdue period `now` is in: the due time, then one more `every` for
    each period the review stays overdue, so the owner hears once per period."""
    periods = int((now - state.due_at) / every) if every > dt.timedelta(0) else 0
    return state.due_at + periods * every


def owner_channels(runbook: Runbook) -> list[str]:
    """Where the owner hears about a review: the owner itself when it names a channel, else
    the Slack or webhook channels of its escalation and failure notices (else the default)."""
    if runbook.owner.startswith(_CHANNEL_KINDS):
        return [runbook.owner]
    named = [c for tier in runbook.escalation for c in tier.notify] + runbook.on_failure_notify
    return list(dict.fromkeys(c for c in named if c.startswith(_CHANNEL_KINDS)))


async def latest_reviews(session: AsyncSession,
                         runbook_ids: Iterable[str] | None = None) -> dict[str, dt.datetime]:
    """The time of each runbook's latest sign-off by a reviewer."""
    query = (select(RunbookSignoff.runbook_id, func.max(RunbookSignoff.signed_at))
             .where(RunbookSignoff.kind == REVIEWED).group_by(RunbookSignoff.runbook_id))
    if runbook_ids is not None:
        query = query.where(RunbookSignoff.runbook_id.in_(list(runbook_ids)))
    rows = await session.execute(query)
    return {rid: at for rid, at in rows}


async def review_states(session: AsyncSession, catalog: Catalog,
                        now: dt.datetime | None = None) -> list[ReviewState]:
    """The review state of every runbook in the catalog."""
    now = now or utcnow()
    latest = await latest_reviews(session)
    return [review_state(lr.runbook, latest.get(rid), now)
            for rid, lr in sorted(catalog.runbooks.items())]


async def review_of(session: AsyncSession, runbook: Runbook,
                    now: dt.datetime | None = None) -> ReviewState:
    latest = await latest_reviews(session, [runbook.id])
    return review_state(runbook, latest.get(runbook.id), now or utcnow())


def overdue_hold(state: ReviewState) -> str:
    """What an approval request of an overdue runbook says (RUNBOOKD_REQUIRE_REVIEW)."""
    return (f"review overdue since {state.since()}: approving this also accepts running an "
            "unreviewed runbook")


async def refresh_review_gauges(factory: async_sessionmaker[AsyncSession],
                                catalog: Catalog) -> None:
    """Set the review gauges from the database; called at scrape time."""
    async with session_scope(factory) as session:
        states = await review_states(session, catalog)
    metrics.runbook_review_overdue.clear()
    metrics.runbook_last_review_timestamp.clear()
    for state in states:
        metrics.runbook_review_overdue.labels(state.runbook_id).set(1 if state.overdue else 0)
        metrics.runbook_last_review_timestamp.labels(state.runbook_id).set(
            state.reviewed_at.timestamp())


async def remind_overdue(session: AsyncSession, catalog: Catalog,
                         now: dt.datetime | None = None) -> list[str]:
    """Tell each overdue runbook's owner, once per period across replicas: the notice row
    and the notification commit together, and a notice another replica wrote first wins.
    Returns the runbooks reminded now."""
    now = now or utcnow()
    reminded = []
    for state in await review_states(session, catalog, now):
        if not state.overdue:
            continue
        runbook = catalog.runbooks[state.runbook_id].runbook
        period = reminder_period(state, runbook.review_every, now)
        inserted = await session.execute(
            dialect_insert(session)(ReviewNotice).values(runbook_id=runbook.id, due_at=period,
                                                  notified_at=now)
            .on_conflict_do_nothing().returning(ReviewNotice.runbook_id))
        if inserted.first() is None:
            continue
        how = "a sign-off" if state.source == "signoff" else "its YAML reviewed_at"
        text = (f"the review of runbook {runbook.id} is overdue since {state.since()} "
                f"(last reviewed {state.reviewed_at.date()}: {how}; due every "
                f"{format_duration(runbook.review_every)}); owner {runbook.owner}, reviewers "
                f"{', '.join(runbook.reviewers)}: sign off the live version at "
                f"/runbooks/{runbook.id}")
        enqueue(session, kind="review_overdue", channels=owner_channels(runbook),
                dedup_key=f"review:{runbook.id}:{int(period.timestamp())}",
                payload={"runbook": runbook.id, "runbook_title": runbook.title,
                         "target": f"owner {runbook.owner}", "owner": runbook.owner,
                         "text": text, "overdue_since": state.due_at.isoformat()})
        record_event(session, kind="review.overdue", entity="catalog", actor=ACTOR,
                     reason=text, data={"runbook_id": runbook.id,
                                        "period": period.isoformat()})
        reminded.append(runbook.id)
    return reminded


async def review_round(factory: async_sessionmaker[AsyncSession],
                       catalog: Callable[[], Catalog]) -> None:
    """One look for overdue reviews, reminding each owner once per period (the service runs
    it every `review_check_seconds`, one interval after start: a process restarted in a loop
    sends nothing twice, the notice rows see to that, and a short-lived one sends nothing)."""
    async with session_scope(factory) as session:
        reminded = await remind_overdue(session, catalog())
    if reminded:
        log.info("overdue review reminders sent for %s", ", ".join(reminded))
