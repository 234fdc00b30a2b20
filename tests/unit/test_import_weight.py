"""A process starts without the modules it needs only on first use (issue 17, target 9).

Each entry of LAZY is megabytes of every process's idle memory (benchmarks/memory.py measures
it): lightkube and httpx2 load on the first call to a Kubernetes cluster, slack_sdk on the
first Slack button, httpx where an outbound URL is first parsed or a request first made,
httpcore (and the CA bundle) on the first outbound request, and httpx's command-line tool
(rich, pygments) never; tenacity with the first step run or notification delivered.
Start-up runs in a fresh interpreter as `runbookd serve` runs once it has exec'd app.serve
(the CLI is not resident): the app, and every part its lifespan starts on SQLite, the
shipped catalog included (its argo.* steps are validated with the Kubernetes parameters).
The pages load on the first request whose path is a page's, and an action's parameters
model builds its validator when first used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKD = Path(sys.executable).parent / "runbookd"

# Package -> where it is needed; none may be imported by start-up.
LAZY = {
    "lightkube": "the kubernetes.* and argo.* actions' calls (app/actions/kube_client.py)",
    "httpx2": "lightkube's HTTP client",
    "slack_sdk": "a Slack button's signature check (app/engine/slack_buttons.py)",
    "httpx": "the first outbound request or URL parsed (app/outbound.py, the actions, notify)",
    "httpcore": "the first outbound request (app/outbound.py builds its client then)",
    "tenacity": "the first step run (app/engine/runner.py) or notification delivered",
    "rich": "httpx's command-line tool (blocked in app/__init__.py)",
    "pygments": "httpx's command-line tool (blocked in app/__init__.py)",
    # The command line: `runbookd serve` execs app.serve, which runs without it.
    "typer": "the command line",
    "click": "the command line",
    "app.cli": "the command line",
    # The web pages: app/web/install.py loads them on the first request for a page.
    "app.web.routes": "the first page request (app/web/install.py)",
    "app.web.pages": "the first page request, or a form refused before its route",
    "starlette.templating": "the pages' Jinja2 templates",
    # FastAPI imports it only to refuse v1 models; app/serve.py makes it unimportable.
    "pydantic.v1": "nothing (FastAPI's check for pydantic v1 models)",
    # Development tools: the service must never import them.
    "mlflow": "tests only",
    "schemathesis": "tests only",
}

START_UP = """
import asyncio, json, sys
from pathlib import Path

root, database = Path(sys.argv[1]), sys.argv[2]
import app.serve
from app.config import Settings
from app.lifecycle import running
from app.main import create_app

settings = Settings(env="dev", database_url=database, mappings=root / "alert_mappings.yaml",
                    remediations_dir=root / "remediations")
create_app(settings)


async def start():
    # What the service's lifespan starts: the catalog, writer, worker, sender.
    async with running(settings) as parts:
        await asyncio.sleep(0.5)  # the worker and the sender look for work once
        return sorted({s.action for rb in parts.catalog.catalog.runbooks.values()
                       for s in rb.runbook.steps})


actions = asyncio.run(start())


def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


# Action parameter models build their validators on first use (defer_build on ActionParams).
from pydantic._internal._mock_val_ser import MockValSer
from app.actions.base import ActionParams
params = sorted({m.__qualname__ for m in subclasses(ActionParams)})
built = sorted({m.__qualname__ for m in subclasses(ActionParams)
                if not isinstance(m.__pydantic_validator__, MockValSer)})
# A None entry is a module made unimportable (app/__init__.py, app/serve.py), not a loaded one.
print(json.dumps({"modules": sorted(n for n, m in sys.modules.items() if m is not None),
                  "actions": actions, "params": params, "params_built": built}))
"""

FIRST_USE = """
import asyncio, hashlib, hmac, http.server, json, sys, threading, time
from app.actions.base import ActionContext, ActionFailed
from app.actions.kubernetes_argo import RolloutAbort, RolloutParams
from app.config import Settings
from app.engine.slack_buttons import SlackRejected, verify_signature
from app.notify.errors import DeliveryError
from app.notify.webhook import send_webhook
from app.outbound import OutboundHttp

WATCHED = ("lightkube", "slack_sdk", "httpx", "httpcore")


def loaded():
    # A None entry is a module made unimportable (httpx._main, app/__init__.py), not loaded.
    return sorted({m.split(".")[0] for m, module in sys.modules.items()
                   if module is not None and m.split(".")[0] in WATCHED})


