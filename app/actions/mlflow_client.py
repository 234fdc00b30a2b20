"""A small client for the MLflow REST API, bound to one action context: every call goes
through the allow-listed HTTP client and every error names the host and the call. The alias
history it records is described in `app.actions.mlflow`."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from app.actions._support import error_detail, host_of, outbound_failure, secret_value
from app.actions.base import ActionContext, ActionFailed, ActionParams

if TYPE_CHECKING:  # for annotations only: not loaded at start-up (app/outbound.py says why)
    import httpx

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
HISTORY_TAG = "runbookd.alias_history."
HISTORY_LIMIT = 20
SEARCH_PAGE = 100
# How many older versions a search for `previous` reads before it gives up.
SEARCH_LIMIT = 2_000


class MlflowParams(ActionParams):
    model: str = Field(min_length=1, max_length=256)
    tracking_uri: str | None = Field(default=None, pattern=r"^https?://")
    auth_secret: str | None = None
    auth_scheme: Literal["Bearer", "Basic"] = "Bearer"


class AliasParams(MlflowParams):
    alias: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")


class Mlflow:
    """A thin REST client bound to one action context; errors name the host and the call."""

    def __init__(self, ctx: ActionContext, params: MlflowParams):
        self.ctx = ctx
        self.base = (params.tracking_uri or ctx.settings.mlflow_url).rstrip("/")
        self.host = host_of(self.base)
        self.headers: dict[str, str] = {}
        if params.auth_secret:
            value = secret_value(ctx, params.auth_secret)
            if params.auth_scheme == "Basic":
                value = base64.b64encode(value.encode()).decode()
            self.headers["Authorization"] = f"{params.auth_scheme} {value}"

    async def call(self, method: str, path: str, *, doing: str,
                   params: dict[str, str] | None = None, body: dict[str, Any] | None = None,
                   missing: Callable[[httpx.Response], bool] | None = None,
                   ) -> dict[str, Any] | None:
        """One REST call; None when the answer is one that `missing` recognises."""
        url = f"{self.base}{API}/{path}"
        try:
            response = await self.ctx.http.request(method, url, params=params, json=body,
                                                   headers=self.headers)
        except Exception as exc:
            raise outbound_failure(exc, url=url, doing=doing) from exc
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError:
                raise ActionFailed(f"{doing}: {self.host} answered 200 to {method} {API}/{path} "
                                   "with a body that is not JSON: is it MLflow?") from None
        if missing is not None and missing(response):
            return None
        raise ActionFailed(f"{doing}: MLflow at {self.host} answered {response.status_code} "
                           f"to {method} {API}/{path}: {error_detail(response)}")

    async def get_alias(self, model: str, alias: str) -> str | None:
        """The version an alias points at, or None when it is not set."""
        found = await self.call("GET", "registered-models/alias", missing=_alias_missing,
                                params={"name": model, "alias": alias},
                                doing=f"reading alias {alias} of {model}")
        return str(found["model_version"]["version"]) if found else None

    async def get_version(self, model: str, version: str) -> dict[str, Any] | None:
        """A model version (name, source, status, tags), or None when it does not exist."""
        found = await self.call("GET", "model-versions/get", missing=_version_missing,
                                params={"name": model, "version": version},
                                doing=f"reading {model} version {version}")
        return found["model_version"] if found else None

    async def require_version(self, model: str, version: str) -> dict[str, Any]:
        """A model version, or ActionFailed naming the host, model and version."""
        found = await self.get_version(model, version)
        if found is None:
            raise ActionFailed(f"MLflow at {self.host} has no version {version} of model "
                               f"{model!r}")
        return found

    async def set_alias(self, model: str, alias: str, version: str) -> None:
        """Point `alias` at `version` (MLflow moves it from wherever it was)."""
        await self.call("POST", "registered-models/alias",
                        body={"name": model, "alias": alias, "version": version},
                        doing=f"setting alias {alias} of {model} to version {version}")

    async def older_versions(self, model: str, below: int) -> AsyncIterator[dict[str, Any]]:
        """The versions of `model` numbered below `below`, newest first (MLflow's search)."""
        params = {"filter": _name_filter(model), "order_by": "version_number DESC",
                  "max_results": str(SEARCH_PAGE)}
        read = 0
        while True:
            page = await self.call("GET", "model-versions/search", params=params,
                                   doing=f"searching the versions of {model}")
            assert page is not None
            for found in page.get("model_versions", []):
                read += 1
                number = version_number(found.get("version"))
                if found.get("name") == model and number is not None and number < below:
                    yield found
            token = page.get("next_page_token")
            if not token:
                return
            if read >= SEARCH_LIMIT:
                raise ActionFailed(f"searched {read} versions of MLflow model {model!r} below "
                                   f"version {below} without finding one to roll back to")
            params["page_token"] = token

    async def history(self, model: str, alias: str) -> list[dict[str, Any]]:
        """The alias history runbookd recorded in its registered-model tag, oldest first."""
        found = await self.call("GET", "registered-models/get", params={"name": model},
                                doing=f"reading registered model {model}")
        assert found is not None
        for tag in found["registered_model"].get("tags", []):
            if tag["key"] == HISTORY_TAG + alias:
                try:
                    entries = json.loads(tag["value"])
                except ValueError:
                    return []  # a hand-edited tag: start a new history rather than fail
                return [e for e in entries if isinstance(e, dict) and "v" in e]
        return []

    async def record(self, model: str, alias: str, history: list[dict[str, Any]],
                     current: str | None, new: str, *, kind: str) -> None:
        """Append `current` (if the history does not end with it) and `new` to the history."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        entries = list(history)
        for version, how in ((current, "seen"), (new, kind)):
            if version is not None and (not entries or str(entries[-1]["v"]) != version):
                entries.append({"v": version, "t": now, "x": self.ctx.execution_id,
                                "s": self.ctx.step_id, "k": how})
        if entries == history:
            return
        await self.call("POST", "registered-models/set-tag",
                        body={"name": model, "key": HISTORY_TAG + alias,
                              "value": json.dumps(entries[-HISTORY_LIMIT:],
                                                  separators=(",", ":"))},
                        doing=f"recording the history of alias {alias} of {model}")


def version_number(version: object) -> int | None:
    """An MLflow version number (a string of digits), or None for anything else."""
    text = str(version)
    return int(text) if text.isdigit() else None


def _name_filter(model: str) -> str:
    # MLflow's filter grammar has no escape for quotes, but takes either kind.
    if "'" not in model:
        return f"name='{model}'"
    if '"' not in model:
        return f'name="{model}"'
    raise ActionFailed(f"MLflow model {model!r} has both kinds of quote in its name, so "
                       "MLflow's search cannot find its versions: use previous: history")


def _error(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", ""
    return str(body.get("error_code", "")), str(body.get("message", ""))


def _alias_missing(response: httpx.Response) -> bool:
    # An unset alias is a 400 INVALID_PARAMETER_VALUE "... not found"; an unknown model is a
    # 404, which stays an error.
    code, message = _error(response)
    return (response.status_code == 400 and code == "INVALID_PARAMETER_VALUE"
            and "not found" in message)


def _version_missing(response: httpx.Response) -> bool:
    _, message = _error(response)
    return response.status_code == 404 and message.startswith("Model Version")
