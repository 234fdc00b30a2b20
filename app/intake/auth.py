"""Webhook authentication: bearer tokens, basic auth and HMAC signatures, in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

from app.config import Settings
from app.errors import Unauthenticated

log = logging.getLogger(__name__)

# How far a signed Grafana timestamp may be from now, either way, as Slack allows.
GRAFANA_WINDOW_SECONDS = 300


def _digest(value: bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison constant-time even when the
    # presented credential and the configured one differ in length.
    return hashlib.sha256(value).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookAuth:
    """The credentials that webhook senders may present, prepared once at start-up."""

    bearer: tuple[bytes, ...]
    basic: tuple[bytes, ...]
    pagerduty: tuple[bytes, ...]
    grafana: bytes | None
    grafana_timestamp_header: str | None
    open_in_dev: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookAuth:
        tokens = [t.get_secret_value() for t in settings.webhook_tokens]
        if settings.dev_token is not None:
            tokens.append(settings.dev_token.get_secret_value())
        basic = [p.get_secret_value() for p in settings.webhook_basic_auth]
        return cls(
            bearer=tuple(_digest(t.encode()) for t in tokens),
            basic=tuple(_digest(p.encode()) for p in basic),
            pagerduty=tuple(s.get_secret_value().encode() for s in settings.pagerduty_secrets),
            grafana=(settings.grafana_secret.get_secret_value().encode()
                     if settings.grafana_secret else None),
            grafana_timestamp_header=settings.grafana_timestamp_header,
            # With nothing configured, a development instance accepts anonymous webhooks;
            # a production one accepts none.
            open_in_dev=settings.env == "dev" and not tokens and not basic,
        )

    def check_credentials(self, authorization: str | None) -> None:
        """Accept a configured bearer token or basic-auth pair; raise 401 otherwise."""
        if self.open_in_dev:
            return
        if not authorization or " " not in authorization:
            raise Unauthenticated()
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            if _matches_any(_digest(value.encode()), self.bearer):
                return
        elif scheme == "basic":
            try:
                pair = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise Unauthenticated(scheme="Basic") from None
            if _matches_any(_digest(pair), self.basic):
                return
            raise Unauthenticated(scheme="Basic")
        raise Unauthenticated()

    def check_pagerduty(self, body: bytes, header: str | None) -> None:
        """`X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`: any one valid signature passes."""
        if not self.pagerduty:
            if self.open_in_dev:
                return
            raise Unauthenticated("PagerDuty webhooks are not configured on this server")
        if not header:
            raise Unauthenticated("missing X-PagerDuty-Signature")
        presented = [
            part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")
        ]
        expected = [hmac.new(s, body, hashlib.sha256).hexdigest() for s in self.pagerduty]
        ok = False
        for sig in presented:
            for want in expected:
                ok |= hmac.compare_digest(sig.encode(), want.encode())
        if not ok:
            raise Unauthenticated("invalid X-PagerDuty-Signature")

    def check_grafana(self, body: bytes, signature: str | None, timestamp: str | None) -> None:
        """Grafana's optional HMAC: hex sha256 of the body, or of "{timestamp}:{body}"."""
        if self.grafana is None:
            return
        if not signature:
            raise Unauthenticated("missing X-Grafana-Alerting-Signature")
        message = body
        if self.grafana_timestamp_header:
            if not timestamp:
                raise Unauthenticated(f"missing {self.grafana_timestamp_header}")
            message = timestamp.encode() + b":" + body
        want = hmac.new(self.grafana, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.strip().encode(), want.encode()):
            raise Unauthenticated("invalid X-Grafana-Alerting-Signature")
        if self.grafana_timestamp_header:
            _check_fresh(self.grafana_timestamp_header, timestamp or "")


def _check_fresh(header: str, timestamp: str) -> None:
    """A signed timestamp (Unix seconds) within 5 minutes of now: an older signature is a
    replay, or a clock that is wrong. The log says which header and how far; the signature
    itself is never logged."""
    shown = repr(timestamp[:32])
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        log.warning("grafana webhook refused: %s %s is not a Unix time in seconds",
                    header, shown)
        raise Unauthenticated(f"{header} must be a Unix time in seconds, within 5 minutes "
                              "of now")
    skew = time.time() - int(timestamp)
    if abs(skew) > GRAFANA_WINDOW_SECONDS:
        when = f"{skew:.0f} s old" if skew > 0 else f"{-skew:.0f} s in the future"
        log.warning("grafana webhook refused: the signed %s %s is %s (at most %d s either "
                    "way): a replay, or the clocks of Grafana and runbookd disagree",
                    header, shown, when, GRAFANA_WINDOW_SECONDS)
        raise Unauthenticated(f"the signed {header} is more than 5 minutes from now: check "
                              "the clocks, or this is a replayed delivery")


def _matches_any(presented: bytes, configured: tuple[bytes, ...]) -> bool:
    # Compare against every configured value, so timing does not tell which one matched.
    found = False
    for candidate in configured:
        found |= hmac.compare_digest(presented, candidate)
    return found
