"""Plans of the actions that change something outside runbookd (http, command, notify): one
line for the approver, `resolved` for comparing, no secret in either, and nothing sent or run.

The MLflow plans are checked against a real server in tests/integration/test_plan_mlflow.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.actions.base import Action, ActionContext, ActionFailed, ActionPlan, Plannable
from app.actions.builtin import all_actions
from app.actions.command import CommandRun
from app.actions.http import HttpRequest
from app.actions.notify import NotifySlack, NotifyWebhook, PagerdutyResolve, PagerdutyTrigger
from app.outbound import OutboundHttp
from tests.support.action_ctx import make_ctx

PYTHON = sys.executable
SLACK_URL = "https://hooks.slack.com/services/T000/B000/slack-url-secret-part"
HOOK_URL = "https://hooks.example.com/in/hook-path-secret?key=hook-query-secret"
ROUTING_KEY = "R0UT1NGKEY" * 3
SECRETS = {"airflow_token": "airflow-token-value", "flags_key": "flags-key-value",
           "slack_ops": SLACK_URL, "hook": HOOK_URL, "pd_ml": ROUTING_KEY}
# Every value that must never show in a plan.
NEVER_SHOWN = [*SECRETS.values(), "services/T000", "hook-path-secret", "hook-query-secret",
               "s3cr3t-query", "user:pw"]

# The built-ins with a side effect: each must resolve its change in a plan() of its own.
WITH_SIDE_EFFECTS = {"registry.set_alias", "mlflow.set_alias", "mlflow.rollback_alias",
                     "mlflow.set_tag", "http.request", "command.run", "notify.slack",
                     "notify.webhook", "pagerduty.trigger", "pagerduty.resolve",
                     "airflow.trigger", "airflow.clear_failed", "airflow.pause", "airflow.unpause"}

WITH_SIDE_EFFECTS |= {"kubernetes.rollout_restart", "kubernetes.rollout_undo",
                      "kubernetes.scale", "argo.rollout_abort", "argo.rollout_promote",
                      "runbook.start"}


class Recorder:
    """An HTTP client whose transport records every request (a plan must send none)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def http(self, allow: list[str]) -> OutboundHttp:
        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return httpx.Response(200, json={})
        return OutboundHttp(allow, client=httpx.AsyncClient(transport=httpx.MockTransport(record)))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def ctx(recorder: Recorder, allow: list[str] | None = None, **settings: Any) -> ActionContext:
    allow = allow or ["airflow.internal", "hooks.slack.com", "hooks.example.com",
                      "events.pagerduty.com"]
    secrets = {name: SecretStr(value) for name, value in SECRETS.items()}
    return make_ctx(allow=allow, http=recorder.http(allow), execution_id=42,
                    step_id="rollback", secrets=secrets, **settings)


async def plan(action: Action, context: ActionContext, **params: Any) -> ActionPlan:
    assert isinstance(action, Plannable)
    made = await action.plan(context, action.Params.model_validate(params))
    shown = json.dumps(made.as_dict(), ensure_ascii=False)
    for value in NEVER_SHOWN:
        assert value not in shown, f"{value!r} shows in the plan: {shown}"
    return made


def test_every_built_in_with_a_side_effect_has_a_plan() -> None:
    planned = {a.name for a in all_actions() if isinstance(a, Plannable)}
    assert planned == WITH_SIDE_EFFECTS


# -- http.request --------------------------------------------------------------------------

async def test_http_plan_is_the_request_line_without_query_or_headers(recorder) -> None:
    made = await plan(HttpRequest(), ctx(recorder), method="POST",
                      url="https://user:pw@airflow.internal/api/v2/dags/retrain/dagRuns"
                          "?token=s3cr3t-query#top",
                      params={"token": "s3cr3t-query"}, headers={"X-Team": "ml"},
                      auth_secret="airflow_token", secret_headers={"X-Flags": "flags_key"},
                      json={"conf": {"model": "fraud-v3"}, "dag_run_id": "r-1"})
    body = {"dag_run_id": "r-1", "conf": {"model": "fraud-v3"}}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                            .encode()).hexdigest()
    assert made.resolved == {"method": "POST",
                             "url": "https://airflow.internal/api/v2/dags/retrain/dagRuns",
                             "body_sha256": digest}
    assert made.summary == ("POST https://airflow.internal/api/v2/dags/retrain/dagRuns with "
                            '{"conf": {"model": "fraud-v3"}, "dag_run_id": "r-1"}')
    assert recorder.requests == []


async def test_http_plan_changes_with_the_body_and_not_with_key_order(recorder) -> None:
    url = "https://airflow.internal/api/v2/dags/retrain/dagRuns"
    one = await plan(HttpRequest(), ctx(recorder), method="POST", url=url,
                     json={"a": 1, "b": [1, 2]})
    same = await plan(HttpRequest(), ctx(recorder), method="POST", url=url,
                      json={"b": [1, 2], "a": 1})
    other = await plan(HttpRequest(), ctx(recorder), method="POST", url=url,
                       json={"a": 2, "b": [1, 2]})
    bare = await plan(HttpRequest(), ctx(recorder), method="DELETE", url=url)
    assert one.resolved == same.resolved
    assert one.resolved != other.resolved
    assert bare.summary == f"DELETE {url}"
    assert bare.resolved == {"method": "DELETE", "url": url, "body_sha256": None}


