"""The first hour (issue 15): examples/ holds real alert bodies that the intake parses and the
shipped catalog maps as the README says, deploy/ parses and uses only real settings, and
`runbookd demo-registry` / `runbookd registry show` tell the truth about the registry."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from typer.testing import CliRunner

import app.metrics as metrics
from app.actions.embedded_registry import ModelRegistry, create_demo_registry
from app.cli import app as cli
from app.config import Settings, get_settings
from app.intake.normalize import from_alertmanager, from_pagerduty
from app.intake.schemas import AlertmanagerWebhook, GrafanaWebhook, PagerDutyWebhook
from app.main import create_app
from tests.support.binaries import need_binary

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEPLOY = ROOT / "deploy"
README = (ROOT / "README.md").read_text()
NOW = dt.datetime(2026, 12, 1, 21, 30, tzinfo=dt.UTC)

# Each example, the source it is posted as, and the runbook the shipped catalog gives it.
EXAMPLE_RUNBOOKS = {
    "alertmanager-firing.json": ("alertmanager", "firing", "registry-quick-rollback"),
    "alertmanager-resolved.json": ("alertmanager", "resolved", "registry-quick-rollback"),
    "grafana-firing.json": ("grafana", "firing", "model-drift"),
    "pagerduty-incident-triggered.json": ("pagerduty", "firing", None),
}


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


def readme_section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def fenced(text: str, lang: str) -> list[str]:
    """The bodies of the ```lang blocks of `text`, in order (indented ones too)."""
    pattern = re.compile(rf"^( *)```{lang}\n(.*?)^\1```", re.S | re.M)
    return [re.sub(rf"^{m.group(1)}", "", m.group(2), flags=re.M)
            for m in pattern.finditer(text)]


def go_labels(labels: dict[str, str]) -> str:
    """A label set as Go's model.LabelSet.String() writes it, as in Alertmanager's groupKey."""
    return "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


def am_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set: FNV-1a 64 over sorted name, 0xff, value, 0xff."""
    digest = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name.encode(), b"\xff", labels[name].encode(), b"\xff"):
            for byte in part:
                digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


def test_the_fingerprint_helper_is_alertmanagers():
    # Read off a real Alertmanager 0.25 (the capture behind examples/alertmanager-*.json).
    assert am_fingerprint({"alertname": "ModelRollbackRequested", "model": "demo-model",
                           "severity": "warning", "team": "ml-platform"}) == "dfe449c72a111fbc"
    assert am_fingerprint({"a": "b"}) != am_fingerprint({"a": "c"})


def test_every_example_is_listed_and_nothing_else_is_in_examples():
    bodies = {p.name for p in EXAMPLES.glob("*.json")}
    assert bodies == set(EXAMPLE_RUNBOOKS)
    listing = (EXAMPLES / "README.md").read_text()
    for name in bodies:
        assert f"`{name}`" in listing


@pytest.mark.parametrize("name", ["alertmanager-firing.json", "alertmanager-resolved.json",
                                  "grafana-firing.json"])
def test_alertmanager_shaped_examples_parse_and_hold_together(name):
    body = example(name)
    source, status, _ = EXAMPLE_RUNBOOKS[name]
    model = GrafanaWebhook if source == "grafana" else AlertmanagerWebhook
    envelope = from_alertmanager(model.model_validate(body), source=source, received_at=NOW)
    assert [a.status for a in envelope.alerts] == [status]
    assert body["version"] == ("1" if source == "grafana" else "4")
    alerts = body["alerts"]
    # groupKey is "<route key>:<groupLabels>", and every alert carries its group's labels.
    assert body["groupKey"].endswith(":" + go_labels(body["groupLabels"])), body["groupKey"]
    for alert in alerts:
        assert body["groupLabels"].items() <= alert["labels"].items()
        assert alert["fingerprint"] == am_fingerprint(alert["labels"])
    common = set.intersection(*(set(a["labels"].items()) for a in alerts))
    assert set(body["commonLabels"].items()) == common
    assert body["status"] == status
    zero = "0001-01-01T00:00:00Z"
    if status == "firing":
        assert all(a["endsAt"] == zero for a in alerts)
        assert envelope.alerts[0].ends_at is None
    else:
        assert envelope.alerts[0].ends_at is not None
        assert envelope.alerts[0].ends_at > envelope.alerts[0].starts_at


def test_the_resolved_example_resolves_the_firing_one():
    firing, resolved = example("alertmanager-firing.json"), example("alertmanager-resolved.json")
    for key in ("groupKey", "groupLabels", "receiver"):
        assert firing[key] == resolved[key]
    (one,), (two,) = firing["alerts"], resolved["alerts"]
    # Deduplication is fingerprint plus startsAt: a resolve is a change of the same alert.
    assert (one["fingerprint"], one["startsAt"]) == (two["fingerprint"], two["startsAt"])
    assert one["labels"] == two["labels"]


def test_the_alertmanager_examples_group_as_the_readme_routes():
    config = yaml.safe_load(next(b for b in fenced(README, "yaml")
                                 if b.startswith("# alertmanager.yml")))
    group_by = config["route"]["group_by"]
    for name in ("alertmanager-firing.json", "alertmanager-resolved.json"):
        assert sorted(example(name)["groupLabels"]) == sorted(group_by)


def test_the_pagerduty_example_parses_into_one_incident_alert():
    body = example("pagerduty-incident-triggered.json")
    envelope = from_pagerduty(PagerDutyWebhook.model_validate(body), received_at=NOW,
                              webhook_id=None)
    (alert,) = envelope.alerts
    assert alert.status == "firing"
    assert envelope.delivery_key == body["event"]["id"]
    assert alert.labels["service"] == "demo-model serving"
    assert alert.labels["urgency"] == "high"
    assert alert.fingerprint == body["event"]["data"]["id"]


@pytest.fixture
def runbookd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """`runbookd(*args, **env)`: the CLI in this process, in dev, on a registry under tmp."""
    monkeypatch.setenv("RUNBOOKD_ENV", "dev")
    monkeypatch.setenv("RUNBOOKD_REGISTRY_DIR", str(tmp_path / "registry"))
    monkeypatch.setenv("RUNBOOKD_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/none.db")

    def invoke(*args: str, **env: str):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        return CliRunner().invoke(cli, list(args))

    yield invoke
    get_settings.cache_clear()


def simulated(runbookd, name: str, **env: str) -> list[dict[str, Any]]:
    result = runbookd("simulate", "--no-guards", "--json", str(EXAMPLES / name), **env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"]


@pytest.mark.parametrize("name", sorted(EXAMPLE_RUNBOOKS))
def test_simulate_maps_each_example_to_its_runbook(runbookd, name):
    source, status, runbook = EXAMPLE_RUNBOOKS[name]
    (result,) = simulated(runbookd, name)
    assert (result["alert"]["source"], result["alert"]["status"]) == (source, status)
    assert [plan["runbook"] for plan in result["runbooks"]] == ([runbook] if runbook else [])
    for plan in result["runbooks"]:
        assert plan["param_errors"] == []
        assert plan["params"]["model"] == "demo-model"


def test_the_readmes_pagerduty_mapping_starts_the_quick_rollback(runbookd, tmp_path):
    quick_start = readme_section("Quick start")
    (snippet,) = [b for b in fenced(quick_start, "yaml") if "pagerduty" in b]
    shipped = yaml.safe_load((ROOT / "alert_mappings.yaml").read_text())
    mappings = tmp_path / "alert_mappings.yaml"
    mappings.write_text(yaml.safe_dump(
        {"mappings": yaml.safe_load(snippet) + shipped["mappings"]}))
    (result,) = simulated(runbookd, "pagerduty-incident-triggered.json",
                          RUNBOOKD_MAPPINGS=str(mappings),
                          RUNBOOKD_REMEDIATIONS_DIR=str(ROOT / "remediations"))
    (plan,) = result["runbooks"]
    assert (plan["mapping"], plan["runbook"]) == ("pagerduty-demo-model",
                                                  "registry-quick-rollback")
    assert plan["params"] == {"model": "demo-model", "alias": "champion"}
    assert plan["param_errors"] == []


def test_demo_registry_says_where_the_champion_really_is(runbookd, tmp_path):
    first = runbookd("demo-registry")
    assert first.exit_code == 0, first.output
    assert first.stdout.strip().endswith("demo-model v1, v2; champion -> 2")
    # What the Quick start's approved rollback does, then a second `make run`.
    ModelRegistry(tmp_path / "registry").set_alias("demo-model", "champion", "1",
                                                   reason="rolled back", execution_id=1,
                                                   step_id="rollback", kind="rollback")
    second = runbookd("demo-registry")
    assert second.exit_code == 0, second.output
    assert "champion -> 1 (kept from an earlier run" in second.stdout
    assert "champion -> 2" not in second.stdout


def test_registry_show_lists_aliases_versions_and_history(runbookd, tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    create_demo_registry(tmp_path / "registry")
    registry.set_alias("demo-model", "champion", "1", reason="v2 misbehaves", execution_id=7,
                       step_id="rollback", kind="rollback")
    shown = runbookd("registry", "show", "demo-model")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[1:3] == ["aliases:", lines[2]]
    assert lines[2].startswith("  champion -> 1  (set ")
    assert "by execution 7; reason: v2 misbehaves" in lines[2]
    assert lines[lines.index("versions:") + 1:][:2] == ["  1  <- champion", "  2"]
    history = lines[lines.index("history of champion (newest last):") + 1:]
    assert [line.split("  ")[2] for line in history] == ["(unset) -> 1", "1 -> 2", "2 -> 1"]
    assert history[-1].endswith("rollback by execution 7, step rollback; reason: v2 misbehaves")
    registry.set_alias("demo-model", "champion", "2", execution_id=8, step_id="12")
    again = runbookd("registry", "show", "demo-model")
    assert again.stdout.splitlines()[-1].endswith("1 -> 2  set by execution 8, step run 12")


def test_registry_show_of_an_unknown_model_fails_naming_the_known_ones(runbookd, tmp_path):
    missing = runbookd("registry", "show", "demo-model")
    assert missing.exit_code == 1
    assert "is not in the registry" in missing.output
    assert "runbookd demo-registry" in missing.output
    create_demo_registry(tmp_path / "registry")
    other = runbookd("registry", "show", "fraud-v3")
    assert other.exit_code == 1
    assert "(models: demo-model)" in other.output


# deploy/


def deploy_yaml(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def kube_docs() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert len(kinds) == len(docs), "one object of each kind"
    return kinds


def read_from_environ() -> set[str]:
    """RUNBOOKD_* variables the code reads without Settings: the log options, which are
    needed before the settings can be read (app/logs.py)."""
    found: set[str] = set()
    for path in (ROOT / "app").rglob("*.py"):
        found |= set(re.findall(r"os\.environ\.get\(\"(RUNBOOKD_[A-Z0-9_]+)\"", path.read_text()))
    return found


def test_every_runbookd_variable_in_deploy_is_a_setting():
    known = {f"RUNBOOKD_{name.upper()}" for name in Settings.model_fields}
    assert {"RUNBOOKD_LOG_FORMAT", "RUNBOOKD_LOG_LEVEL"} <= read_from_environ()
    known |= read_from_environ()
    used: dict[str, set[str]] = {}
    for path in sorted(DEPLOY.iterdir()):
        for name in re.findall(r"RUNBOOKD_[A-Z0-9_]*[A-Z0-9]", path.read_text()):
            used.setdefault(name, set()).add(path.name)
    assert {"RUNBOOKD_DATABASE_URL", "RUNBOOKD_WEBHOOK_TOKENS", "RUNBOOKD_LINK_SECRET",
            "RUNBOOKD_API_TOKENS_FILE"} <= set(used)
    unknown = {name: files for name, files in used.items() if name not in known}
    assert unknown == {}, f"not settings of app/config.py: {unknown}"


def test_compose_runs_the_readmes_alertmanager_against_two_replicas_on_postgres():
    compose = deploy_yaml("docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "runbookd-1", "runbookd-2",
                             "alertmanager", "prometheus"}
    # The Alertmanager config is the README's, to the byte of every key.
    readme_config = yaml.safe_load(next(b for b in fenced(README, "yaml")
                                        if b.startswith("# alertmanager.yml")))
    assert deploy_yaml("alertmanager.yml") == readme_config
    receiver = readme_config["receivers"][0]["webhook_configs"][0]
    host = re.match(r"http://([^:/]+):8080/", receiver["url"]).group(1)
    token_file = receiver["http_config"]["authorization"]["credentials_file"]
    assert ("./alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
            in services["alertmanager"]["volumes"])
    assert f"./secrets/webhook-token:{token_file}:ro" in services["alertmanager"]["volumes"]
    for name in ("runbookd-1", "runbookd-2"):
        replica = services[name]
        assert host in replica["networks"]["default"]["aliases"]
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert replica["command"][-1].endswith("exec runbookd serve --host 0.0.0.0 --port 8080")
        assert "/run/secrets/webhook-token" in replica["command"][-1]
        assert replica["environment"]["RUNBOOKD_DATABASE_URL"].startswith(
            "postgresql+asyncpg://runbookd:${POSTGRES_PASSWORD")
        assert (DEPLOY / replica["build"]["context"] / replica["build"]["dockerfile"]).is_file()
    assert services["migrate"]["command"] == ["runbookd", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    prometheus = deploy_yaml("prometheus.yml")
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["runbookd-1:8080", "runbookd-2:8080"]
    # env.example lists every variable compose insists on, empty.
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (DEPLOY / "docker-compose.yml").read_text()))
    example_env = dict(line.split("=", 1) for line in (DEPLOY / "env.example").read_text()
                       .splitlines() if line and not line.startswith("#"))
    assert example_env == dict.fromkeys(required, "")


def test_kubernetes_manifest_probes_real_paths_and_wires_its_secret():
    kinds = kube_docs()
    assert set(kinds) == {"Namespace", "Secret", "Job", "Deployment", "Service"}
    app = create_app(Settings(env="dev", database_url="sqlite+aiosqlite:///unused.db"))
    paths = {getattr(route, "path", None) for route in app.routes}
    deployment = kinds["Deployment"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert {"/-/healthy", "/-/ready"} <= paths
    assert deployment["spec"]["replicas"] == 2
    assert container["command"] == ["runbookd", "serve", "--host", "0.0.0.0", "--port", "8080"]
    job = kinds["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["runbookd", "db", "upgrade"]
    # Every secretKeyRef names a key of the Secret; every secret volume item too.
    secret = kinds["Secret"]
    keys = set(secret["stringData"])
    refs = [e["valueFrom"]["secretKeyRef"] for c in (container, job) for e in c["env"]
            if "valueFrom" in e]
    assert refs and all(r["name"] == secret["metadata"]["name"] and r["key"] in keys
                        for r in refs)
    for volume in pod["spec"]["volumes"]:
        if "secret" in volume:
            assert {i["key"] for i in volume["secret"]["items"]} <= keys
    tokens_file = next(e["value"] for e in container["env"]
                       if e["name"] == "RUNBOOKD_API_TOKENS_FILE")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[str(Path(tokens_file).parent)] == "identities"
    # The Service reaches the pods: its selector and port name are the pods'.
    service = kinds["Service"]["spec"]
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["ports"]} <= port_names
    assert len({d["metadata"].get("namespace") for k, d in kinds.items()
                if k != "Namespace"}) == 1


def test_prometheus_rules_use_runbookds_real_metrics():
    names = {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    rules = deploy_yaml("prometheus-rules.yml")["groups"][0]["rules"]
    used = {name for rule in rules for name in re.findall(r"runbookd_\w+", rule["expr"])}
    assert used and used <= names, used - names


def test_alertmanager_and_prometheus_accept_the_deploy_configs():
    amtool = need_binary("amtool")
    promtool = need_binary("promtool")
    checked = subprocess.run([amtool, "check-config", str(DEPLOY / "alertmanager.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout + checked.stderr


def test_the_readme_deploy_section_names_files_that_exist():
    section = readme_section("Deploy")
    named = set(re.findall(r"`(deploy/[^`\s]+)`", section))
    assert {"deploy/docker-compose.yml", "deploy/kubernetes.yaml"} <= named
    (commands,) = fenced(section, "sh")
    for name in named:
        # deploy/secrets/ is the user's, made by the section's own commands.
        made = name.startswith("deploy/secrets/") and name.removeprefix("deploy/") in commands
        assert made or (ROOT / name).exists(), name
    assert "cp env.example .env" in commands and (DEPLOY / "env.example").is_file()
