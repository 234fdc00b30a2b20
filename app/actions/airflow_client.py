"""A small client for Airflow's stable REST API, bound to one action context.

Two APIs, chosen explicitly (`api:` on the step, else RUNBOOKD_AIRFLOW_API):
- `v2` (Airflow 3): `/api/v2`, with a JWT from `POST /auth/token`. Tokens are cached per
  server and credential; a 401 or 403 fetches a new one once (it expired, or the server
  restarted with a new signing key).
- `v1` (Airflow 2): `/api/v1`, with HTTP basic auth. `execution_date` is v1's name for
  `logical_date`.

The credential is a secret holding `user:password`, named by `auth_secret` or
RUNBOOKD_AIRFLOW_AUTH_SECRET. Every call goes through the allow-listed HTTP client; errors
name the host and the call, never the credential or the token.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from app.actions._support import (
    error_detail,
    host_of,
    outbound_failure,
    redact,
    secret_value,
    truncate,
)
from app.actions.base import ActionContext, ActionFailed, ActionParams
from app.outbound import HostNotAllowed

if TYPE_CHECKING:
    import httpx

Api = Literal["v2", "v1"]
# Airflow's own rules (KEY_REGEX, allowed_run_id_pattern), except that an id never starts with
# a dot: "." and ".." must not reach a URL path.
DAG_ID = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,249}$"
RUN_ID = r"^[A-Za-z0-9_][A-Za-z0-9_.~:+-]{0,249}$"
# `dag_run_id: "@latest"` names the DAG's newest run, resolved when the step is planned (and
# again when it runs). No run can be called that: "@" is outside RUN_ID above and outside
# Airflow's default allowed_run_id_pattern (^[A-Za-z0-9_.~:+-]+$) and its scheduled run ids.
LATEST = "@latest"
RUN_REF = rf"^(?:{LATEST}|{RUN_ID[1:-1]})$"
TERMINAL = frozenset({"success", "failed"})
# Tokens by (server, sha256 of the credential): a rotated secret never reuses an old token.
_TOKENS: dict[tuple[str, str], str] = {}
_TOKENS_KEPT = 64


class AirflowUnavailable(ActionFailed):
    """Airflow could not be reached, or answered 5xx: worth reading again while time remains."""


class AirflowParams(ActionParams):
    dag_id: str = Field(pattern=DAG_ID)
    url: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)
    api: Api | None = None
    auth_secret: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("url")
    @classmethod
    def _no_inline_credentials(cls, url: str | None) -> str | None:
        import httpx  # where used, not at start-up (app/outbound.py says why)

        if url is not None and httpx.URL(url).userinfo:
            raise ValueError("the URL carries a user or password: name a secret holding "
                             "`user:password` with `auth_secret` instead")
        return url


class RunParams(AirflowParams):
    # A run id, or "@latest" for the DAG's newest run (see `Airflow.resolve_run`).
    dag_run_id: str = Field(pattern=RUN_REF)


def run_named(dag_id: str, run_id: str, *, newest: bool) -> str:
    """A run as the plans and results name it: "run X of dag", or "run X (the newest of
    dag)" when the step asked for "@latest", so the approver sees which run that was."""
    return f"run {run_id} (the newest of {dag_id})" if newest else f"run {run_id} of {dag_id}"


