"""`http.request`: one templated HTTP call, e.g. an Airflow DAG re-run or a feature flag flip.

Secrets are referenced by name only: `auth_secret: airflow_token` sends `Authorization: Bearer
<settings.secrets['airflow_token']>` and `secret_headers: {X-Api-Key: flags_key}` sends that
secret as a header. A credential written inline in `headers` is refused, and a secret value
echoed back in a response body is replaced by `***` before it reaches the step output.

Its plan is the request line without the query string or any header ("POST
https://airflow.internal/api/v2/dags/retrain/dagRuns"): a query or a header may carry a token.
`resolved` holds the method, that URL and the sha256 of the JSON body.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, ClassVar, Literal

import httpx
from pydantic import ConfigDict, Field, field_validator

from app.actions._support import (
    json_sha256,
    outbound_failure,
    redact,
    secret_value,
    small_json,
    truncate,
)
from app.actions.base import (
    ActionContext,
    ActionFailed,
    ActionParams,
    ActionPlan,
    ActionResult,
)
from app.actions.downloads import display
from app.durations import Duration

# Headers that carry credentials: they come from secrets, never from the runbook text.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"
# The most of a response body read; the rest is discarded unread.
READ_LIMIT = 64 * 1024

# How much of a JSON body a plan line shows; the hash covers all of it.
PLAN_BODY_SHOWN = 160


class RequestParams(ActionParams):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: str = Field(pattern=r"^https?://", max_length=4096)
    json_: Any = Field(default=None, alias="json")
    params: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    auth_secret: str | None = None
    auth_scheme: Literal["Bearer", "Basic", "Token"] = "Bearer"
    # Header name -> secret name, for APIs that want a key in a header of their own.
    secret_headers: dict[str, str] = Field(default_factory=dict)
    expect_status: list[int] = Field(default_factory=lambda: list(range(200, 300)),
                                     min_length=1)
    timeout: Duration | None = None

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("headers", "secret_headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if not re.match(HEADER_NAME, name):
                raise ValueError(f"{name!r} is not a valid header name")
        return headers

    @field_validator("headers")
    @classmethod
    def _no_inline_credentials(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in CREDENTIAL_HEADERS:
                raise ValueError(f"header {name!r} carries a credential: reference a secret "
                                 "with `auth_secret` or `secret_headers` instead")
        return headers

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, statuses: list[int]) -> list[int]:
        bad = [s for s in statuses if not 100 <= s <= 599]
        if bad:
            raise ValueError(f"not HTTP status codes: {bad}")
        return statuses


def describe_statuses(statuses: list[int]) -> str:
    """[200, ..., 299] as `200-299`; other lists as they are."""
    ordered = sorted(set(statuses))
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(map(str, ordered))


def bare_url(url: str) -> str:
    """The URL without its query, fragment and user info: what a plan may show."""
    return str(httpx.URL(url).copy_with(query=None, fragment=None, userinfo=b""))


class HttpRequest:
    name: ClassVar[str] = "http.request"
    Params = RequestParams
    idempotent: ClassVar[bool] = False
    description: ClassVar[str] = (
        "Sends one HTTP request to an allow-listed host (secrets by name) and checks the status."
    )

    async def plan(self, ctx: ActionContext, params: RequestParams) -> ActionPlan:
        """The request line, once the host is allowed and every named secret exists."""
        self._headers(ctx, params)  # a missing secret fails the plan; values are not kept
        url = bare_url(params.url)
        try:
            ctx.http.check(params.url)
        except Exception as exc:
            raise outbound_failure(exc, url=params.url,
                                   doing=f"http.request {params.method} {url}") from exc
        digest = json_sha256(params.json_)
        summary = f"{params.method} {url}"
        if digest is not None:
            # The body says what the call does (pause or resume, which run): show it, short.
            body = json.dumps(params.json_, sort_keys=True, ensure_ascii=False, default=str)
            shown = body if len(body) <= PLAN_BODY_SHOWN else (
                body[:PLAN_BODY_SHOWN] + f"… (sha256 {digest[:12]})")
            summary += f" with {shown}"
        return ActionPlan(summary=summary, resolved={"method": params.method, "url": url,
                                                     "body_sha256": digest})

    async def run(self, ctx: ActionContext, params: RequestParams) -> ActionResult:
        headers, secrets = self._headers(ctx, params)
        target = f"{params.method} {display(params.url)}"
        doing = f"http.request {target}"
        try:
            ctx.http.check(params.url)
        except Exception as exc:
            raise outbound_failure(exc, url=params.url, doing=doing) from exc
        if ctx.dry_run:
            extras = [f"with JSON {truncate(json.dumps(params.json_), 200)}"
                      if params.json_ is not None else "without a body"]
            if params.auth_secret:
                extras.append(f"auth from secret {params.auth_secret}")
            expected = describe_statuses(params.expect_status)
            planned: dict[str, Any] = {"method": params.method, "url": params.url,
                                       "headers": sorted(headers)}
            if params.json_ is not None:
                planned["json"] = truncate(json.dumps(params.json_))
            return ActionResult(f"would send {target} {', '.join(extras)}, expecting "
                                f"{expected}", planned)
        status, raw, cut = await self._send(ctx, params, headers, doing)
        body = redact(raw.decode("utf-8", "replace"), secrets)
        output: dict[str, Any] = {"status": status, "body": truncate(body)}
        if cut:
            output["body_truncated"] = True
        parsed = None if cut else small_json(body.encode())
        if parsed is not None:
            output["json"] = parsed
        if status not in params.expect_status:
            raise ActionFailed(
                f"{target} answered {status}, expected "
                f"{describe_statuses(params.expect_status)}: {truncate(body.strip(), 300)}",
                output=output)
        return ActionResult(f"{target} answered {status}", output)

    @staticmethod
    def _headers(ctx: ActionContext, params: RequestParams) -> tuple[dict[str, str], list[str]]:
        headers = dict(params.headers)
        secrets: list[str] = []
        if params.auth_secret:
            value = secret_value(ctx, params.auth_secret)
            secrets.append(value)
            token = (base64.b64encode(value.encode()).decode() if params.auth_scheme == "Basic"
                     else value)
            headers["Authorization"] = f"{params.auth_scheme} {token}"
        for header, name in params.secret_headers.items():
            value = secret_value(ctx, name)
            secrets.append(value)
            headers[header] = value
        return headers, secrets

    @staticmethod
    async def _send(ctx: ActionContext, params: RequestParams, headers: dict[str, str],
                    doing: str) -> tuple[int, bytes, bool]:
        """Send the request, reading at most READ_LIMIT bytes of the answer."""
        timeout = (httpx.Timeout(params.timeout.total_seconds()) if params.timeout
                   else httpx.USE_CLIENT_DEFAULT)
        try:
            async with ctx.http.stream(params.method, params.url, json=params.json_,
                                       params=params.params or None, headers=headers,
                                       timeout=timeout) as response:
                body = bytearray()
                cut = False
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > READ_LIMIT:
                        cut = True
                        break
                return response.status_code, bytes(body[:READ_LIMIT]), cut
        except Exception as exc:
            raise outbound_failure(exc, url=params.url, doing=doing) from exc
