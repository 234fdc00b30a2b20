"""Hole 9 and 15, the uvicorn side: the connection limit, the keep-alive and the trusted proxies
are settings, and `runbookd serve` hands them to uvicorn."""

from __future__ import annotations

import sys
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

    import app.serve

    settings = Settings(env="dev", dev_token="dev-token-0123456789", max_connections=7,
                        trusted_proxies="10.1.2.3")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("app.config.get_settings", lambda: settings)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    app.serve.main("127.0.0.1", 8099, 1)
    [options] = calls
    assert options["limit_concurrency"] == 7
    assert options["timeout_keep_alive"] == 5
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["10.1.2.3"]
    assert (options["host"], options["port"], options["workers"]) == ("127.0.0.1", 8099, 1)


def test_serve_checks_the_settings_then_becomes_the_lean_server(monkeypatch: pytest.MonkeyPatch):
    """`runbookd serve` execs `python -m app.serve HOST PORT WORKERS` (same PID, the CLI's
    modules left behind) once the settings are fit to serve."""
    settings = Settings(env="dev", dev_token="dev-token-0123456789")
    execs: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(service, "get_settings", lambda: settings)
    monkeypatch.setattr(service, "configure_logging", lambda *a, **k: None, raising=False)
    monkeypatch.setattr(service.os, "execv", lambda path, argv: execs.append((path, argv)))
    service.serve(host="0.0.0.0", port=8099, workers=2)
    [(path, argv)] = execs
    assert path == sys.executable
    assert argv == [sys.executable, "-m", "app.serve", "0.0.0.0", "8099", "2"]