before = loaded()
now = time.time()
body, stamp = b"payload=x", str(int(now))
good = "v0=" + hmac.new(b"s3cret", f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
verify_signature("s3cret", body, stamp, good, now=now)
try:
    verify_signature("s3cret", body, stamp, "v0=" + "0" * 64, now=now)
    forged = "accepted"
except SlackRejected as exc:
    forged = str(exc)


class NoContent(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(204)
        self.end_headers()

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        posted.append([self.headers["Idempotency-Key"], self.headers["Content-Type"]])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


posted = []
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoContent)
threading.Thread(target=server.serve_forever, daemon=True).start()
# A port nobody listens on: bound, then closed.
closed_port = http.server.HTTPServer(("127.0.0.1", 0), NoContent)
unreachable = f"http://127.0.0.1:{closed_port.server_port}/hook"
closed_port.server_close()


async def notify():
    # httpx loads inside the sender: the webhook posts, and a transport error is classified.
    outbound = OutboundHttp(["127.0.0.1"])
    sent = await send_webhook(outbound, f"http://127.0.0.1:{server.server_port}/hook",
                              {"event": "test"}, idempotency_key="k-1")
    try:
        await send_webhook(outbound, unreachable, {}, idempotency_key="k-2")
        failed = None
    except DeliveryError as exc:
        failed = [str(exc), exc.retryable]
    await outbound.aclose()
    return sent.status_code, failed


async def use():
    outbound = OutboundHttp(["127.0.0.1"])
    ctx = ActionContext(settings=Settings(env="dev", kubeconfig=None), http=outbound)
    try:
        await RolloutAbort().plan(ctx, RolloutParams(namespace="ml", name="fraud"))
        kube = "planned"
    except ActionFailed as exc:
        kube = exc.message
    answer = await outbound.request("GET", f"http://127.0.0.1:{server.server_port}/")
    await outbound.aclose()
    try:
        await outbound.request("GET", f"http://127.0.0.1:{server.server_port}/")
        closed = "sent"
    except RuntimeError:
        closed = "refused"
    return kube, answer.status_code, closed


kube, status, closed = asyncio.run(use())
notified, notify_failed = asyncio.run(notify())
try:
    RolloutParams(namespace="ml", name="fraud", replicas=3)
    unknown = "accepted"
except ValueError as exc:
    unknown = exc.errors()[0]["type"]
server.shutdown()
print(json.dumps({"before": before, "after": loaded(), "forged": forged, "kube": kube,
                  "status": status, "closed": closed, "unknown": unknown,
                  "notified": notified, "posted": posted, "notify_failed": notify_failed}))
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("RUNBOOKD_") and k != "KUBECONFIG"}


