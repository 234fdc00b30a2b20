"""mlflow.* against a real MLflow tracking server (REST API and proxied artifacts)."""

from __future__ import annotations

import asyncio
import contextlib
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
    # Walked explicitly: the default would not trust a history the alias outran.
    result = await run_action(MlflowRollbackAlias(), ctx(mlflow_server, execution_id=5),
                              model=model.name, alias="champion", previous="history")
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


# --- "previous" from MLflow itself: an alias that CI moves, with no history of runbookd's ---


async def ci_moves_alias(server: Peer, model: str, alias: str, version: str) -> None:
    """Move an alias the way CI does: one REST call to MLflow, nothing through runbookd."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.post(f"{API}/registered-models/alias",
                                 json={"name": model, "alias": alias, "version": version})
    assert answer.status_code == 200, answer.text


async def ci_tags(server: Peer, model: str, version: str, key: str, value: str) -> None:
    """Tag a version the way CI marks one it validated."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.post(f"{API}/model-versions/set-tag",
                                 json={"name": model, "version": version, "key": key,
                                       "value": value})
    assert answer.status_code == 200, answer.text


async def test_rollback_of_an_alias_ci_moved_goes_to_the_newest_older_ready_version(
        mlflow_server: Peer, make_model: ModelFactory) -> None:
    model = await make_model(4)
    for version in ("2", "3"):
        await ci_moves_alias(mlflow_server, model.name, "champion", version)
    context = ctx(mlflow_server, execution_id=11, step_id="rollback")
    planned = await MlflowRollbackAlias().plan(
        context, MlflowRollbackAlias.Params.model_validate({"model": model.name,
                                                            "alias": "champion"}))
    assert planned.summary == (f"champion of {model.name} (MLflow): version 3 → version 2 "
                               "(newest older READY version; no runbookd history)")
    result = await run_action(MlflowRollbackAlias(), context, model=model.name,
                              alias="champion")
    # Not version 4 (newer), not a failure for want of runbookd's history.
    assert (result.output["from"], result.output["to"]) == ("3", "2")
    assert result.output["previous"] == "newest_older_ready"
    assert await alias_of(mlflow_server, model.name, "champion") == "2"
    # The rollback starts runbookd's history, so a retry of the same step changes nothing.
    assert await history_of(mlflow_server, model.name, "champion") == ["3", "2"]
    again = await run_action(MlflowRollbackAlias(), context, model=model.name,
                             alias="champion")
    assert again.output["changed"] is False
    assert await alias_of(mlflow_server, model.name, "champion") == "2"


async def test_a_history_that_ci_outran_is_not_trusted_by_default(
        mlflow_server: Peer, make_model: ModelFactory) -> None:
    model = await make_model(5)
    context = ctx(mlflow_server)
    for version in ("1", "2"):
        await run_action(MlflowSetAlias(), context, model=model.name, alias="champion",
                         version=version)
    # CI promotes 3, then 4: runbookd's history still ends with 2.
    for version in ("3", "4"):
        await ci_moves_alias(mlflow_server, model.name, "champion", version)
    params = {"model": model.name, "alias": "champion"}
    planned = await MlflowRollbackAlias().plan(
        ctx(mlflow_server, dry_run=True), MlflowRollbackAlias.Params.model_validate(params))
    assert planned.summary == (
        f"champion of {model.name} (MLflow): version 4 → version 3 (newest older READY "
        "version; the alias moved outside runbookd after its history ends at version 2)")
    # Asked for explicitly, the history still answers as it always did.
    historical = await run_action(MlflowRollbackAlias(), ctx(mlflow_server, dry_run=True),
                                  **params, previous="history")
    assert historical.output["to"] == "2"
    result = await run_action(MlflowRollbackAlias(), context, **params)
    assert (result.output["from"], result.output["to"]) == ("4", "3")
    assert await alias_of(mlflow_server, model.name, "champion") == "3"


