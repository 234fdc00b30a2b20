"""What `make run` promises: the shipped quick-rollback runbook really rolls the demo model's
champion back, on the demo registry, after one approval."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.actions.embedded_registry import ModelRegistry, create_demo_registry
from app.main import create_app
from tests.support.engine_helpers import Rig
from tests.support.net import serve_app

ROOT = Path(__file__).resolve().parents[2]


async def test_quick_rollback_moves_the_demo_champion_back(make_settings, tokens, db_url,
                                                           tmp_path):
    registry = tmp_path / "registry"
    create_demo_registry(registry)
    settings = make_settings(mappings=ROOT / "alert_mappings.yaml",
                             remediations_dir=ROOT / "remediations", registry_dir=registry)
    async with serve_app(create_app(settings)) as server, httpx.AsyncClient(
            base_url=server.url, timeout=30) as http:
        r = Rig(server=server, http=http, tokens=tokens, db_url=db_url)
        await r.fire("ModelRollbackRequested", model="demo-model")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        assert ModelRegistry(registry).get_alias("demo-model", "champion").version == "2"
        assert (await r.approve(ex.id, "rollback", "alice")).status_code == 200
        done = await r.wait_status(ex.id, "succeeded")
        steps = {s.step_id: s for s in await r.steps(ex.id)}
    assert done.target == "model:demo-model:champion"
    assert steps["read-alias"].output["version"] == "2"
    assert ModelRegistry(registry).get_alias("demo-model", "champion").version == "1"