class Airflow:
    """One Airflow server, as a step sees it: base URL, API, credential; errors name the host."""

    def __init__(self, ctx: ActionContext, params: AirflowParams):
        self.ctx = ctx
        base = params.url or ctx.settings.airflow_url
        if not base:
            raise ActionFailed("no Airflow URL: set RUNBOOKD_AIRFLOW_URL, or `url` on the step")
        self.base = base.rstrip("/")
        self.host = host_of(self.base)
        self.api: Api = params.api or ctx.settings.airflow_api
        self.prefix = f"/api/{self.api}"
        secret = params.auth_secret or ctx.settings.airflow_auth_secret
        if not secret:
            raise ActionFailed("no Airflow credential: set RUNBOOKD_AIRFLOW_AUTH_SECRET, or "
                               "`auth_secret` on the step, to the name of a secret in "
                               "RUNBOOKD_SECRETS that holds `user:password`")
        self.secret = secret
        credential = secret_value(ctx, secret)
        self.username, colon, self.password = credential.partition(":")
        if not colon or not self.username:
            raise ActionFailed(f"secret {secret!r} must hold `user:password` for Airflow "
                               "(it has no colon, or no user before it)")
        self._credential = credential
        self._token_key = (self.base, hashlib.sha256(credential.encode()).hexdigest())

    def check_host(self, doing: str) -> None:
        """Refuse a host off the allow-list before anything else happens."""
        try:
            self.ctx.http.check(self.base)
        except Exception as exc:
            raise outbound_failure(exc, url=self.base, doing=doing) from exc

    def run_link(self, dag_id: str, run_id: str) -> str:
        """The run in Airflow's web UI (Airflow 3's run page, Airflow 2's grid)."""
        dag, run = quote(dag_id, safe=""), quote(run_id, safe="")
        if self.api == "v2":
            return f"{self.base}/dags/{dag}/runs/{run}"
        return f"{self.base}/dags/{dag}/grid?dag_run_id={run}"

    async def call(self, method: str, path: str, *, doing: str, body: Any = None,
                   params: dict[str, str] | None = None, accept: tuple[int, ...] = (200,),
                   ) -> tuple[int, Any]:
        """One REST call under the API prefix: (status, JSON) for a status in `accept` (200
        by default); any other answer is an ActionFailed naming the host and the call."""
        url = f"{self.base}{self.prefix}/{path}"
        response = await self._send(method, url, doing=doing, body=body, params=params)
        if self.api == "v2" and response.status_code in (401, 403):
            # An expired token, or a server restarted with a new signing key: sign in once more.
            response = await self._send(method, url, doing=doing, body=body, params=params,
                                        fresh_token=True)
        if response.status_code in accept and not self._is_airflow3(response):
            try:
                return response.status_code, response.json() if response.content else None
            except ValueError:
                raise ActionFailed(f"{doing}: {self.host} answered {response.status_code} to "
                                   f"{method} {self.prefix}/{path} with a body that is not "
                                   "JSON: is it Airflow's REST API?") from None
        raise self.failure(response, method=method, path=path, doing=doing)

    def _is_airflow3(self, response: httpx.Response) -> bool:
        # Airflow 3 answers every /api/v1 path with a 404 that is no "not found" of a DAG.
        return (self.api == "v1" and response.status_code == 404
                and "removed in Airflow 3" in response.text)

    def failure(self, response: httpx.Response, *, method: str, path: str,
                doing: str) -> ActionFailed:
        """An ActionFailed for an unexpected answer, with what to fix where it is known."""
        status = response.status_code
        detail = redact(_detail(response), [self._credential, self.password])
        hint = ""
        if status == 401:
            hint = (" (check the user and password in secret " f"{self.secret!r}"
                    + (", and that this is Airflow 2: Airflow 3 needs `api: v2`)"
                       if self.api == "v1" else ")"))
        elif status == 403:
            hint = f" (the user in secret {self.secret!r} may not do this)"
        elif status == 404 and self.api == "v1" and "removed in Airflow 3" in detail:
            hint = " (this is Airflow 3: use `api: v2`)"
        return ActionFailed(f"{doing}: Airflow at {self.host} answered {status} to {method} "
                            f"{self.prefix}/{path}: {detail}{hint}")

    async def _send(self, method: str, url: str, *, doing: str, body: Any,
                    params: dict[str, str] | None, fresh_token: bool = False,
                    ) -> httpx.Response:
        headers = await self._auth(doing, fresh=fresh_token)
        try:
            return await self.ctx.http.request(method, url, json=body, params=params,
                                               headers=headers)
        except Exception as exc:
            raise _unreachable(exc, url=url, doing=doing) from exc

    async def _auth(self, doing: str, *, fresh: bool) -> dict[str, str]:
        if self.api == "v1":
            basic = base64.b64encode(self._credential.encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        token = None if fresh else _TOKENS.get(self._token_key)
        if token is None:
            token = await self._sign_in(doing)
            if len(_TOKENS) >= _TOKENS_KEPT:
                _TOKENS.clear()
            _TOKENS[self._token_key] = token
        return {"Authorization": f"Bearer {token}"}

    async def _sign_in(self, doing: str) -> str:
        """A JWT from Airflow 3's `POST /auth/token`."""
        url = f"{self.base}/auth/token"
        try:
            response = await self.ctx.http.request(
                "POST", url, json={"username": self.username, "password": self.password})
        except Exception as exc:
            raise _unreachable(exc, url=url, doing=doing) from exc
        if response.status_code in (200, 201):
            try:
                return str(response.json()["access_token"])
            except (ValueError, KeyError, TypeError):
                pass
        detail = redact(_detail(response), [self._credential, self.password])
        hint = (f": check the user and password in secret {self.secret!r}"
                if response.status_code in (401, 403) else
                " (is it Airflow 3? Airflow 2 has no /auth/token: use `api: v1`)"
                if response.status_code in (404, 405) else "")
        kind = AirflowUnavailable if response.status_code >= 500 else ActionFailed
        raise kind(f"{doing}: Airflow at {self.host} gave no token (POST /auth/token "
                   f"answered {response.status_code}: {detail}){hint}")

    # The calls the actions make.

    async def get_dag(self, dag_id: str, *, doing: str) -> dict[str, Any]:
        """The DAG (is_paused and the rest); a DAG Airflow does not know is an error."""
        status, found = await self.call("GET", f"dags/{segment(dag_id)}", doing=doing,
                                        accept=(200, 404))
        if status == 404:
            raise ActionFailed(f"{doing}: Airflow at {self.host} has no DAG {dag_id!r} (is "
                               "the id right, and has the DAG processor parsed it?)")
        return found

    async def get_run(self, dag_id: str, run_id: str, *, doing: str) -> dict[str, Any] | None:
        """A DAG run, or None when it does not exist."""
        status, found = await self.call("GET", f"dags/{segment(dag_id)}/dagRuns/{segment(run_id)}",
                                        doing=doing, accept=(200, 404))
        return found if status == 200 else None

    async def resolve_run(self, dag_id: str, run_ref: str, *, doing: str) -> str:
        """The run id a step's `dag_run_id` names: itself, or for "@latest" the id of the
        DAG's newest run (by run_after on Airflow 3, execution_date on Airflow 2)."""
        if run_ref != LATEST:
            return run_ref
        newest = "-run_after" if self.api == "v2" else "-execution_date"
        status, found = await self.call(
            "GET", f"dags/{segment(dag_id)}/dagRuns", doing=doing, accept=(200, 404),
            params={"order_by": newest, "limit": "1"})
        if status == 404:
            raise ActionFailed(f"{doing}: Airflow at {self.host} has no DAG {dag_id!r} (is "
                               "the id right, and has the DAG processor parsed it?)")
        runs = found.get("dag_runs") if isinstance(found, dict) else None
        if not runs:
            raise ActionFailed(f"{doing}: DAG {dag_id!r} on {self.host} has no runs, so "
                               f"{LATEST!r} names none (trigger it once, or name a run)")
        return str(runs[0]["dag_run_id"])

    async def require_run(self, dag_id: str, run_id: str, *, doing: str) -> dict[str, Any]:
        found = await self.get_run(dag_id, run_id, doing=doing)
        if found is None:
            raise ActionFailed(f"{doing}: Airflow at {self.host} has no run {run_id!r} of DAG "
                               f"{dag_id!r}")
        return found

    def trigger_body(self, run_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        """v2 wants `logical_date` (null: none); Airflow 2 needs a date, named
        `execution_date` in every 2.x release."""
        if self.api == "v2":
            return {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        return {"dag_run_id": run_id, "execution_date": now, "conf": conf}

    async def failed_tasks(self, dag_id: str, run_id: str, *, doing: str) -> list[str]:
        """The task instances of a run that failed, as `task` or `task[map index]`."""
        _, found = await self.call(
            "GET", f"dags/{segment(dag_id)}/dagRuns/{segment(run_id)}/taskInstances", doing=doing,
            params={"state": "failed", "limit": "100"})
        return task_labels(found)

    async def clear_failed(self, dag_id: str, run_id: str, *, doing: str,
                           dry_run: bool) -> list[str]:
        """Clear the failed task instances of one run (Airflow's clear defaults to dry_run:
        true, which clears nothing, so it is always sent); the labels of those cleared."""
        _, found = await self.call("POST", f"dags/{segment(dag_id)}/clearTaskInstances",
                                   doing=doing, body={
                                       "dry_run": dry_run, "dag_run_id": run_id,
                                       "only_failed": True, "reset_dag_runs": True})
        return task_labels(found)


def task_labels(answer: Any) -> list[str]:
    """`task` or `task[map index]` for each task instance of an answer, sorted."""
    items = answer.get("task_instances", []) if isinstance(answer, dict) else []
    labels = []
    for item in items:
        index = item.get("map_index", -1)
        label = str(item.get("task_id"))
        labels.append(f"{label}[{index}]" if isinstance(index, int) and index >= 0 else label)
    return sorted(labels)


def conf_shown(conf: dict[str, Any], limit: int = 160) -> str:
    """A conf for a one-line plan: compact JSON, cut past `limit` with its hash."""
    text = json.dumps(conf, sort_keys=True, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{text[:limit]}… (sha256 {digest[:12]})"


def _detail(response: httpx.Response) -> str:
    """The reason in an Airflow error: v2's `detail` (text, a {reason} object, or FastAPI's
    list of field errors), v1's problem+json `detail` or `title`."""
    try:
        body = response.json()
    except ValueError:
        return error_detail(response)
    if not isinstance(body, dict):
        return error_detail(response)
    detail = body.get("detail")
    if isinstance(detail, dict):
        detail = detail.get("reason") or detail.get("message")
    elif isinstance(detail, list):
        detail = "; ".join(
            f"{'.'.join(map(str, item.get('loc', [])))}: {item.get('msg')}"
            if isinstance(item, dict) else str(item) for item in detail)
    return truncate(str(detail or body.get("title") or error_detail(response)), 300)


def _unreachable(exc: Exception, *, url: str, doing: str) -> ActionFailed:
    """A refused host stays a plain failure; a transport error is worth another try."""
    failure = outbound_failure(exc, url=url, doing=doing)
    if isinstance(exc, HostNotAllowed):
        return failure
    return AirflowUnavailable(failure.message)


def segment(value: str) -> str:
    """One URL path segment: everything but unreserved characters percent-encoded."""
    return quote(value, safe="")