async def test_the_tag_policy_picks_the_newest_older_tagged_version(
        mlflow_server: Peer, make_model: ModelFactory) -> None:
    model = await make_model(5)
    for version in ("2", "5"):  # 5 is newer than the champion: never a rollback target
        await ci_tags(mlflow_server, model.name, version, "validated", "true")
    await ci_tags(mlflow_server, model.name, "3", "validated", "false")
    await ci_moves_alias(mlflow_server, model.name, "champion", "4")
    params = {"model": model.name, "alias": "champion", "previous": "tag",
              "tag": {"key": "validated", "value": "true"}}
    planned = await MlflowRollbackAlias().plan(
        ctx(mlflow_server), MlflowRollbackAlias.Params.model_validate(params))
    assert planned.summary == (f"champion of {model.name} (MLflow): version 4 → version 2 "
                               "(newest older version tagged validated='true')")
    result = await run_action(MlflowRollbackAlias(), ctx(mlflow_server), **params)
    assert (result.output["to"], result.output["previous"]) == ("2", "tag")
    assert await alias_of(mlflow_server, model.name, "champion") == "2"
    with pytest.raises(ActionFailed, match=r"no version older than 2 carries the tag "
                                           r"validated='true'"):
        await run_action(MlflowRollbackAlias(), ctx(mlflow_server, execution_id=99), **params)


def test_policy_parameters_that_cannot_work_say_what_to_fix() -> None:
    params = MlflowRollbackAlias.Params
    with pytest.raises(ValueError, match=r"previous: tag needs `tag: \{key: \.\.\., value: "):
        params.model_validate({"model": "m", "alias": "a", "previous": "tag"})
    with pytest.raises(ValueError, match="`tag` applies only with previous: tag"):
        params.model_validate({"model": "m", "alias": "a", "tag": {"key": "k", "value": "v"}})
    with pytest.raises(ValueError, match="`manifest` applies only with verify: true"):
        params.model_validate({"model": "m", "alias": "a", "manifest": "if_present"})
    with pytest.raises(ValueError):
        params.model_validate({"model": "m", "alias": "a", "previous": "latest"})


# --- the manifest as a policy ---


async def test_versions_without_a_manifest_pass_if_present_and_fail_require(
        mlflow_server: Peer, make_model: ModelFactory) -> None:
    model = await make_model(3, with_manifest=False)
    await ci_moves_alias(mlflow_server, model.name, "champion", "3")
    params = {"model": model.name, "alias": "champion", "verify": True}
    with pytest.raises(ActionFailed) as failed:
        await run_action(MlflowRollbackAlias(), ctx(mlflow_server), **params)
    assert ("skipped version 2: no manifest.json among its artifacts (manifest: require; "
            "use manifest: if_present or run_artifacts for versions logged without one)"
            in failed.value.message)
    assert "version 1: no manifest.json" in failed.value.message
    assert await alias_of(mlflow_server, model.name, "champion") == "3"

    result = await run_action(MlflowRollbackAlias(), ctx(mlflow_server), **params,
                              manifest="if_present")
    assert (result.output["to"], result.output["skipped"]) == ("2", [])
    assert await alias_of(mlflow_server, model.name, "champion") == "2"

    checked = await run_action(MlflowVerifyVersion(), ctx(mlflow_server), model=model.name,
                               version=1, manifest="if_present")
    assert checked.output["files_checked"] == 0
    assert checked.summary == (f"MLflow model {model.name} version 1 has no manifest.json: "
                               "nothing checked (manifest: if_present)")


async def test_run_artifacts_checks_what_mlflow_lists(
        mlflow_server: Peer, make_model: ModelFactory, tmp_path: Path) -> None:
    model = await make_model(3, with_manifest=False)
    context = ctx(mlflow_server)
    checked = await run_action(MlflowVerifyVersion(), context, model=model.name, version=2,
                               manifest="run_artifacts")
    assert checked.output["ok"] is True
    assert checked.output["files_checked"] == 2
    assert len(checked.output["checksum"]) == 64
    assert checked.summary == (f"MLflow model {model.name} version 2: all 2 file(s) MLflow "
                               "lists read back whole (manifest: run_artifacts)")
    # The same bytes give the same checksum; different bytes another.
    again = await run_action(MlflowVerifyVersion(), context, model=model.name, version=2,
                             manifest="run_artifacts")
    other = await run_action(MlflowVerifyVersion(), context, model=model.name, version=1,
                             manifest="run_artifacts")
    assert again.output["checksum"] == checked.output["checksum"] != other.output["checksum"]

    # A version registered before its files were uploaded (or after they were deleted).
    empty = await asyncio.to_thread(register_without_files, mlflow_server.url, model.name)
    await ci_moves_alias(mlflow_server, model.name, "champion", "3")
    with pytest.raises(ActionFailed, match=f"{model.name} version {empty} has no files: MLflow "
                                           "lists none under its source 'runs:/"):
        await run_action(MlflowVerifyVersion(), context, model=model.name, version=empty,
                         manifest="run_artifacts")

    # With a manifest among the files, run_artifacts checks its sha256 too.
    signed = await make_model(2)
    await asyncio.to_thread(overwrite_mlflow_artifact, mlflow_server.url, signed.runs["1"],
                            "conf/config.json", b'{"version": 8}', workdir=tmp_path)
    await ci_moves_alias(mlflow_server, signed.name, "champion", "2")
    with pytest.raises(ActionFailed, match=r"version 1: fails verification: conf/config\.json: "
                                           "sha256 is "):
        await run_action(MlflowRollbackAlias(), context, model=signed.name, alias="champion",
                         verify=True, manifest="run_artifacts")