def _run(script: str, tmp_path: Path, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", script, str(ROOT), *args], cwd=tmp_path,
                            env=_env(), capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def _migrated_database(tmp_path: Path) -> str:
    database = f"sqlite+aiosqlite:///{tmp_path / 'runbookd.db'}"
    subprocess.run([str(RUNBOOKD), "db", "upgrade"], cwd=tmp_path, check=True,
                   env={**_env(), "RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": database},
                   capture_output=True, timeout=120)
    return database


def test_start_up_imports_none_of_the_modules_loaded_on_first_use(tmp_path):
    database = _migrated_database(tmp_path)
    started = _run(START_UP, tmp_path, database)
    loaded = {name.split(".")[0] for name in started["modules"]} | set(started["modules"])
    # The catalog really was validated with the Kubernetes parameters, without lightkube.
    assert any(a.startswith(("argo.", "kubernetes.")) for a in started["actions"])
    assert "app.actions.kube_params" in started["modules"]
    assert "app.actions.kube_client" not in started["modules"]
    assert len(started["params"]) > 20
    assert started["params_built"] == []
    early = {name: why for name, why in LAZY.items() if name in loaded}
    assert early == {}, f"imported at start-up, but needed only for: {early}"


def test_the_lazy_modules_load_and_work_on_first_use(tmp_path):
    used = _run(FIRST_USE, tmp_path)
    assert used["before"] == []
    assert used["after"] == ["httpcore", "httpx", "lightkube", "slack_sdk"]
    assert used["forged"] == "bad signature"
    # lightkube loaded inside plan(): no configuration here, and it says what to set.
    assert used["kube"].startswith("no Kubernetes configuration: set RUNBOOKD_KUBECONFIG")
    # The outbound client, built on the first request, sends it; once closed, it sends none.
    assert used["status"] == 204
    assert used["closed"] == "refused"
    # A parameters model, built on first use, still refuses an unknown key.
    assert used["unknown"] == "extra_forbidden"
    # The notify webhook, with httpx imported where it sends: it posts JSON with its key, and
    # a host that refuses the connection is a retryable failure naming only host and port.
    assert used["notified"] == 204
    assert used["posted"] == [["k-1", "application/json"]]
    message, retryable = used["notify_failed"]
    assert message.startswith("webhook: could not reach 127.0.0.1:")
    assert "ConnectError" in message and "/hook" not in message
    assert retryable is True


RETRIES = """
import asyncio, json, sys
from typing import ClassVar
from app.actions.base import ActionContext, ActionFailed, ActionParams, ActionResult
from app.actions.registry import ActionRegistry
from app.config import Settings
from app.engine.runner import run_action
from app.notify.errors import DeliveryError
from app.notify.retry import deliver_with_retries
from app.outbound import OutboundHttp


class FlakyParams(ActionParams):
    fail_first: int = 0


class Flaky:
    name: ClassVar[str] = "test.flaky"
    Params: ClassVar[type[ActionParams]] = FlakyParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "fails its first calls"
    calls = 0

    async def run(self, ctx, params):
        Flaky.calls += 1
        if Flaky.calls <= params.fail_first:
            raise ActionFailed(f"call {Flaky.calls} failed")
        return ActionResult(f"call {Flaky.calls} ran")


registry = ActionRegistry()
registry.register(Flaky())
ctx = ActionContext(settings=Settings(env="dev", kubeconfig=None), http=OutboundHttp([]))


def step(fail_first, *, idempotent):
    Flaky.calls = 0
    outcome = asyncio.run(run_action(registry, ctx, "test.flaky", {"fail_first": fail_first},
                                     timeout=5, retries=2, idempotent=idempotent))
    return [outcome.status, outcome.summary, outcome.attempts]


seen = {"before": "tenacity" in sys.modules}
seen["first"] = step(1, idempotent=True)
modules = set(sys.modules)
seen["second"] = step(1, idempotent=True)
seen["once"] = step(1, idempotent=False)
seen["new_modules"] = sorted(set(sys.modules) - modules)
seen["after"] = "tenacity" in sys.modules


async def deliveries():
    tries = []

    async def send():
        tries.append(len(tries))
        if len(tries) == 1:
            raise DeliveryError("busy", retryable=True)
        return "sent"

    return await deliver_with_retries(send, attempts=3, initial=0.01), len(tries)


seen["delivered"] = list(asyncio.run(deliveries()))
print(json.dumps(seen))
"""


def test_tenacity_loads_on_the_first_step_and_retries_as_before(tmp_path):
    seen = _run(RETRIES, tmp_path)
    assert seen["before"] is False
    # An idempotent step that fails once runs again; the import happens in the first step.
    assert seen["first"] == ["succeeded", "call 2 ran", 2]
    assert seen["after"] is True
    # Later steps import nothing more: the price is paid once per process.
    assert seen["second"] == ["succeeded", "call 2 ran", 2]
    assert seen["new_modules"] == []
    # A step that is not idempotent never runs twice.
    assert seen["once"] == ["failed", "call 1 failed", 1]
    # A notification's retryable failure is retried, with tenacity imported by the delivery.
    assert seen["delivered"] == ["sent", 2]


PAGES = """
import json, sys
from pathlib import Path
import app.serve
from fastapi.testclient import TestClient
from app.config import Settings
from app.main import create_app
from app.web.install import PAGE_SEGMENTS, LazyPages

root = Path(sys.argv[1])
settings = Settings(env="dev", database_url=sys.argv[2], mappings=root / "alert_mappings.yaml",
                    remediations_dir=root / "remediations")


def pages_loaded():
    return "app.web.routes" in sys.modules


seen = {}
with TestClient(create_app(settings)) as client:
    # Probes, the API, and a path that is nobody's answer as before, without the pages.
    seen["healthy"] = client.get("/-/healthy").status_code
    seen["api"] = client.get("/api/v1/runbooks").status_code
    seen["nowhere"] = client.get("/nowhere").status_code
    seen["loaded_before"] = pages_loaded()
    login = client.get("/login")
    seen["login"] = [login.status_code, login.headers["content-type"],
                     "<form" in login.text]
    seen["loaded_after"] = pages_loaded()
    seen["css"] = client.get("/static/app.css").status_code
    seen["wrong_method"] = client.put("/login").status_code
    seen["bad_id"] = client.get("/executions/x", follow_redirects=False).status_code
    seen["signed_out"] = client.get("/guards", follow_redirects=False).headers.get("location")
    lazy = next(r for r in client.app.router.routes if isinstance(r, LazyPages))
    segments = {(getattr(r, "path", "") or "/").lstrip("/").split("/")[0]
                for r in lazy.routes}
    segments |= {(c.path or "/").lstrip("/").split("/")[0]
                 for r in lazy.routes for c in getattr(r, "effective_route_contexts",
                                                       lambda: [])()}
    seen["segments"] = sorted(segments - {""} | ({""} & segments))
    seen["declared"] = sorted(PAGE_SEGMENTS)
print(json.dumps(seen))
"""


def test_the_pages_load_on_the_first_request_for_a_page(tmp_path):
    database = _migrated_database(tmp_path)
    seen = _run(PAGES, tmp_path, database)
    assert seen["healthy"] == 200
    assert seen["api"] == 401  # no token: the API answers, the pages stay unloaded
    assert seen["nowhere"] == 404
    assert seen["loaded_before"] is False
    assert seen["login"] == [200, "text/html; charset=utf-8", True]
    assert seen["loaded_after"] is True
    assert seen["css"] == 200
    assert seen["wrong_method"] == 405
    assert seen["signed_out"] == "/login?next=%2Fguards"
    assert seen["bad_id"] == 422  # the pages' own HTML validation error, as before
    # Every page's first path segment is one install.py sends to the pages, and no other.
    assert seen["segments"] == seen["declared"]
