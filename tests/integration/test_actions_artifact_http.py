"""artifact.verify over HTTP: streamed digests, a manifest beside the files, the allow-list."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from app.actions.artifact import ArtifactVerify
from app.actions.base import ActionFailed
from tests.support.action_ctx import make_ctx, run_action
from tests.support.fake_receivers import FakeApi

ACTION = ArtifactVerify()
FILES = {"model/weights.bin": b"\x07" * 300_000, "model/config.json": b'{"layers": 3}'}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(fake_api: FakeApi) -> FakeApi:
    fake_api.files.update(FILES)
    fake_api.files["model/manifest.json"] = json.dumps(
        {name.removeprefix("model/"): {"sha256": sha(data), "size": len(data)}
         for name, data in FILES.items()}).encode()
    return fake_api


async def test_one_file_by_sha256_and_size(served: FakeApi) -> None:
    data = FILES["model/weights.bin"]
    result = await run_action(ACTION, make_ctx(allow=["127.0.0.1"]),
                              uri=f"{served.url}/files/model/weights.bin", sha256=sha(data),
                              size=len(data))
    assert result.output["size"] == 300_000


async def test_directory_url_with_manifest(served: FakeApi) -> None:
    result = await run_action(ACTION, make_ctx(allow=["127.0.0.1"]),
                              uri=f"{served.url}/files/model/", manifest=True)
    assert result.output["files_checked"] == 2 and result.output["ok"]


async def test_bad_and_missing_remote_files_are_named(served: FakeApi) -> None:
    served.files["model/weights.bin"] = b"\x08" * 300_000
    del served.files["model/config.json"]
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, make_ctx(allow=["127.0.0.1"]),
                         uri=f"{served.url}/files/model/", manifest=True)
    assert "config.json: missing" in failed.value.message
    assert "weights.bin: sha256 is" in failed.value.message


async def test_http_errors_name_the_url_and_status(served: FakeApi) -> None:
    with pytest.raises(ActionFailed, match=r"GET http://127\.0\.0\.1:\d+/status/503 answered "
                                           r"503, expected 200"):
        await run_action(ACTION, make_ctx(allow=["127.0.0.1"]), uri=f"{served.url}/status/503",
                         size=1)
    with pytest.raises(ActionFailed, match="answered 404: no such artifact"):
        await run_action(ACTION, make_ctx(allow=["127.0.0.1"]),
                         uri=f"{served.url}/files/nope.bin", size=1)


async def test_host_must_be_allow_listed(served: FakeApi) -> None:
    with pytest.raises(ActionFailed, match=r"host '127\.0\.0\.1' is not on the HTTP allow-list"):
        await run_action(ACTION, make_ctx(allow=["models.internal"]),
                         uri=f"{served.url}/files/model/weights.bin", size=1)
    assert served.requests == []


async def test_dry_run_reads_only(served: FakeApi) -> None:
    result = await run_action(ACTION, make_ctx(allow=["127.0.0.1"], dry_run=True),
                              uri=f"{served.url}/files/model/", manifest=True)
    assert result.summary.startswith("dry run (read-only, ran for real): artifact ")
    assert {r.method for r in served.requests} == {"GET"}


async def test_cancellation_of_a_slow_download(served: FakeApi) -> None:
    ctx = make_ctx(allow=["127.0.0.1"])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_action(ACTION, ctx, uri=f"{served.url}/slow", size=1), 0.3)
    result = await run_action(ACTION, ctx, uri=f"{served.url}/files/model/config.json",
                              size=13)
    assert result.output["ok"]
