"""MLflow plans against a real MLflow server: they resolve `previous` as the rollback would,
change nothing, and resolve differently once someone moves the alias behind runbookd's back."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.actions.base import ActionContext, ActionFailed, ActionPlan
from app.actions.mlflow import HISTORY_TAG, MlflowRollbackAlias, MlflowSetAlias, MlflowSetTag
from tests.support.action_ctx import make_ctx, run_action
from tests.support.peers import Peer, create_mlflow_version

pytestmark = pytest.mark.e2e
API = "/api/2.0/mlflow"
_names = itertools.count(1)


async def new_model(server: Peer, workdir: Path, count: int) -> str:
    """A registered model with `count` versions (each with a manifest); returns its name."""
    name = f"plan-model-{next(_names)}"
    for n in range(1, count + 1):
        await asyncio.to_thread(create_mlflow_version, server.url, name,
                                {"weights.bin": f"weights {n}".encode()}, workdir=workdir)
    return name


def ctx(server: Peer, **kwargs: Any) -> ActionContext:
    return make_ctx(allow=["127.0.0.1"], mlflow_url=server.url, **kwargs)


async def plan(action: Any, context: ActionContext, **params: Any) -> ActionPlan:
    return await action.plan(context, action.Params.model_validate(params))


async def state(server: Peer, model: str) -> dict[str, Any]:
    """Everything MLflow holds about the model: aliases, tags, every version and its tags."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        found = (await http.get(f"{API}/registered-models/get", params={"name": model})).json()
        versions = (await http.get(f"{API}/model-versions/search",
                                   params={"filter": f"name='{model}'"})).json()
    return {"model": found, "versions": versions}


