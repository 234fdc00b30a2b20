"""Credentials the tests send: the webhook token every test runbookd accepts, and headers."""

from __future__ import annotations

WEBHOOK_TOKEN = "webhook-token-for-tests-0123456789"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# What a webhook sender posts with: the bearer token and a JSON body.
WEBHOOK_HEADERS = {**auth(WEBHOOK_TOKEN), "Content-Type": "application/json"}
