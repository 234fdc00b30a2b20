"""Debian's Alertmanager as a real peer: a webhook receiver pointing at runbookd with bearer
auth, short group timers, alerts posted to its v2 API and resolved by an `endsAt` in the past.

It runs on 127.0.0.1 and a free port with `--cluster.listen-address=` (no gossip port on
0.0.0.0), in a process group of its own that is stopped as a whole (see peers.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.net import free_port
from tests.support.peers import Peer, run_process_peer


def rfc3339(moment: dt.datetime) -> str:
    """A UTC timestamp as Alertmanager's API writes it."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def alertmanager_config(*, webhook_url: str, token_file: Path, group_by: list[str],
                        group_wait: str, group_interval: str, repeat_interval: str) -> str:
    """One route, one webhook receiver with `authorization` (Bearer) credentials, resolves on."""
    config = {
        "route": {
            "receiver": "runbookd", "group_by": group_by, "group_wait": group_wait,
            "group_interval": group_interval, "repeat_interval": repeat_interval,
        },
        "receivers": [{
            "name": "runbookd",
            "webhook_configs": [{
                "url": webhook_url, "send_resolved": True, "max_alerts": 0,
                "http_config": {"authorization": {"type": "Bearer",
                                                  "credentials_file": str(token_file)}},
            }],
        }],
    }
    return json.dumps(config, indent=2)  # JSON is YAML


@dataclass(frozen=True)
class Alertmanager:
    peer: Peer
    workdir: Path

    @property
    def url(self) -> str:
        return self.peer.url

    async def post(self, alerts: list[dict[str, Any]]) -> None:
        """POST /api/v2/alerts, as Prometheus does."""
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(f"{self.url}/api/v2/alerts", json=alerts)
        assert answer.status_code == 200, answer.text

    async def fire(self, labels: dict[str, str], *, starts_at: dt.datetime,
                   annotations: dict[str, str] | None = None) -> None:
        """Post a firing alert (no end, as Prometheus sends an active alert)."""
        await self.post([{
            "labels": labels, "annotations": annotations or {"summary": "test alert"},
            "startsAt": rfc3339(starts_at), "generatorURL": "http://prometheus.test/graph",
        }])

    async def resolve(self, labels: dict[str, str], *, starts_at: dt.datetime,
                      annotations: dict[str, str] | None = None) -> None:
        """Post the same alert again with an `endsAt` in the past: it is resolved."""
        await self.post([{
            "labels": labels, "annotations": annotations or {"summary": "test alert"},
            "startsAt": rfc3339(starts_at),
            "endsAt": rfc3339(now_utc() - dt.timedelta(seconds=1)),
            "generatorURL": "http://prometheus.test/graph",
        }])

    async def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds now (GET /api/v2/alerts)."""
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"{self.url}/api/v2/alerts")
        answer.raise_for_status()
        return answer.json()

    def log(self) -> str:
        return (self.workdir / "peer.log").read_text(errors="replace")


def _write_config(workdir: Path, token: str, config: str) -> Path:
    # The token goes in a file of its own (credentials_file), as in production.
    workdir.mkdir(parents=True, exist_ok=True)
    token_file = workdir / "runbookd-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    path = workdir / "alertmanager.yml"
    path.write_text(config)
    return path


@contextlib.asynccontextmanager
async def run_alertmanager(
    binary: str, workdir: Path, *, webhook_url: str, token: str,
    group_by: list[str] | None = None, group_wait: str = "1s", group_interval: str = "5s",
    repeat_interval: str = "4h",
) -> AsyncIterator[Alertmanager]:
    """Start Alertmanager forwarding every alert to `webhook_url` with `token` as Bearer."""
    config = _write_config(workdir, token, alertmanager_config(
        webhook_url=webhook_url, token_file=workdir / "runbookd-token",
        group_by=group_by or ["alertname"], group_wait=group_wait,
        group_interval=group_interval, repeat_interval=repeat_interval))
    port = free_port()
    argv = [binary, f"--config.file={config}", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
            "--log.level=debug"]
    async with run_process_peer(argv, ready_url=f"http://127.0.0.1:{port}/-/ready", port=port,
                                workdir=workdir, timeout=30) as peer:
        yield Alertmanager(peer, workdir)
