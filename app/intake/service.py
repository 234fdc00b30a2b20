"""Store a batch of webhook deliveries in one transaction.

The work is set-based so that group commit pays off: one query finds the alerts already
stored, a pure function decides what each incoming alert is (new, changed, duplicate), and a
few bulk statements write the result, whatever the size of the batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import insert_returning_ids
from app.intake import statements
from app.intake.models import (
    CHANGED,
    DUPLICATE,
    LABEL_VALUE_INDEXED,
    NEW,
    NO_RUNBOOK,
    RESOLVED,
    Alert,
    AlertLabel,
    ChangeKind,
    Decision,
    Delivery,
)
from app.intake.normalize import Envelope, NormalizedAlert
from app.intake.statements import AlertKey, States, StoredState


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertChange:
    """An alert that is new, or whose status changed, handed to the mapper hook."""

    alert_id: int
    kind: ChangeKind
    alert: NormalizedAlert
    delivery_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    delivery_id: int | None
    received: int
    new: int
    changed: int
    duplicate: int
    truncated_alerts: int
    duplicate_delivery: bool = False


class AlertHook(Protocol):
    """The mapper hook: called inside the batch's transaction with the alerts it wrote."""

    async def __call__(self, session: AsyncSession, changes: list[AlertChange], /) -> None: ...


def decide(stored: StoredState | None, incoming: NormalizedAlert) -> Decision:
    """What an incoming alert means against what is stored. Pure.

    Order comes from the source's timestamps, not from arrival: a status change counts only
    if it is newer than the stored status, so a stale "firing" resent after the "resolved"
    does not reopen the alert.
    """
    if stored is None:
        return NEW
    if incoming.status == stored.status:
        return DUPLICATE
    newer = incoming.status_at > stored.status_at or (
        incoming.status_at == stored.status_at and incoming.status == RESOLVED
    )
    return CHANGED if newer else DUPLICATE


def decide_batch(envelopes: Sequence[Envelope], indexes: Iterable[int],
                 states: States) -> dict[int, list[Decision]]:
    """What each alert of the envelopes at `indexes` means, in order.

    `states` is updated with what the batch will write (a new alert's id is None), so that
    a second copy of an alert later in the batch is decided against the first.
    """
    decisions: dict[int, list[Decision]] = {}
    for i in indexes:
        per_alert = []
        for alert in envelopes[i].alerts:
            stored = states.get(alert.key)
            choice = decide(stored, alert)
            per_alert.append(choice)
            if choice != DUPLICATE:
                states[alert.key] = StoredState(id=stored.id if stored else None,
                                                status=alert.status, status_at=alert.status_at)
        decisions[i] = per_alert
    return decisions


async def record_no_match(session: AsyncSession, changes: list[AlertChange]) -> None:
    """The default mapper hook: note that no runbook handles these alerts."""
    new_ids = [c.alert_id for c in changes if c.kind == NEW]
    if new_ids:
        await session.execute(
            update(Alert).where(Alert.id.in_(new_ids)).values(match_note=NO_RUNBOOK)
        )


async def ingest_batch(
    session: AsyncSession, envelopes: Sequence[Envelope], *, hook: AlertHook = record_no_match,
    known_states: States | None = None,
) -> list[IngestResult]:
    """Store every envelope of a batch; the caller commits. Results follow the input order.

    `known_states`: the stored states of every alert of the batch, when the caller has just
    read them (the redelivery lane, declining a batch without delivery ids).
    """
    seen_delivery_keys = await _known_delivery_keys(session, envelopes)
    fresh: list[int] = []  # indexes of envelopes that are not redeliveries
    for i, env in enumerate(envelopes):
        key = (env.source, env.delivery_key)
        if env.delivery_key is not None and key in seen_delivery_keys:
            continue
        if env.delivery_key is not None:
            seen_delivery_keys.add(key)
        fresh.append(i)

    states = (known_states if known_states is not None else
              await _stored_states(session, [a for i in fresh for a in envelopes[i].alerts]))
    decisions = decide_batch(envelopes, fresh, states)

    parts = [i for i in fresh if envelopes[i].delivery_id is not None]
    inserted = [i for i in fresh if envelopes[i].delivery_id is None]
    only_write = not parts and all(
        d == DUPLICATE for per_alert in decisions.values() for d in per_alert)
    delivery_ids = await _insert_deliveries(
        session, [envelopes[i] for i in inserted], decisions, inserted, only_write=only_write
    )
    for i in parts:
        delivery_ids[i] = await add_counts(session, envelopes[i], decisions[i])
    changes = await _write_alerts(session, envelopes, decisions, delivery_ids, states)
    if changes:
        await hook(session, changes)

    results = []
    for i, env in enumerate(envelopes):
        if i not in decisions:
            results.append(IngestResult(
                delivery_id=None, received=len(env.alerts), new=0, changed=0,
                duplicate=len(env.alerts), truncated_alerts=env.truncated_alerts,
                duplicate_delivery=True))
            continue
        d = decisions[i]
        results.append(IngestResult(
            delivery_id=delivery_ids[i], received=len(env.alerts), new=d.count(NEW),
            changed=d.count(CHANGED), duplicate=d.count(DUPLICATE),
            truncated_alerts=env.truncated_alerts))
    return results


