"""Hole 12: Grafana deliveries could be replayed for ever. With a timestamp header configured,
the signed timestamp must be within 5 minutes of now; the refusal is a 401 whose reason is
logged, without the signature."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import pytest
from pydantic import SecretStr

from app.config import Settings
from app.errors import Unauthenticated
from app.intake.auth import WebhookAuth

SECRET = "grafana-signing-secret-0123456789"
HEADER = "X-Grafana-Alerting-Signature-Timestamp"
BODY = b'{"receiver":"runbookd","status":"firing","alerts":[]}\n'


def signed(timestamp: str, body: bytes = BODY) -> str:
    return hmac.new(SECRET.encode(), timestamp.encode() + b":" + body,
                    hashlib.sha256).hexdigest()


@pytest.fixture
def grafana() -> WebhookAuth:
    return WebhookAuth.from_settings(Settings(
        env="dev", grafana_secret=SecretStr(SECRET), grafana_timestamp_header=HEADER))


def test_a_fresh_signature_passes(grafana):
    now = time.time()
    for age in (0, 10, 299, -299):
        stamp = str(int(now - age))
        grafana.check_grafana(BODY, signed(stamp), stamp)


@pytest.mark.parametrize(("age", "why"), [(301, "old"), (86_400 * 30, "old"),
                                          (-301, "in the future")])
def test_a_signature_older_than_five_minutes_is_refused(grafana, caplog, age, why):
    now = time.time()
    stamp = str(int(now - age))
    signature = signed(stamp)
    with caplog.at_level(logging.WARNING), pytest.raises(Unauthenticated) as refused:
        grafana.check_grafana(BODY, signature, stamp)
    assert refused.value.status_code == 401
    assert "5 minutes" in refused.value.message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert why in logged and stamp in logged and "replay" in logged
    assert signature not in logged and signature not in refused.value.message


@pytest.mark.parametrize("stamp", ["", "soon", "1e9", "-1", "9" * 400, "17000000000.5"])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(grafana, caplog, stamp):
    signature = signed(stamp)
    with caplog.at_level(logging.WARNING), pytest.raises(Unauthenticated):
        grafana.check_grafana(BODY, signature, stamp)
    assert all(signature not in r.getMessage() for r in caplog.records)


def test_a_bad_signature_is_refused_whatever_its_timestamp(grafana):
    stamp = str(int(time.time()))
    with pytest.raises(Unauthenticated, match="invalid X-Grafana-Alerting-Signature"):
        grafana.check_grafana(BODY, signed(stamp, b"other body"), stamp)


def test_without_a_timestamp_header_there_is_nothing_to_date():
    """Grafana signs the body alone then; replays are the intake's idempotency's business."""
    plain = WebhookAuth.from_settings(Settings(env="dev", grafana_secret=SecretStr(SECRET)))
    signature = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    plain.check_grafana(BODY, signature, None)