async def move_alias(server: Peer, model: str, alias: str, version: str) -> None:
    """Move an alias the way the MLflow UI or a training job would: not through runbookd."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.post(f"{API}/registered-models/alias",
                                 json={"name": model, "alias": alias, "version": version})
    assert answer.status_code == 200, answer.text


async def test_a_rollback_plan_moves_nothing_and_follows_the_world(
        mlflow_server: Peer, tmp_path: Path) -> None:
    model = await new_model(mlflow_server, tmp_path, 4)
    setter = ctx(mlflow_server, execution_id=1, step_id="promote")
    for version in ("1", "2", "3"):
        await run_action(MlflowSetAlias(), setter, model=model, alias="champion",
                         version=version)
    rollback = ctx(mlflow_server, execution_id=2, step_id="rollback")
    before = await state(mlflow_server, model)
    assert len(before["versions"]["model_versions"]) == 4
    assert [t["key"] for t in before["model"]["registered_model"]["tags"]] == [
        HISTORY_TAG + "champion"]

    first = await plan(MlflowRollbackAlias(), rollback, model=model, alias="champion")

    host = mlflow_server.url.removeprefix("http://")
    assert first.summary == (f"champion of {model} (MLflow): version 3 → version 2 (the "
                             "last version that held it)")
    assert first.resolved == {"mlflow": host, "model": model, "alias": "champion",
                              "from": "3", "to": "2"}
    # (b) The plan moved nothing, and recorded nothing: not even the alias history tag.
    assert await state(mlflow_server, model) == before

    # (c) A training job promotes version 4 behind runbookd's back: the plan follows.
    await move_alias(mlflow_server, model, "champion", "4")
    now = await plan(MlflowRollbackAlias(), rollback, model=model, alias="champion")
    assert now.resolved != first.resolved
    assert (now.resolved["from"], now.resolved["to"]) == ("4", "3")
    assert now.summary.startswith(f"champion of {model} (MLflow): version 4 → version 3")

    # run() resolves `previous` with the same code: it goes where the plan said.
    done = await run_action(MlflowRollbackAlias(), rollback, model=model, alias="champion")
    assert (done.output["from"], done.output["to"]) == ("4", "3")
    # Planned again by the same step (a retry after a crash): nothing left to change.
    again = await plan(MlflowRollbackAlias(), rollback, model=model, alias="champion")
    assert again.summary == f"champion of {model} (MLflow): already version 3 (no change)"


async def test_a_rollback_plan_fails_when_there_is_no_previous_version(
        mlflow_server: Peer, tmp_path: Path) -> None:
    model = await new_model(mlflow_server, tmp_path, 2)
    context = ctx(mlflow_server)
    with pytest.raises(ActionFailed, match="is not set, so there is nothing to roll back"):
        await plan(MlflowRollbackAlias(), context, model=model, alias="champion")
    await run_action(MlflowSetAlias(), context, model=model, alias="champion", version=1)
    async with httpx.AsyncClient(base_url=mlflow_server.url) as http:
        await http.request("DELETE", f"{API}/model-versions/delete",
                           json={"name": model, "version": "2"})
    await move_alias(mlflow_server, model, "champion", "1")
    with pytest.raises(ActionFailed, match=r"has no previous version to roll back to \(current "
                                           rf"1; history in tag {HISTORY_TAG}champion"):
        await plan(MlflowRollbackAlias(), context, model=model, alias="champion")


async def test_set_alias_and_set_tag_plans(mlflow_server: Peer, tmp_path: Path) -> None:
    model = await new_model(mlflow_server, tmp_path, 2)
    context = ctx(mlflow_server)
    before = await state(mlflow_server, model)
    unset = await plan(MlflowSetAlias(), context, model=model, alias="champion", version=1)
    tag = await plan(MlflowSetTag(), context, model=model, version=1,
                     key="runbookd.quarantined", value="drift on 2026-11-26")
    assert await state(mlflow_server, model) == before
    assert unset.summary == f"champion of {model} (MLflow): (unset) → version 1"
    assert (unset.resolved["from"], unset.resolved["to"]) == (None, "1")
    assert tag.summary == (f"tag runbookd.quarantined of {model} version 1 (MLflow): (unset) → "
                           "'drift on 2026-11-26'")

    await run_action(MlflowSetAlias(), context, model=model, alias="champion", version=1)
    await run_action(MlflowSetTag(), context, model=model, version=1,
                     key="runbookd.quarantined", value="drift on 2026-11-26")
    same = await plan(MlflowSetAlias(), context, model=model, alias="champion", version=1)
    moved = await plan(MlflowSetAlias(), context, model=model, alias="champion", version=2)
    retag = await plan(MlflowSetTag(), context, model=model, version=1,
                       key="runbookd.quarantined", value="false")
    assert same.summary == f"champion of {model} (MLflow): already version 1 (no change)"
    assert moved.summary == f"champion of {model} (MLflow): version 1 → version 2"
    assert retag.resolved["from"] == "drift on 2026-11-26"
    assert retag.summary.endswith("'drift on 2026-11-26' → 'false'")
    with pytest.raises(ActionFailed, match=rf"MLflow at {mlflow_server.url.removeprefix('http://')}"
                                           f" has no version 9 of model '{model}'"):
        await plan(MlflowSetAlias(), context, model=model, alias="champion", version=9)


async def test_a_plan_names_the_policy_that_found_previous(mlflow_server: Peer,
                                                           tmp_path: Path) -> None:
    model = await new_model(mlflow_server, tmp_path, 3)
    await move_alias(mlflow_server, model, "champion", "3")  # CI: no runbookd history
    context = ctx(mlflow_server)
    before = await state(mlflow_server, model)
    checked = await plan(MlflowRollbackAlias(), context, model=model, alias="champion",
                         verify=True, manifest="run_artifacts")
    assert checked.summary == (f"champion of {model} (MLflow): version 3 → version 2 (newest "
                               "older READY version; no runbookd history; its artifacts read "
                               "back as MLflow lists them)")
    # A policy that finds nothing says so, in the plan already (before anyone approves).
    with pytest.raises(ActionFailed, match=rf"history in tag {HISTORY_TAG}champion has 0 "):
        await plan(MlflowRollbackAlias(), context, model=model, alias="champion",
                   previous="history")
    with pytest.raises(ActionFailed, match="no version older than 3 carries the tag "
                                           "validated='true'"):
        await plan(MlflowRollbackAlias(), context, model=model, alias="champion",
                   previous="tag", tag={"key": "validated", "value": "true"})
    assert await state(mlflow_server, model) == before
