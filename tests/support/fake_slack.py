"""A stand-in for Slack's side of interactivity: signs block_actions requests the way Slack
does, and serves `response_url` endpoints on 127.0.0.1 that record each update and check its
JSON shape as Slack would (PROTOCOLS.md)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from app.notify import slack_messages as blocks
from tests.support.fake_receivers import slack_block_errors
from tests.support.net import serve_app

SIGNING_SECRET = "slack-signing-secret-for-tests-0123456789"


def sign(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    """X-Slack-Signature for a body sent at `timestamp`."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def response_errors(message: Any) -> list[str]:
    """What Slack would reject in a response_url message (empty when it is valid)."""
    if not isinstance(message, dict):
        return ["message is not an object"]
    errors = []
    if not isinstance(message.get("replace_original"), bool):
        errors.append("replace_original must be a boolean")
    if message.get("response_type") not in (None, "ephemeral", "in_channel"):
        errors.append("bad response_type")
    if "blocks" in message:
        errors += slack_block_errors(message)
    elif not isinstance(message.get("text"), str) or not message["text"].strip():
        errors.append("a message needs text or blocks")
    return errors


@dataclass
class FakeSlack:
    url: str = ""
    updates: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Any] = field(default_factory=list)

    def response_url(self, key: str = "1") -> str:
        return f"{self.url}/actions/T0001/{key}/hook"

    async def wait_updates(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.updates) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"response_url got {len(self.updates)} updates, wanted "
                                     f"{count}; rejected: {self.rejected}")
            await asyncio.sleep(0.05)
        return self.updates


def fake_slack_app(fake: FakeSlack) -> FastAPI:
    app = FastAPI()

    @app.post("/actions/{team}/{key}/hook")
    async def respond(team: str, key: str, request: Request) -> Response:
        try:
            message = json.loads(await request.body())
        except ValueError:
            fake.rejected.append("invalid JSON")
            return JSONResponse({"ok": False, "error": "invalid_payload"}, status_code=400)
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            fake.rejected.append("not JSON content type")
            return JSONResponse({"ok": False, "error": "invalid_content_type"}, status_code=400)
        errors = response_errors(message)
        if errors:
            fake.rejected.append(errors)
            return JSONResponse({"ok": False, "error": "invalid_blocks", "errors": errors},
                                status_code=400)
        fake.updates.append({"key": key, **message})
        return JSONResponse({"ok": True})

    return app


@contextlib.asynccontextmanager
async def run_fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    async with serve_app(fake_slack_app(fake)) as running:
        fake.url = running.url
        yield fake


# The plan hash of a message no step ever had: a click on it is an outdated click.
NO_PLAN = "0" * 64


def block_actions(*, user: str, execution_id: int, step_id: str, action: str = "approve",
                  response_url: str = "", username: str = "someone",
                  plan_hash: str = NO_PLAN) -> dict[str, Any]:
    """A block_actions payload as Slack sends it for a click on our approval message."""
    message = blocks.build_message("approval_request", title="Test runbook on model:fraud-v3",
                                   execution_id=execution_id, step_id=step_id,
                                   approve_url="http://127.0.0.1/approve/x",
                                   execution_url=f"http://127.0.0.1/executions/{execution_id}",
                                   plan="a plan", plan_hash=plan_hash)
    value = blocks.button_value(execution_id, step_id, plan_hash)
    return {
        "type": "block_actions",
        "user": {"id": user, "username": username, "team_id": "T0001"},
        "team": {"id": "T0001", "domain": "example"},
        "api_app_id": "A0001",
        "container": {"type": "message", "message_ts": "1700000000.000100"},
        "trigger_id": "1.2.3",
        "channel": {"id": "C0001", "name": "ml-oncall"},
        "message": {"type": "message", "ts": "1700000000.000100", **message},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action, "block_id": f"runbookd-{execution_id}",
                     "value": value, "action_ts": f"{time.time():.6f}",
                     "text": {"type": "plain_text", "text": action.title()}}],
    }


def form_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed_headers(body: bytes, *, timestamp: str | None = None,
                   secret: str = SIGNING_SECRET) -> dict[str, str]:
    ts = timestamp if timestamp is not None else str(int(time.time()))
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign(body, ts, secret),
            "Content-Type": "application/x-www-form-urlencoded"}