async def test_http_plan_fails_like_the_request_would(recorder) -> None:
    with pytest.raises(ActionFailed, match=r"host 'elsewhere\.example' is not on the HTTP "
                                           "allow-list"):
        await plan(HttpRequest(), ctx(recorder), method="POST",
                   url="https://elsewhere.example/x?token=s3cr3t-query")
    with pytest.raises(ActionFailed, match="secret 'missing_token' is not configured"):
        await plan(HttpRequest(), ctx(recorder), url="https://airflow.internal/x",
                   auth_secret="missing_token")
    assert recorder.requests == []


# -- command.run -----------------------------------------------------------------------------

async def test_command_plan_is_the_argv_with_its_executable_resolved(recorder,
                                                                     tmp_path: Path) -> None:
    context = ctx(recorder, command_allowlist=["echo"])
    made = await plan(CommandRun(), context,
                      argv=["echo", "argo", "rollouts", "abort", "fraud-v3", "-n", "ml serving"])
    echo = shutil.which("echo")
    assert made.summary == ("argv: echo argo rollouts abort fraud-v3 -n 'ml serving' "
                            f"(echo is {echo})")
    assert made.resolved == {"argv": ["echo", "argo", "rollouts", "abort", "fraud-v3", "-n",
                                      "ml serving"], "executable": echo}


async def test_command_plan_runs_nothing_and_fails_when_it_cannot_run(recorder,
                                                                      tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    context = ctx(recorder, command_allowlist=[PYTHON])
    made = await plan(CommandRun(), context, cwd=str(tmp_path), secret_env={"T": "flags_key"},
                      argv=[PYTHON, "-c", f"open({str(marker)!r}, 'w')"])
    assert made.summary.startswith(f"argv: {PYTHON} -c ")
    assert made.summary.endswith(f" in {tmp_path}")
    assert made.resolved["executable"] == PYTHON
    assert not marker.exists()
    with pytest.raises(ActionFailed, match="'rm' is not on the command allow-list"):
        await plan(CommandRun(), context, argv=["rm", "-rf", str(tmp_path)])
    with pytest.raises(ActionFailed, match="working directory /no/such/dir does not exist"):
        await plan(CommandRun(), context, argv=[PYTHON], cwd="/no/such/dir")
    with pytest.raises(ActionFailed, match="secret 'nope' is not configured"):
        await plan(CommandRun(), context, argv=[PYTHON], secret_env={"T": "nope"})


# -- notify.* and pagerduty.* ------------------------------------------------------------------

async def test_slack_plan_names_the_host_and_the_message(recorder) -> None:
    made = await plan(NotifySlack(), ctx(recorder), webhook_secret="slack_ops", kind="started",
                      text="Rolling back fraud-v3 to version 6")
    assert made.summary == ("post a started message to the Slack webhook at hooks.slack.com "
                            "(secret slack_ops): 'Rolling back fraud-v3 to version 6'")
    assert made.resolved["host"] == "hooks.slack.com"
    assert made.resolved["via"] == "secret slack_ops"
    assert made.resolved["title"] == "runbookd execution #42"
    other = await plan(NotifySlack(), ctx(recorder), webhook_secret="slack_ops",
                       kind="started", text="Rolling back fraud-v3 to version 5")
    assert other.resolved != made.resolved
    default = await plan(NotifySlack(), ctx(recorder, slack_webhook_url=SLACK_URL),
                         text="x" * 500)
    assert default.resolved["via"] == "RUNBOOKD_SLACK_WEBHOOK_URL"
    assert default.summary.endswith("'" + "x" * 120 + "…'")
    with pytest.raises(ActionFailed, match="no destination configured: set "
                                           "RUNBOOKD_SLACK_WEBHOOK_URL or name a secret"):
        await plan(NotifySlack(), ctx(recorder), text="hello")
    assert recorder.requests == []


async def test_webhook_plan_names_the_host_and_the_payload(recorder) -> None:
    made = await plan(NotifyWebhook(), ctx(recorder), url_secret="hook",
                      payload={"model": "fraud-v3", "action": "rollback"})
    assert made.summary == ("POST a JSON payload (2 field(s): action, model) to the webhook at "
                            "hooks.example.com (secret hook)")
    assert set(made.resolved) == {"host", "via", "payload_sha256"}
    other = await plan(NotifyWebhook(), ctx(recorder), url_secret="hook",
                       payload={"model": "fraud-v4", "action": "rollback"})
    assert other.resolved["payload_sha256"] != made.resolved["payload_sha256"]
    assert recorder.requests == []


async def test_pagerduty_plans_name_the_incident_never_the_key(recorder) -> None:
    trigger = await plan(PagerdutyTrigger(), ctx(recorder), routing_key_secret="pd_ml",
                         summary="fraud-v3 drift: rolled back", severity="critical")
    assert trigger.summary == ("trigger PagerDuty incident runbookd-42 (critical): 'fraud-v3 "
                               "drift: rolled back' via events.pagerduty.com (secret pd_ml)")
    assert trigger.resolved == {"host": "events.pagerduty.com", "via": "secret pd_ml",
                                "event_action": "trigger", "dedup_key": "runbookd-42",
                                "severity": "critical",
                                "summary": "fraud-v3 drift: rolled back"}
    resolve = await plan(PagerdutyResolve(),
                         ctx(recorder, pagerduty_routing_key=SecretStr(ROUTING_KEY)))
    assert resolve.summary == ("resolve PagerDuty incident runbookd-42 via events.pagerduty.com "
                               "(RUNBOOKD_PAGERDUTY_ROUTING_KEY)")
    with pytest.raises(ActionFailed, match="no destination configured: set "
                                           "RUNBOOKD_PAGERDUTY_ROUTING_KEY"):
        await plan(PagerdutyResolve(), ctx(recorder))
    assert recorder.requests == []