async def add_counts(session: AsyncSession, part: Envelope, decisions: list[Decision]) -> int:
    """Add what a later part of a big delivery made of its alerts to the delivery's row."""
    assert part.delivery_id is not None
    await session.execute(update(Delivery).where(Delivery.id == part.delivery_id).values(
        alerts_new=Delivery.alerts_new + decisions.count(NEW),
        alerts_changed=Delivery.alerts_changed + decisions.count(CHANGED),
        alerts_duplicate=Delivery.alerts_duplicate + decisions.count(DUPLICATE)))
    return part.delivery_id


async def _known_delivery_keys(
    session: AsyncSession, envelopes: Sequence[Envelope],
) -> set[tuple[str, str | None]]:
    keys = {(e.source, e.delivery_key) for e in envelopes if e.delivery_key is not None}
    if not keys:
        return set()
    rows = await session.execute(
        select(Delivery.source, Delivery.delivery_key).where(
            tuple_(Delivery.source, Delivery.delivery_key).in_(list(keys))
        )
    )
    return {(s, k) for s, k in rows}


async def _stored_states(session: AsyncSession, alerts: list[NormalizedAlert]) -> States:
    if not alerts:
        return {}
    return await statements.read_states(session, statements.fingerprints_by_source(alerts))


async def _insert_deliveries(
    session: AsyncSession, envelopes: list[Envelope], decisions: dict[int, list[Decision]],
    indexes: list[int], *, only_write: bool,
) -> dict[int, int]:
    if not envelopes:
        return {}
    rows = [
        statements.delivery_row(env, new=decisions[i].count(NEW),
                                changed=decisions[i].count(CHANGED),
                                duplicate=decisions[i].count(DUPLICATE))
        for i, env in zip(indexes, envelopes, strict=True)
    ]
    ids = await statements.insert_deliveries(session, rows, only_write=only_write)
    return dict(zip(indexes, ids, strict=True))


async def _write_alerts(
    session: AsyncSession, envelopes: Sequence[Envelope], decisions: dict[int, list[Decision]],
    delivery_ids: dict[int, int], states: States,
) -> list[AlertChange]:
    # The last word on each alert within the batch is what gets written.
    final: dict[AlertKey, tuple[NormalizedAlert, int, dt.datetime]] = {}
    for i, per_alert in decisions.items():
        for alert, choice in zip(envelopes[i].alerts, per_alert, strict=True):
            if choice != DUPLICATE:
                final[alert.key] = (alert, delivery_ids[i], envelopes[i].received_at)

    new_items = [item for item in final.values() if states[item[0].key].id is None]
    changed_items = [item for item in final.values() if states[item[0].key].id is not None]
    changes: list[AlertChange] = []
    if new_items:
        rows = [statements.alert_row(a, delivery_id=d, received_at=at, match_note=None)
                for a, d, at in new_items]
        ids = await insert_returning_ids(session, Alert.__table__, rows)
        labels = [{"alert_id": alert_id, "name": name[:255], "value": value[:LABEL_VALUE_INDEXED]}
                  for alert_id, (a, _, _) in zip(ids, new_items, strict=True)
                  for name, value in a.labels.items()]
        if labels:
            await session.execute(insert(AlertLabel.__table__), labels)
        changes += [AlertChange(alert_id=alert_id, kind=NEW, alert=a, delivery_id=d)
                    for alert_id, (a, d, _) in zip(ids, new_items, strict=True)]
    if changed_items:
        await session.execute(update(Alert), [
            {"id": states[a.key].id, "status": a.status, "status_at": a.status_at,
             "ends_at": a.ends_at, "updated_at": at, "last_delivery_id": d}
            for a, d, at in changed_items
        ])
        changes += [AlertChange(alert_id=states[a.key].id or 0, kind=CHANGED, alert=a,
                                delivery_id=d)
                    for a, d, _ in changed_items]
    return changes
