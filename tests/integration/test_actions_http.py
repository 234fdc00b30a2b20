"""http.request against a real HTTP server: an Airflow-like DAG re-run, statuses, secrets."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from app.actions.base import ActionContext, ActionFailed
from app.actions.http import HttpRequest
from tests.support.action_ctx import make_ctx, run_action
from tests.support.fake_receivers import FakeApi

ACTION = HttpRequest()


def ctx_for(api: FakeApi, **kwargs: object) -> ActionContext:
    return make_ctx(allow=["127.0.0.1"], secrets={"airflow_token": SecretStr(api.token)},
                    **kwargs)


async def test_reruns_an_airflow_dag_with_a_secret_by_name(fake_api: FakeApi) -> None:
    result = await run_action(
        ACTION, ctx_for(fake_api), method="POST",
        url=f"{fake_api.url}/api/v1/dags/train_fraud/dagRuns",
        json={"dag_run_id": "runbookd-7", "conf": {"model": "fraud-v3"}},
        auth_secret="airflow_token")
    assert result.summary == (f"POST {fake_api.url}/api/v1/dags/train_fraud/dagRuns "
                              "answered 200")
    assert result.output["status"] == 200
    assert result.output["json"]["dag_run_id"] == "runbookd-7"
    assert fake_api.dag_runs == [{"dag_id": "train_fraud", "dag_run_id": "runbookd-7",
                                  "conf": {"model": "fraud-v3"}, "state": "queued"}]
    assert fake_api.token not in json.dumps(result.output) + result.summary


async def test_unexpected_status_names_url_status_and_reason(fake_api: FakeApi) -> None:
    ctx = ctx_for(fake_api)
    params = {"method": "POST", "url": f"{fake_api.url}/api/v1/dags/d/dagRuns",
              "json": {"dag_run_id": "same"}, "auth_secret": "airflow_token"}
    await run_action(ACTION, ctx, **params)
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx, **params)
    assert failed.value.message.startswith(
        f"POST {fake_api.url}/api/v1/dags/d/dagRuns answered 409, expected 200-299: ")
    assert "DAGRun same already exists" in failed.value.message
    assert failed.value.output["status"] == 409


async def test_expect_status_accepts_listed_codes(fake_api: FakeApi) -> None:
    result = await run_action(ACTION, ctx_for(fake_api), url=f"{fake_api.url}/status/404",
                              expect_status=[200, 404])
    assert result.output["status"] == 404


async def test_missing_secret_is_named_without_values(fake_api: FakeApi) -> None:
    with pytest.raises(ActionFailed, match=r"secret 'nope' is not configured.*airflow_token"):
        await run_action(ACTION, ctx_for(fake_api), url=f"{fake_api.url}/echo",
                         auth_secret="nope")


async def test_secret_headers_and_echoed_secrets_are_redacted(fake_api: FakeApi) -> None:
    result = await run_action(ACTION, ctx_for(fake_api), url=f"{fake_api.url}/echo",
                              secret_headers={"X-Flag-Key": "airflow_token"},
                              headers={"X-Request-Source": "runbookd"},
                              params={"flag": "fraud_v3_fallback"})
    echoed = result.output["json"]
    assert echoed["headers"]["x-flag-key"] == "***"
    assert echoed["query"] == {"flag": "fraud_v3_fallback"}
    assert fake_api.requests[-1].headers["x-flag-key"] == fake_api.token
    assert fake_api.token not in json.dumps(result.output)


def test_inline_credentials_are_refused() -> None:
    for header in ("Authorization", "cookie", "X-API-Key"):
        with pytest.raises(ValidationError, match="carries a credential"):
            HttpRequest.Params.model_validate({"url": "http://x/", "headers": {header: "t"}})
    with pytest.raises(ValidationError):
        HttpRequest.Params.model_validate({"url": "file:///etc/passwd"})


async def test_host_not_on_the_allow_list(fake_api: FakeApi) -> None:
    with pytest.raises(ActionFailed, match="host 'localhost' is not on the HTTP allow-list"):
        await run_action(ACTION, ctx_for(fake_api),
                         url=fake_api.url.replace("127.0.0.1", "localhost") + "/echo")
    assert fake_api.requests == []


async def test_unreachable_host_is_named() -> None:
    with pytest.raises(ActionFailed, match=r"could not reach 127\.0\.0\.1:9 \(ConnectError"):
        await run_action(ACTION, make_ctx(allow=["127.0.0.1"]), url="http://127.0.0.1:9/x")


async def test_large_bodies_are_truncated(fake_api: FakeApi) -> None:
    result = await run_action(ACTION, ctx_for(fake_api), url=f"{fake_api.url}/big")
    assert result.output["body_truncated"] is True
    assert len(result.output["body"]) < 2200
    assert "json" not in result.output


async def test_dry_run_sends_nothing(fake_api: FakeApi) -> None:
    result = await run_action(ACTION, ctx_for(fake_api, dry_run=True), method="POST",
                              url=f"{fake_api.url}/api/v1/dags/d/dagRuns",
                              json={"conf": {}}, auth_secret="airflow_token")
    assert result.summary == (f"would send POST {fake_api.url}/api/v1/dags/d/dagRuns with "
                              'JSON {"conf": {}}, auth from secret airflow_token, '
                              "expecting 200-299")
    assert result.output["headers"] == ["Authorization"]
    assert fake_api.requests == []


async def test_own_timeout_and_cancellation(fake_api: FakeApi) -> None:
    with pytest.raises(ActionFailed, match=r"127\.0\.0\.1:\d+ did not answer in time"):
        await run_action(ACTION, ctx_for(fake_api), url=f"{fake_api.url}/slow", timeout="300ms")
    ctx = ctx_for(fake_api)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_action(ACTION, ctx, url=f"{fake_api.url}/slow"), 0.3)
    # The shared client is still usable after the cancelled request.
    assert (await run_action(ACTION, ctx, url=f"{fake_api.url}/echo")).output["status"] == 200
    assert fake_api.slow_started == 2
    assert isinstance(ctx.http.client, httpx.AsyncClient)
