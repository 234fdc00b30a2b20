"""`http.request`: one templated HTTP call, e.g. an Airflow DAG re-run or a feature flag flip.

Secrets are referenced by name only: `auth_secret: airflow_token` sends `Authorization: Bearer
<settings.secrets['airflow_token']>` and `secret_headers: {X-Api-Key: flags_key}` sends that
secret as a header. A credential written inline in `headers` is refused, and a secret value
echoed back in a response body is replaced by `***` before it reaches the step output.

Its plan is the request line without the query string or any header ("POST
https://airflow.internal/api/v2/dags/retrain/dagRuns"): a query or a header may carry a token.
`resolved` holds the method, that URL and the sha256 of the JSON body.

`until:` polls: the GET is re-sent every `interval` until the value at a JSON path equals the
awaited one, for at most `within` (app/actions/http_until.py). Only a GET may poll: repeating
a POST repeats its side effect. While waiting, an answer of 429 or 5xx, an unreachable host
and a path not (yet) in the answer are retried; a `fail_on` value, another unexpected status
or an answer that is not JSON ends the wait at once. A drill sends the GET once and reports
the value it sees now.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

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
    Waits,
)
from app.actions.downloads import display
from app.actions.http_until import UntilSpec, lookup, show_path, show_value
from app.durations import Duration, format_duration
from app.outbound import HostNotAllowed

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
    until: UntilSpec | None = None

    model_config = ConfigDict(populate_by_name=True)

    @model_validator(mode="after")
    def _polls_only_reads(self) -> RequestParams:
        if self.until is not None and self.method != "GET":
            raise ValueError(
                f"until re-sends the request until the answer matches, so it works only with "
                f"GET, not {self.method}: a repeated POST, PUT, PATCH or DELETE repeats its "
                "side effect, and a HEAD answer has no body to read. Send the change in one "
                "step and poll its status URL with a GET in the next")
        return self

    def waits(self) -> Waits:
        # The last request of a poll starts at `within`; one interval on top covers it.
        if self.until is None:
            return Waits()
        return Waits(at_most=(self.until.within + self.until.interval).total_seconds())

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
    import httpx  # where used, not at start-up (app/outbound.py says why)

    return str(httpx.URL(url).copy_with(query=None, fragment=None, userinfo=b""))


@dataclass(frozen=True)
class Answer:
    """One answer, its body read (at most READ_LIMIT bytes) and every secret redacted."""

    status: int
    body: str
    cut: bool
    output: dict[str, Any]

    def unexpected(self, target: str, expected: list[int]) -> ActionFailed:
        return ActionFailed(f"{target} answered {self.status}, expected "
                            f"{describe_statuses(expected)}: {truncate(self.body.strip(), 300)}",
                            output=self.output)


@dataclass(frozen=True)
class Seen:
    """One request of a poll: the value at the path, or why there is none yet."""

    path: str
    output: dict[str, Any]
    found: bool = False
    value: Any = None
    missing: str = ""
    # Set when the request got no usable answer (unreachable, 429, 5xx): worth a retry.
    failure: ActionFailed | None = None

    def describe(self) -> str:
        if self.found:
            return f"{self.path} is {show_value(self.value)}"
        if self.failure is not None:
            return f"no usable answer ({truncate(self.failure.message, 300)})"
        return f"{self.path} is not in the answer ({self.missing})"

    def as_output(self, attempts: int, waited: float) -> dict[str, Any]:
        out = {**self.output, "path": self.path, "attempts": attempts,
               "waited_seconds": round(waited, 3)}
        if self.found:
            out["value"] = self.value
        return out


def took(seconds: float) -> str:
    """A wait for people: `2.4s` when short, `10m` when long."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    return format_duration(dt.timedelta(seconds=round(seconds)))


def requests_made(count: int) -> str:
    return f"{count} request{'' if count == 1 else 's'}"


