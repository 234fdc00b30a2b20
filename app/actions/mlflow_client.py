"""A small client for the MLflow REST API, bound to one action context: every call goes
through the allow-listed HTTP client and every error names the host and the call. The alias
history it records is described in `app.actions.mlflow`."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx
from pydantic import Field

from app.actions._support import error_detail, host_of, outbound_failure, secret_value
from app.actions.base import ActionContext, ActionFailed, ActionParams
from app.actions.checksums import ManifestError, Problem, compare, parse_manifest
from app.actions.downloads import fetch_small, stream_digest

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
HISTORY_TAG = "runbookd.alias_history."
HISTORY_LIMIT = 20


class MlflowParams(ActionParams):
    model: str = Field(min_length=1, max_length=256)
    tracking_uri: str | None = Field(default=None, pattern=r"^https?://")
    auth_secret: str | None = None
    auth_scheme: Literal["Bearer", "Basic"] = "Bearer"


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


async def artifact_path(api: Mlflow, model: str, found: dict[str, Any]) -> str:
    """The version's path under the artifact proxy, from its `source`."""
    source = str(found.get("source", ""))
    if source.startswith("mlflow-artifacts:"):
        return urlsplit(source).path.strip("/")
    if source.startswith("runs:/"):
        run_id, _, sub = source.removeprefix("runs:/").partition("/")
        run = await api.call("GET", "runs/get", params={"run_id": run_id},
                             doing=f"reading run {run_id} of {model}")
        assert run is not None
        root = str(run["run"]["info"]["artifact_uri"])
        if root.startswith("mlflow-artifacts:"):
            return "/".join(p for p in (urlsplit(root).path.strip("/"), sub.strip("/")) if p)
        source = root
    raise ActionFailed(f"{model} version {found.get('version')}: source {source!r} is not "
                       "served by the MLflow artifact proxy (mlflow-artifacts:/ or runs:/)")


async def verify_artifacts(ctx: ActionContext, api: Mlflow, model: str, found: dict[str, Any],
                  manifest_name: str) -> tuple[int, list[Problem]]:
    """Stream every file the manifest lists; returns how many were checked and the bad ones."""
    label = f"{model} version {found.get('version')}"
    root = f"{api.base}{ARTIFACTS}/{quote(await artifact_path(api, model, found))}"
    doing = f"verifying {label}"
    raw = await fetch_small(ctx, f"{root}/{quote(manifest_name)}", doing=doing,
                            headers=api.headers)
    if raw is None:
        raise ActionFailed(f"{label} has no {manifest_name} among its artifacts "
                           f"(MLflow at {api.host})")
    try:
        manifest = parse_manifest(raw, source=f"{manifest_name} of {label}")
    except ManifestError as exc:
        raise ActionFailed(str(exc)) from None
    problems = []
    for name, expected in sorted(manifest.items()):
        digest = await stream_digest(ctx, f"{root}/{quote(name)}", doing=doing,
                                     headers=api.headers)
        problem = Problem(name, "missing") if digest is None else compare(name, expected, digest)
        if problem:
            problems.append(problem)
    return len(manifest), problems