def register_without_files(tracking_url: str, model: str) -> str:
    """A version whose source holds no files: registered before CI uploaded them. Blocking."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_url, registry_uri=tracking_url)
    run = client.create_run("0")
    version = client.create_model_version(model, source=f"runs:/{run.info.run_id}/model",
                                          run_id=run.info.run_id)
    return str(version.version)


# --- versions stored outside MLflow's artifact proxy ---


def create_version_in_store(tracking_url: str, model: str, store: str,
                            files: dict[str, bytes], *, workdir: Path) -> tuple[str, str]:
    """A version whose run logs to `store` directly (as to s3:// or gs://), not through the
    proxy; returns (version, run root). Blocking."""
    import hashlib
    import json

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_url, registry_uri=tracking_url)
    experiment = client.get_experiment_by_name(store)
    experiment_id = (experiment.experiment_id if experiment else
                     client.create_experiment(store, artifact_location=store))
    local = workdir / f"store-upload-{next(_names)}"
    for name, data in files.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    manifest = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    (local / "manifest.json").write_text(json.dumps(manifest))
    with contextlib.suppress(Exception):
        client.create_registered_model(model)
    run = client.create_run(experiment_id)
    client.log_artifacts(run.info.run_id, str(local), "model")
    version = client.create_model_version(model, source=f"runs:/{run.info.run_id}/model",
                                          run_id=run.info.run_id)
    return str(version.version), run.info.artifact_uri


async def test_versions_outside_the_proxy_are_read_through_mlflow(
        mlflow_server: Peer, tmp_path: Path) -> None:
    model = f"external-{next(_names)}"
    store = (tmp_path / "bucket").as_uri()  # a store the server reads itself, as it would S3
    roots = {}
    for n in (1, 2):
        version, roots[version] = await asyncio.to_thread(
            create_version_in_store, mlflow_server.url, model, store,
            {"weights.bin": f"weights {n}".encode() * 100}, workdir=tmp_path)
    context = ctx(mlflow_server)
    ok = await run_action(MlflowVerifyVersion(), context, model=model, version=1)
    assert ok.output["ok"] is True
    # The file changes in the store: MLflow's download API serves the changed bytes.
    local = Path(roots["1"].removeprefix("file://")) / "model" / "weights.bin"
    local.write_bytes(b"tampered")
    with pytest.raises(ActionFailed, match=r"weights\.bin: sha256 is "):
        await run_action(MlflowVerifyVersion(), context, model=model, version=1)
    listed = await run_action(MlflowVerifyVersion(), context, model=model, version=2,
                              manifest="run_artifacts")
    assert listed.output["files_checked"] == 2  # weights.bin and manifest.json


async def test_a_store_the_mlflow_server_cannot_read_names_the_setting(
        mlflow_server: Peer) -> None:
    model = f"on-s3-{next(_names)}"
    async with httpx.AsyncClient(base_url=f"{mlflow_server.url}{API}") as http:
        await http.post("/registered-models/create", json={"name": model})
        created = await http.post("/model-versions/create", json={
            "name": model, "source": "s3://runbookd-test-bucket/models/fraud/7"})
        assert created.status_code == 200, created.text
    with pytest.raises(ActionFailed) as failed:
        await run_action(MlflowVerifyVersion(), ctx(mlflow_server), model=model, version=1)
    message = failed.value.message
    assert message.startswith(f"reading {model} version 1 from s3://runbookd-test-bucket "
                              "through MLflow at 127.0.0.1:")
    assert "answered 500" in message
    assert "the MLflow server must be able to read s3://" in message
    assert "mlflow server --serve-artifacts --artifacts-destination" in message
    assert "verify: false" in message
