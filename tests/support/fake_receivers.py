"""Stand-ins for Slack, PagerDuty and a generic webhook, as real HTTP servers on 127.0.0.1.

Each checks what the real service checks (PROTOCOLS.md) and answers as it does, records every
request, and can fail the first N requests with a chosen status to exercise retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from tests.support.net import serve_app

BLOCK_TYPES = {"section", "context", "actions", "divider", "header", "image", "input",
               "rich_text", "file", "video", "markdown"}
TEXT_TYPES = {"plain_text", "mrkdwn"}
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    method: str = "POST"

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What a fake receiver saw, and the statuses to answer before behaving normally."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    # Seconds to wait before answering: lets a test time out a delivery.
    delay: float = 0.0

    def fail(self, *statuses: int) -> None:
        self.fail_next.extend(statuses)

    @property
    def accepted(self) -> list[Recorded]:
        return [r for r in self.requests if 200 <= r.status < 300]


def _text_object_errors(obj: Any, where: str, *, max_len: int, plain_only: bool = False,
                        ) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in TEXT_TYPES:
        return [f"{where}: not a text object"]
    if plain_only and obj["type"] != "plain_text":
        return [f"{where}: must be plain_text"]
    text = obj.get("text")
    if not isinstance(text, str) or not text or len(text) > max_len:
        return [f"{where}: text must be 1..{max_len} characters"]
    return []


def slack_block_errors(payload: Any) -> list[str]:
    """What Slack would reject in an incoming-webhook payload (empty when it is valid)."""
    if not isinstance(payload, dict):
        return ["payload is not an object"]
    errors: list[str] = []
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        errors.append("missing text fallback")
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return [*errors, "blocks must be a list of at most 50"]
    action_ids: set[str] = set()
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            errors.append(f"{where}: unknown block type")
            continue
        if "block_id" in block:
            if block["block_id"] in block_ids or len(block["block_id"]) > 255:
                errors.append(f"{where}: duplicate or long block_id")
            block_ids.add(block["block_id"])
        kind = block["type"]
        if kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"{where}: section needs text or fields")
            if "text" in block:
                errors += _text_object_errors(block["text"], f"{where}.text", max_len=3000)
        elif kind == "header":
            errors += _text_object_errors(block.get("text"), f"{where}.text", max_len=150,
                                          plain_only=True)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                errors.append(f"{where}: context needs 1..10 elements")
                continue
            for n, element in enumerate(elements):
                if isinstance(element, dict) and element.get("type") == "image":
                    continue
                errors += _text_object_errors(element, f"{where}.elements[{n}]", max_len=3000)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                errors.append(f"{where}: actions needs 1..25 elements")
                continue
            for n, element in enumerate(elements):
                at = f"{where}.elements[{n}]"
                if not isinstance(element, dict) or element.get("type") != "button":
                    errors.append(f"{at}: not a button")
                    continue
                errors += _text_object_errors(element.get("text"), f"{at}.text", max_len=75,
                                              plain_only=True)
                action_id = element.get("action_id")
                if not isinstance(action_id, str) or not action_id or len(action_id) > 255:
                    errors.append(f"{at}: action_id missing or too long")
                elif action_id in action_ids:
                    errors.append(f"{at}: duplicate action_id {action_id}")
                else:
                    action_ids.add(action_id)
                if len(str(element.get("value", ""))) > 2000:
                    errors.append(f"{at}: value longer than 2000")
                if element.get("style") not in (None, "primary", "danger"):
                    errors.append(f"{at}: bad style")
                url = element.get("url")
                if url is not None and (not isinstance(url, str) or len(url) > 3000):
                    errors.append(f"{at}: bad url")
    return errors


def pagerduty_event_errors(event: Any) -> list[str]:
    """What the Events API v2 would reject (empty when the event is valid)."""
    if not isinstance(event, dict):
        return ["event is not an object"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("'routing_key' must be 32 characters")
    action = event.get("event_action")
    if action not in PD_ACTIONS:
        errors.append("'event_action' is invalid")
    if action in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append("'dedup_key' is required to acknowledge or resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing"]
        for name in ("summary", "source", "severity"):
            if not payload.get(name):
                errors.append(f"'payload.{name}' is missing or blank")
        if payload.get("severity") not in PD_SEVERITIES:
            errors.append("'payload.severity' is invalid")
        if len(str(payload.get("summary", ""))) > 1024:
            errors.append("'payload.summary' is longer than 1024")
    return errors


async def _record(receiver: Receiver, request: Request) -> tuple[bytes, int | None]:
    body = await request.body()
    # Wait in small steps and stop when the client goes away, so shutdown is never held up.
    deadline = asyncio.get_running_loop().time() + receiver.delay
    while asyncio.get_running_loop().time() < deadline:
        if await request.is_disconnected():
            break
        await asyncio.sleep(0.05)
    forced = receiver.fail_next.pop(0) if receiver.fail_next else None
    return body, forced


def slack_app(receiver: Receiver) -> FastAPI:
    app = FastAPI()

    @app.post("/services/{path:path}")
    async def incoming(path: str, request: Request) -> Response:
        body, forced = await _record(receiver, request)
        if forced:
            response: Response = PlainTextResponse("rate_limited" if forced == 429 else
                                                   "internal_error", status_code=forced,
                                                   headers={"Retry-After": "0"})
        else:
            try:
                errors = slack_block_errors(json.loads(body))
            except ValueError:
                errors = ["invalid_payload"]
            response = (PlainTextResponse("invalid_blocks", status_code=400) if errors
                        else PlainTextResponse("ok"))
        receiver.requests.append(Recorded(path, dict(request.headers), body,
                                          response.status_code))
        return response

    return app


def pagerduty_app(receiver: Receiver) -> FastAPI:
    app = FastAPI()

    @app.post("/v2/enqueue")
    async def enqueue(request: Request) -> Response:
        body, forced = await _record(receiver, request)
        if forced:
            response: Response = JSONResponse({"status": "throttled" if forced == 429 else
                                               "error"}, status_code=forced)
        else:
            try:
                event = json.loads(body)
                errors = pagerduty_event_errors(event)
            except ValueError:
                event, errors = {}, ["invalid JSON"]
            if errors:
                response = JSONResponse({"status": "invalid event",
                                         "message": "Event object is invalid",
                                         "errors": errors}, status_code=400)
            else:
                response = JSONResponse({"status": "success", "message": "Event processed",
                                         "dedup_key": event.get("dedup_key")}, status_code=202)
        receiver.requests.append(Recorded("/v2/enqueue", dict(request.headers), body,
                                          response.status_code))
        return response

    return app


def webhook_app(receiver: Receiver) -> FastAPI:
    app = FastAPI()

    @app.post("/{path:path}")
    async def hook(path: str, request: Request) -> Response:
        body, forced = await _record(receiver, request)
        key = request.headers.get("idempotency-key")
        if forced:
            response: Response = JSONResponse({"error": "try later"}, status_code=forced)
        elif not key:
            response = JSONResponse({"error": "Idempotency-Key header required"},
                                    status_code=400)
        else:
            duplicate = any(r.headers.get("idempotency-key") == key for r in receiver.accepted)
            response = JSONResponse({"ok": True, "duplicate": duplicate})
        receiver.requests.append(Recorded(path, dict(request.headers), body,
                                          response.status_code))
        return response

    return app


@contextlib.asynccontextmanager
async def run_receiver(kind: str) -> AsyncIterator[Receiver]:
    """Serve the fake `slack`, `pagerduty` or `webhook` receiver; yields its record."""
    receiver = Receiver()
    app = {"slack": slack_app, "pagerduty": pagerduty_app, "webhook": webhook_app}[kind](receiver)
    async with serve_app(app) as running:
        receiver.url = running.url
        yield receiver


@dataclass
class FakeApi:
    """A small HTTP API for http.request and artifact tests: echo, fixed statuses, files, an
    Airflow-like DAG-run endpoint behind a bearer token, and a route that never answers."""

    url: str = ""
    token: str = "airflow-token-for-tests-0123"
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    dag_runs: list[dict[str, Any]] = field(default_factory=list)
    # How many requests reached /slow.
    slow_started: int = 0


def fake_api_app(api: FakeApi) -> FastAPI:
    app = FastAPI()

    async def record(request: Request, status: int) -> None:
        api.requests.append(Recorded(request.url.path, dict(request.headers),
                                     await request.body(), status, request.method))

    @app.api_route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def echo(request: Request) -> Response:
        body = await request.body()
        await record(request, 200)
        return JSONResponse({"method": request.method, "query": dict(request.query_params),
                             "headers": dict(request.headers),
                             "json": json.loads(body) if body else None})

    @app.get("/status/{code}")
    async def status(code: int, request: Request) -> Response:
        await record(request, code)
        return JSONResponse({"detail": f"answered {code} on purpose"}, status_code=code)

    @app.get("/big")
    async def big(request: Request) -> Response:
        await record(request, 200)
        return PlainTextResponse("x" * 1_000_000)

    @app.api_route("/slow", methods=["GET", "POST"])
    async def slow(request: Request) -> Response:
        await record(request, 200)
        api.slow_started += 1
        # Ends as soon as the client goes away, so the server can shut down at once.
        for _ in range(600):
            if await request.is_disconnected():
                break
            await asyncio.sleep(0.1)
        return PlainTextResponse("late")

    @app.get("/files/{name:path}")
    async def files(name: str, request: Request) -> Response:
        await record(request, 200 if name in api.files else 404)
        if name not in api.files:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return Response(api.files[name], media_type="application/octet-stream")

    @app.post("/api/v1/dags/{dag_id}/dagRuns")
    async def dag_run(dag_id: str, request: Request) -> Response:
        response = await _dag_run(dag_id, request)
        await record(request, response.status_code)
        return response

    async def _dag_run(dag_id: str, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {api.token}":
            return JSONResponse({"title": "Unauthorized", "status": 401}, status_code=401)
        body = await request.json()
        run = {"dag_id": dag_id, "dag_run_id": body.get("dag_run_id") or
               f"manual__{len(api.dag_runs)}", "conf": body.get("conf", {}), "state": "queued"}
        if any(r["dag_run_id"] == run["dag_run_id"] for r in api.dag_runs):
            return JSONResponse({"title": "Conflict", "status": 409,
                                 "detail": f"DAGRun {run['dag_run_id']} already exists"},
                                status_code=409)
        api.dag_runs.append(run)
        return JSONResponse(run)

    return app


@contextlib.asynccontextmanager
async def run_fake_api() -> AsyncIterator[FakeApi]:
    """Serve a FakeApi on 127.0.0.1."""
    api = FakeApi()
    async with serve_app(fake_api_app(api)) as running:
        api.url = running.url
        yield api
