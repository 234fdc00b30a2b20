"""A process starts without the modules it needs only on first use (issue 17, target 9).

Each entry of LAZY is megabytes of every process's idle memory (benchmarks/memory.py measures
it): lightkube and httpx2 load on the first call to a Kubernetes cluster, slack_sdk on the
first Slack button, and httpx's command-line tool (rich, pygments) never. The start-up is run
in a fresh interpreter, as `runbookd serve` does it: the CLI, the app, the action registry and
the shipped catalog (whose argo.* steps are validated with the Kubernetes parameters).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Package -> where it is needed; none may be imported by start-up.
LAZY = {
    "lightkube": "the kubernetes.* and argo.* actions' calls (app/actions/kube_client.py)",
    "httpx2": "lightkube's HTTP client",
    "slack_sdk": "a Slack button's signature check (app/engine/slack_buttons.py)",
    "rich": "httpx's command-line tool (blocked in app/__init__.py)",
    "pygments": "httpx's command-line tool (blocked in app/__init__.py)",
    # Development tools: the service must never import them.
    "mlflow": "tests only",
    "schemathesis": "tests only",
}

START_UP = """
import json, sys
from pathlib import Path

root = Path(sys.argv[1])
import app.cli
from app.actions.registry import default_registry
from app.catalog.loader import load_catalog
from app.config import Settings
from app.main import create_app

create_app(Settings(env="dev", database_url="sqlite+aiosqlite:///unused.db"))
catalog = load_catalog(root / "alert_mappings.yaml", root / "remediations",
                       action_names=default_registry().specs())
steps = sorted({s.action for rb in catalog.runbooks.values() for s in rb.runbook.steps})
print(json.dumps({"modules": sorted(sys.modules), "actions": steps}))
"""

FIRST_USE = """
import asyncio, hashlib, hmac, json, sys, time
from app.actions.base import ActionContext, ActionFailed
from app.actions.kubernetes_argo import RolloutAbort, RolloutParams
from app.config import Settings
from app.engine.slack_buttons import SlackRejected, verify_signature
from app.outbound import OutboundHttp

before = {m for m in sys.modules if m.split(".")[0] in ("lightkube", "slack_sdk")}
now = time.time()
body, stamp = b"payload=x", str(int(now))
good = "v0=" + hmac.new(b"s3cret", f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
verify_signature("s3cret", body, stamp, good, now=now)
try:
    verify_signature("s3cret", body, stamp, "v0=" + "0" * 64, now=now)
    forged = "accepted"
except SlackRejected as exc:
    forged = str(exc)

async def plan():
    settings = Settings(env="dev", kubeconfig=None)
    ctx = ActionContext(settings=settings, http=OutboundHttp(["127.0.0.1"]))
    try:
        await RolloutAbort().plan(ctx, RolloutParams(namespace="ml", name="fraud"))
    except ActionFailed as exc:
        return exc.message
    return "planned"

said = asyncio.run(plan())
after = {m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("lightkube", "slack_sdk")}
print(json.dumps({"before": sorted(before), "after": sorted(after), "forged": forged,
                  "kube": said}))
"""


def _run(script: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RUNBOOKD_") and k != "KUBECONFIG"}
    result = subprocess.run([sys.executable, "-c", script, str(ROOT)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_start_up_imports_none_of_the_modules_loaded_on_first_use(tmp_path):
    started = _run(START_UP, tmp_path)
    loaded = {name.split(".")[0] for name in started["modules"]}
    # The catalog really was validated with the Kubernetes parameters, without lightkube.
    assert any(a.startswith(("argo.", "kubernetes.")) for a in started["actions"])
    assert "app.actions.kube_params" in started["modules"]
    assert "app.actions.kube_client" not in started["modules"]
    early = {name: why for name, why in LAZY.items() if name in loaded}
    assert early == {}, f"imported at start-up, but needed only for: {early}"


def test_the_lazy_modules_load_and_work_on_first_use(tmp_path):
    used = _run(FIRST_USE, tmp_path)
    assert used["before"] == []
    assert used["after"] == ["lightkube", "slack_sdk"]
    assert used["forged"] == "bad signature"
    # lightkube loaded inside plan(): no configuration here, and it says what to set.
    assert used["kube"].startswith("no Kubernetes configuration: set RUNBOOKD_KUBECONFIG")
