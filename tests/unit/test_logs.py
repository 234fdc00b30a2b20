"""RUNBOOKD_LOG_FORMAT=json: one JSON object per line, with the execution, step, alert and
request where known (issue 15, "Logs")."""

from __future__ import annotations

import json
import logging
import subprocess

import httpx
import pytest

from app import logs
from tests.support.procs import RUNBOOKD


def formatted(record_message: str, **context: object) -> dict:
    record = logging.LogRecord("runbookd.test", logging.WARNING, __file__, 1,
                               record_message, (), None)
    with logs.context(**context):
        return json.loads(logs.JsonFormatter().format(record))


def test_a_json_line_carries_its_context_where_known() -> None:
    line = formatted("step failed", execution_id=42, step_id="rollback.rollback",
                     request_id="abc")
    assert line["message"] == "step failed"
    assert (line["level"], line["logger"]) == ("warning", "runbookd.test")
    assert (line["execution_id"], line["step_id"], line["request_id"]) == (
        42, "rollback.rollback", "abc")
    assert "alert_fingerprint" not in line
    assert line["time"].endswith("+00:00")
    assert "execution_id" not in formatted("outside any execution")


def test_an_error_carries_its_traceback_in_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (),
                                   exc_info=__import__("sys").exc_info())
    text = logs.JsonFormatter().format(record)
    assert "\n" not in text
    assert "RuntimeError: boom" in json.loads(text)["error"]


def test_bad_settings_say_what_to_use() -> None:
    with pytest.raises(ValueError, match="RUNBOOKD_LOG_FORMAT='xml': use one of text, json"):
        logs.configure(fmt="xml")
    answer = subprocess.run([str(RUNBOOKD), "worker"], capture_output=True, text=True,
                            env={"RUNBOOKD_LOG_FORMAT": "xml", "PATH": "/usr/bin:/bin"},
                            timeout=60)
    assert answer.returncode == 2
    assert "RUNBOOKD_LOG_FORMAT='xml': use one of text, json" in answer.stderr


async def test_each_request_gets_an_id_for_its_lines_and_its_answer() -> None:
    seen: list[str | None] = []

    async def app(scope, receive, send):
        seen.append(logs.request_id.get())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    transport = httpx.ASGITransport(app=logs.RequestIds(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        given = await client.get("/", headers={"X-Request-ID": "trace-7"})
        hostile = await client.get("/", headers={"X-Request-ID": '"{}<script>' * 30})
        fresh = await client.get("/")
    assert given.headers["x-request-id"] == "trace-7" == seen[0]
    assert hostile.headers["x-request-id"] == seen[1] != '"{}<script>' * 30
    assert len(fresh.headers["x-request-id"]) == 16 and seen[2] == fresh.headers["x-request-id"]
    assert logs.request_id.get() is None
