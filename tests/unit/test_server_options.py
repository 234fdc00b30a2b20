"""Hole 9 and 15, the uvicorn side: the connection limit, the keep-alive and the trusted proxies
are settings, and `runbookd serve` hands them to uvicorn."""

from __future__ import annotations

from typing import Any

import pytest

from app.cli import service
from app.config import Settings


def test_the_defaults_cap_connections_and_trust_no_proxy():
    options = Settings(env="dev").server_options()
    assert options == {"limit_concurrency": 1000, "timeout_keep_alive": 5,
                       "proxy_headers": False, "forwarded_allow_ips": []}


def test_the_settings_reach_the_options():
    options = Settings(env="dev", max_connections=50, keep_alive_seconds=20,
                       trusted_proxies="10.0.0.1, 192.168.0.0/16").server_options()
    assert options == {"limit_concurrency": 50, "timeout_keep_alive": 20,
                       "proxy_headers": True,
                       "forwarded_allow_ips": ["10.0.0.1", "192.168.0.0/16"]}


def test_serve_passes_them_to_uvicorn(monkeypatch: pytest.MonkeyPatch):
    import uvicorn

    settings = Settings(env="dev", dev_token="dev-token-0123456789", max_connections=7,
                        trusted_proxies="10.1.2.3")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(service, "get_settings", lambda: settings)
    monkeypatch.setattr(service, "configure_logging", lambda *a, **k: None, raising=False)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    service.serve(host="127.0.0.1", port=8099, workers=1)
    [options] = calls
    assert options["limit_concurrency"] == 7
    assert options["timeout_keep_alive"] == 5
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["10.1.2.3"]
