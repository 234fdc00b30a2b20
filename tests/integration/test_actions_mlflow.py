"""mlflow.* against a real MLflow tracking server (REST API and proxied artifacts)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.actions.base import ActionContext, ActionFailed
from app.actions.mlflow import (
    HISTORY_TAG,
    MlflowGetAlias,
    MlflowRollbackAlias,
    MlflowSetAlias,
    MlflowSetTag,
    MlflowVerifyVersion,
)
from tests.support.action_ctx import make_ctx, run_action
from tests.support.peers import Peer, create_mlflow_version, overwrite_mlflow_artifact

pytestmark = pytest.mark.e2e
API = "/api/2.0/mlflow"
_names = itertools.count(1)


@dataclass
class Model:
    name: str
    runs: dict[str, str]  # version -> run id


ModelFactory = Callable[..., Awaitable[Model]]


@pytest.fixture
def make_model(mlflow_server: Peer, tmp_path: Path) -> ModelFactory:
    """Register a fresh model with `count` versions, each holding two files and a manifest."""

    async def make(count: int = 3, *, with_manifest: bool = True) -> Model:
        name = f"fraud-v{next(_names)}"
        runs = {}
        for n in range(1, count + 1):
            files = {"weights.bin": f"weights of version {n}".encode() * 1000,
                     "conf/config.json": f'{{"version": {n}}}'.encode()}
            version, run_id = await asyncio.to_thread(
                create_mlflow_version, mlflow_server.url, name, files, workdir=tmp_path,
                with_manifest=with_manifest)
            runs[version] = run_id
        return Model(name, runs)

    return make


def ctx(server: Peer, **kwargs: Any) -> ActionContext:
    return make_ctx(allow=["127.0.0.1"], mlflow_url=server.url, **kwargs)


async def alias_of(server: Peer, model: str, alias: str) -> str | None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(f"{API}/registered-models/alias",
                                  params={"name": model, "alias": alias})
    return response.json()["model_version"]["version"] if response.status_code == 200 else None


async def history_of(server: Peer, model: str, alias: str) -> list[str]:
    import json

    async with httpx.AsyncClient(base_url=server.url) as http:
        found = (await http.get(f"{API}/registered-models/get", params={"name": model})).json()
    for tag in found["registered_model"].get("tags", []):
        if tag["key"] == HISTORY_TAG + alias:
            return [entry["v"] for entry in json.loads(tag["value"])]
    return []


async def test_set_and_get_alias(mlflow_server: Peer, make_model: ModelFactory) -> None:
    model = await make_model(2)
    context = ctx(mlflow_server)
    first = await run_action(MlflowSetAlias(), context, model=model.name, alias="champion",
                             version=1)
    assert first.summary == f"set alias champion of MLflow model {model.name} (unset) to " \
                            "version 1"
    await run_action(MlflowSetAlias(), context, model=model.name, alias="champion", version="2")
    again = await run_action(MlflowSetAlias(), context, model=model.name, alias="champion",
                             version=2)
    assert again.output["changed"] is False
    got = await run_action(MlflowGetAlias(), context, model=model.name, alias="champion")
    assert got.output["version"] == "2"
    assert await history_of(mlflow_server, model.name, "champion") == ["1", "2"]


async def test_failures_name_model_version_and_host(mlflow_server: Peer,
                                                    make_model: ModelFactory) -> None:
    model = await make_model(1)
    context = ctx(mlflow_server)
    with pytest.raises(ActionFailed, match=f"alias 'shadow' of MLflow model '{model.name}' is "
                                           r"not set \(at 127\.0\.0\.1:\d+\)"):
        await run_action(MlflowGetAlias(), context, model=model.name, alias="shadow")
    with pytest.raises(ActionFailed, match=r"MLflow at 127\.0\.0\.1:\d+ has no version 9 of "
                                           f"model '{model.name}'"):
        await run_action(MlflowSetAlias(), context, model=model.name, alias="champion",
                         version=9)
    with pytest.raises(ActionFailed, match=r"MLflow at 127\.0\.0\.1:\d+ answered 404 to GET "
                                           r"/api/2\.0/mlflow/registered-models/alias: "
                                           "Registered Model with name=no-such-model"):
        await run_action(MlflowRollbackAlias(), context, model="no-such-model", alias="x")
    refused = make_ctx(allow=["mlflow.internal"], mlflow_url=mlflow_server.url)
    with pytest.raises(ActionFailed, match=r"host '127\.0\.0\.1' is not on the HTTP allow-list"):
        await run_action(MlflowGetAlias(), refused, model=model.name, alias="champion")


async def test_rollback_goes_to_the_previous_version_once(mlflow_server: Peer,
                                                          make_model: ModelFactory) -> None:
    model = await make_model(3)
    setter = ctx(mlflow_server, execution_id=1, step_id="promote")
    for version in ("1", "2", "3"):
        await run_action(MlflowSetAlias(), setter, model=model.name, alias="champion",
                         version=version)
    rollback = ctx(mlflow_server, execution_id=2, step_id="rollback")
    result = await run_action(MlflowRollbackAlias(), rollback, model=model.name,
                              alias="champion")
    assert result.summary == (f"roll back alias champion of MLflow model {model.name} from "
                              "version 3 to version 2")
    assert await alias_of(mlflow_server, model.name, "champion") == "2"
    # The same step again (a retry, a resume) changes nothing.
    again = await run_action(MlflowRollbackAlias(), rollback, model=model.name,
                             alias="champion")
    assert again.output["changed"] is False
    assert await alias_of(mlflow_server, model.name, "champion") == "2"
    assert await history_of(mlflow_server, model.name, "champion") == ["1", "2", "3", "2"]


async def test_rollback_skips_deleted_versions_and_outside_changes(
        mlflow_server: Peer, make_model: ModelFactory) -> None:
    model = await make_model(3)
    context = ctx(mlflow_server)
    for version in ("1", "2"):
        await run_action(MlflowSetAlias(), context, model=model.name, alias="champion",
                         version=version)
    async with httpx.AsyncClient(base_url=mlflow_server.url) as http:
        # Someone promotes version 3 in the UI, and version 2 is deleted.
        await http.post(f"{API}/registered-models/alias",
                        json={"name": model.name, "alias": "champion", "version": "3"})
        await http.request("DELETE", f"{API}/model-versions/delete",
                           json={"name": model.name, "version": "2"})
    result = await run_action(MlflowRollbackAlias(), ctx(mlflow_server, execution_id=5),
                              model=model.name, alias="champion")
    assert result.output["to"] == "1"
    assert result.output["skipped"] == ["version 2: deleted"]
    assert await history_of(mlflow_server, model.name, "champion") == ["1", "2", "3", "1"]


async def test_rollback_with_verify_skips_corrupted_versions(
        mlflow_server: Peer, make_model: ModelFactory, tmp_path: Path) -> None:
    model = await make_model(3)
    context = ctx(mlflow_server)
    for version in ("1", "2", "3"):
        await run_action(MlflowSetAlias(), context, model=model.name, alias="champion",
                         version=version)
    await asyncio.to_thread(overwrite_mlflow_artifact, mlflow_server.url, model.runs["2"],
                            "weights.bin", b"corrupted", workdir=tmp_path)
    result = await run_action(MlflowRollbackAlias(), context, model=model.name,
                              alias="champion", verify=True)
    assert result.output["to"] == "1"
    assert "version 2: fails verification: weights.bin: size is 9" in result.output["skipped"][0]


async def test_rollback_without_history_explains(mlflow_server: Peer,
                                                 make_model: ModelFactory) -> None:
    model = await make_model(1)
    context = ctx(mlflow_server)
    with pytest.raises(ActionFailed, match="is not set, so there is nothing to roll back"):
        await run_action(MlflowRollbackAlias(), context, model=model.name, alias="champion")
    await run_action(MlflowSetAlias(), context, model=model.name, alias="champion", version=1)
    with pytest.raises(ActionFailed, match=r"has no previous version to roll back to \(current "
                                           rf"1; history in tag {HISTORY_TAG}champion"):
        await run_action(MlflowRollbackAlias(), context, model=model.name, alias="champion")


async def test_dry_runs_change_nothing(mlflow_server: Peer, make_model: ModelFactory) -> None:
    model = await make_model(2)
    context = ctx(mlflow_server)
    for version in ("1", "2"):
        await run_action(MlflowSetAlias(), context, model=model.name, alias="champion",
                         version=version)
    drill = ctx(mlflow_server, dry_run=True)
    rollback = await run_action(MlflowRollbackAlias(), drill, model=model.name,
                                alias="champion")
    assert rollback.summary == (f"would roll back alias champion of MLflow model {model.name} "
                                "from version 2 to version 1")
    moved = await run_action(MlflowSetAlias(), drill, model=model.name, alias="challenger",
                             version=1)
    assert moved.summary == (f"would set alias challenger of MLflow model {model.name} "
                             "(unset) to version 1")
    tagged = await run_action(MlflowSetTag(), drill, model=model.name, version=1,
                              key="runbookd.quarantined", value="true")
    assert tagged.summary == (f"would set tag runbookd.quarantined='true' on {model.name} "
                              "version 1")
    assert await alias_of(mlflow_server, model.name, "champion") == "2"
    assert await alias_of(mlflow_server, model.name, "challenger") is None
    assert await history_of(mlflow_server, model.name, "champion") == ["1", "2"]
    async with httpx.AsyncClient(base_url=mlflow_server.url) as http:
        version = (await http.get(f"{API}/model-versions/get",
                                  params={"name": model.name, "version": "1"})).json()
    assert "tags" not in version["model_version"]


async def test_set_tag(mlflow_server: Peer, make_model: ModelFactory) -> None:
    model = await make_model(1)
    result = await run_action(MlflowSetTag(), ctx(mlflow_server), model=model.name, version=1,
                              key="runbookd.quarantined", value="drift on 2026-11-26")
    assert result.output["key"] == "runbookd.quarantined"
    async with httpx.AsyncClient(base_url=mlflow_server.url) as http:
        found = (await http.get(f"{API}/model-versions/get",
                                params={"name": model.name, "version": "1"})).json()
    assert found["model_version"]["tags"] == [{"key": "runbookd.quarantined",
                                               "value": "drift on 2026-11-26"}]


async def test_verify_version_streams_and_names_bad_files(
        mlflow_server: Peer, make_model: ModelFactory, tmp_path: Path) -> None:
    model = await make_model(2)
    context = ctx(mlflow_server)
    ok = await run_action(MlflowVerifyVersion(), context, model=model.name, version=1)
    assert ok.output == {"model": model.name, "version": "1", "files_checked": 2,
                         "failed": [], "ok": True}
    await run_action(MlflowSetAlias(), context, model=model.name, alias="champion", version=2)
    await asyncio.to_thread(overwrite_mlflow_artifact, mlflow_server.url, model.runs["2"],
                            "conf/config.json", b'{"version": 9}', workdir=tmp_path)
    with pytest.raises(ActionFailed) as failed:
        await run_action(MlflowVerifyVersion(), context, model=model.name, alias="champion")
    assert failed.value.message.startswith(
        f"MLflow model {model.name} version 2 fails verification (1 of 2 file(s)): "
        "conf/config.json: sha256 is ")
    drill = await run_action(MlflowVerifyVersion(), ctx(mlflow_server, dry_run=True),
                             model=model.name, version=1)
    assert drill.summary.startswith("dry run (read-only, ran for real): ")


async def test_verify_version_without_a_manifest(mlflow_server: Peer,
                                                 make_model: ModelFactory) -> None:
    model = await make_model(1, with_manifest=False)
    with pytest.raises(ActionFailed, match=f"{model.name} version 1 has no manifest.json among "
                                           "its artifacts"):
        await run_action(MlflowVerifyVersion(), ctx(mlflow_server), model=model.name,
                         version=1)


@pytest.mark.parametrize(("action", "params"), [
    (MlflowGetAlias(), {"alias": "champion"}),
    (MlflowSetAlias(), {"alias": "champion", "version": 1}),
    (MlflowRollbackAlias(), {"alias": "champion"}),
    (MlflowSetTag(), {"version": 1, "key": "k", "value": "v"}),
    (MlflowVerifyVersion(), {"version": 1}),
])
async def test_a_hung_server_is_cancelled_cleanly(action: Any, params: dict[str, Any]) -> None:
    closed = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        closed.set()  # the client closed its connection: nothing leaked
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        context = make_ctx(allow=["127.0.0.1"], mlflow_url=f"http://127.0.0.1:{port}")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run_action(action, context, model="m", **params), 0.3)
        await asyncio.wait_for(closed.wait(), 5)
    finally:
        server.close()