class HttpRequest:
    name: ClassVar[str] = "http.request"
    Params = RequestParams
    idempotent: ClassVar[bool] = False
    description: ClassVar[str] = (
        "Sends one HTTP request to an allow-listed host (secrets by name) and checks the "
        "status; with `until`, re-sends a GET until a JSON value matches (`within` bounds it)."
    )

    @staticmethod
    def reads_only(params: RequestParams) -> bool:
        """GET and HEAD read (HTTP's safe methods): a drill sends them; it never sends others."""
        return params.method in ("GET", "HEAD")

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
        resolved: dict[str, Any] = {"method": params.method, "url": url,
                                    "body_sha256": digest}
        if params.until is not None:
            summary += f" {params.until.describe()}"
            resolved["until"] = params.until.as_resolved()
        return ActionPlan(summary=summary, resolved=resolved)

    async def run(self, ctx: ActionContext, params: RequestParams) -> ActionResult:
        headers, secrets = self._headers(ctx, params)
        target = f"{params.method} {display(params.url)}"
        doing = f"http.request {target}"
        try:
            ctx.http.check(params.url)
        except Exception as exc:
            raise outbound_failure(exc, url=params.url, doing=doing) from exc
        if ctx.dry_run and params.until is not None:
            # A GET reads: a drill sends it once and says what a real run would wait for.
            seen = await self._look(ctx, params, params.until, headers, secrets, target)
            if seen.failure is not None:
                raise seen.failure
            return ActionResult(f"dry run (read-only, one request): would poll {target} "
                                f"{params.until.describe()}; now: {seen.describe()}",
                                seen.as_output(1, 0.0))
        if ctx.dry_run and self.reads_only(params):
            # A GET reads: a drill sends it once, so a moved URL or a lost secret shows.
            answer = await self._answer(ctx, params, headers, secrets, doing)
            if answer.status not in params.expect_status:
                raise answer.unexpected(target, params.expect_status)
            return ActionResult(f"dry run (read-only, one request): {target} answered "
                                f"{answer.status}", answer.output)
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
        if params.until is not None:
            return await self._poll(ctx, params, params.until, headers, secrets, target)
        answer = await self._answer(ctx, params, headers, secrets, doing)
        if answer.status not in params.expect_status:
            raise answer.unexpected(target, params.expect_status)
        return ActionResult(f"{target} answered {answer.status}", answer.output)

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

    async def _poll(self, ctx: ActionContext, params: RequestParams, until: UntilSpec,
                    headers: dict[str, str], secrets: list[str], target: str) -> ActionResult:
        """Re-send the GET until the value matches, a fail_on value comes, or time is up."""
        within = until.within.total_seconds()
        start = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            seen = await self._look(ctx, params, until, headers, secrets, target)
            waited = time.monotonic() - start
            if seen.found and until.matches(seen.value):
                return ActionResult(f"{target}: {seen.describe()} after {took(waited)} "
                                    f"({requests_made(attempts)})",
                                    seen.as_output(attempts, waited))
            if seen.found and until.fails(seen.value):
                raise ActionFailed(
                    f"{target}: {seen.describe()}, a fail_on value, after {took(waited)} "
                    f"({requests_made(attempts)}); it was to become {until.describe_wanted()}",
                    output=seen.as_output(attempts, waited))
            if waited >= within:
                break
            # The last request goes out at `within`, not up to an interval before it.
            await asyncio.sleep(min(until.interval.total_seconds(), within - waited))
        raise ActionFailed(
            f"{target}: {seen.path} did not become {until.describe_wanted()} within "
            f"{format_duration(until.within)}; after {took(waited)} "
            f"({requests_made(attempts)}) the last answer said: {seen.describe()}",
            output=seen.as_output(attempts, waited))

    async def _look(self, ctx: ActionContext, params: RequestParams, until: UntilSpec,
                    headers: dict[str, str], secrets: list[str], target: str) -> Seen:
        """One request of a poll, read into a Seen; raises only on what waiting cannot fix."""
        path = show_path(until.segments)
        try:
            answer = await self._answer(ctx, params, headers, secrets, f"http.request {target}")
        except ActionFailed as exc:
            if isinstance(exc.__cause__, HostNotAllowed):
                raise
            return Seen(path, {}, failure=exc)  # unreachable or slow: it may come back
        if answer.status not in params.expect_status:
            failure = answer.unexpected(target, params.expect_status)
            if answer.status == 429 or answer.status >= 500:
                return Seen(path, answer.output, failure=failure)
            raise failure
        if answer.cut:
            raise ActionFailed(
                f"{target}: the answer is larger than {READ_LIMIT // 1024} KiB, and until "
                "reads its value from the whole JSON answer: poll a smaller status "
                "resource, or ask for fewer fields", output=answer.output)
        try:
            document = json.loads(answer.body)
        except ValueError:
            raise ActionFailed(
                f"{target} answered {answer.status} with a body that is not JSON, and until "
                f"reads {path} from a JSON answer: {truncate(answer.body.strip(), 200)!r}",
                output=answer.output) from None
        found = lookup(document, until.segments)
        if not found.found:
            # A status field often appears only once the work starts: keep asking.
            return Seen(path, answer.output, missing=found.missing)
        return Seen(path, answer.output, found=True, value=found.value)

    async def _answer(self, ctx: ActionContext, params: RequestParams, headers: dict[str, str],
                      secrets: list[str], doing: str) -> Answer:
        """Send the request and read the answer, with secrets redacted from the body."""
        status, raw, cut = await self._send(ctx, params, headers, doing)
        body = redact(raw.decode("utf-8", "replace"), secrets)
        output: dict[str, Any] = {"status": status, "body": truncate(body)}
        if cut:
            output["body_truncated"] = True
        parsed = None if cut else small_json(body.encode())
        if parsed is not None:
            output["json"] = parsed
        return Answer(status, body, cut, output)

    @staticmethod
    async def _send(ctx: ActionContext, params: RequestParams, headers: dict[str, str],
                    doing: str) -> tuple[int, bytes, bool]:
        """Send the request, reading at most READ_LIMIT bytes of the answer."""
        import httpx

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
