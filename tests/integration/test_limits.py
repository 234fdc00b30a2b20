"""Limits before a body is read, against a real runbookd on 127.0.0.1 (in this process, so
its memory is this process's): an unauthenticated or oversized body is refused before it is
received in full, without the server's memory growing; a trickling body gets 408 within the
deadline; and the connection limit reaches uvicorn.

Hole 2: a 200 MB JSON body to /api/v1/simulate was read and parsed before the 401 (memory went
from 287 MB to 729 MB). Hole 9: 3,000 connections trickling a body stayed open for over 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

from app.main import create_app
from tests.support.auth import auth
from tests.support.net import serve_app
from tests.support.web import browser, sign_in

MB = 1024 * 1024
PIECE = b"x" * 65536


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client had written when the answer came
    peak_growth: int  # the most this process's resident memory grew meanwhile, in bytes

    def json(self) -> dict:
        return json.loads(self.body)


def rss() -> int:
    """This process's resident memory, in bytes (the server runs in this process)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.strip().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    length = int(headers.get("content-length", "0"))
    return int(status_line.split()[1]), headers, await reader.readexactly(length)


async def post_streaming(port: int, path: str, headers: dict[str, str], *, total: int,
                         declared: int | None = None, timeout: float = 30) -> Answer:
    """POST `total` bytes of body in 64 KiB pieces, stopping as soon as the server answers.

    With `declared` the body is announced by Content-Length, else it is sent chunked. The
    memory of this process is sampled throughout.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = (f"Content-Length: {declared}" if declared is not None
               else "Transfer-Encoding: chunked")
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", framing,
            *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    frame = PIECE if declared is not None else b"10000\r\n" + PIECE + b"\r\n"
    before = rss()
    peak = before
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss())
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    answer = asyncio.create_task(_read_answer(reader))
    sent = 0
    try:
        with contextlib.suppress(ConnectionError):
            while sent < total and not answer.done():
                writer.write(frame)
                sent += len(PIECE)
                drained = asyncio.ensure_future(writer.drain())
                await asyncio.wait({answer, drained}, timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
                if not drained.done():
                    drained.cancel()
                elif drained.exception() is not None:
                    break
            if not answer.done() and declared is None:
                writer.write(b"0\r\n\r\n")  # the whole body is sent: end it
        status, answer_headers, body = await asyncio.wait_for(answer, timeout)
    finally:
        stop.set()
        await sampler
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return Answer(status, answer_headers, body, sent, peak - before)


async def test_an_unauthenticated_body_is_refused_before_it_is_read(make_rig):
    async with make_rig() as r:
        answer = await post_streaming(r.server.port, "/api/v1/simulate",
                                      {"Content-Type": "application/json"}, total=64 * MB)
    assert answer.status == 401, answer.body
    assert answer.sent < 64 * MB, "the 401 came only after the whole body"
    assert answer.peak_growth < 8 * MB, f"memory grew by {answer.peak_growth / MB:.0f} MB"
    assert answer.json() == {"error": {"code": "unauthenticated", "message": (
        "an API token is required: Authorization: Bearer <token>")}}
    assert answer.headers["www-authenticate"] == 'Bearer realm="runbookd"'
    assert answer.headers["connection"] == "close"


async def test_a_wrong_token_is_refused_before_the_body(make_rig):
    async with make_rig() as r:
        answer = await post_streaming(
            r.server.port, "/api/v1/simulate",
            {**auth("not-a-token-0123456789"), "Content-Type": "application/json"},
            total=64 * MB)
    assert answer.status == 401 and answer.sent < 64 * MB
    assert answer.peak_growth < 8 * MB


async def test_a_declared_length_over_the_limit_is_413_at_once(make_rig, tokens):
    async with make_rig() as r:
        answer = await post_streaming(
            r.server.port, "/api/v1/simulate",
            {**auth(tokens["victor"]), "Content-Type": "application/json"},
            total=64 * MB, declared=200 * MB)
    assert answer.status == 413, answer.body
    assert answer.sent < 64 * MB
    assert answer.peak_growth < 8 * MB
    error = answer.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "RUNBOOKD_API_MAX_BODY_BYTES" in error["message"]


async def test_a_streamed_body_is_cut_at_the_limit(make_rig, tokens):
    async with make_rig(api_max_body_bytes=256 * 1024) as r:
        answer = await post_streaming(
            r.server.port, "/api/v1/simulate",
            {**auth(tokens["victor"]), "Content-Type": "application/json"}, total=64 * MB)
    assert answer.status == 413, answer.body
    assert answer.sent < 64 * MB
    assert answer.peak_growth < 8 * MB


async def test_a_form_post_without_a_session_is_refused_before_its_body(make_rig):
    async with make_rig() as r:
        answer = await post_streaming(
            r.server.port, "/guards/kill-switch",
            {"Content-Type": "application/x-www-form-urlencoded"}, total=64 * MB)
    assert answer.status == 401
    assert answer.sent < 64 * MB
    assert answer.peak_growth < 8 * MB
    assert b"sign in" in answer.body.lower()  # the page's error, not JSON


async def test_bodies_within_the_limits_still_work(make_rig, tokens):
    """The API with a token, a form with a session, and the sign-in form itself."""
    async with make_rig() as r:
        simulated = await r.post("/api/v1/simulate", "victor",
                                 {"labels": {"alertname": "test-noop"}})
        assert simulated.status_code == 200, simulated.text
        async with browser(r.server.url) as web:
            await sign_in(web, tokens["rita"])  # the sign-in form carries its credential
            page = await web.get("/guards")
            csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
            changed = await web.post("/guards/kill-switch",
                                     data={"engaged": "on", "csrf_token": csrf})
            assert changed.status_code == 303, changed.text


async def test_a_trickling_body_gets_408_within_the_deadline(make_rig, tokens):
    async with make_rig(body_read_timeout_seconds=1.0) as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.server.port)
        writer.write(("POST /api/v1/simulate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {tokens['victor']}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode())
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = asyncio.create_task(_read_answer(reader))
        with contextlib.suppress(ConnectionError):
            while not answer.done() and loop.time() - started < 10:
                writer.write(b" ")  # one byte every 100 ms: the body would take 100 s
                await writer.drain()
                await asyncio.wait({answer}, timeout=0.1)
        status, headers, body = await asyncio.wait_for(answer, 5)
        took = loop.time() - started
        closed = await asyncio.wait_for(reader.read(), 5)  # EOF: the server hung up
        writer.close()
    assert status == 408, body
    assert took < 2.5, f"the 408 took {took:.1f}s"
    assert headers["connection"] == "close" and closed == b""
    assert "RUNBOOKD_BODY_READ_TIMEOUT_SECONDS" in json.loads(body)["error"]["message"]


async def test_connections_beyond_the_limit_get_503(make_settings, tokens):
    settings = make_settings(max_connections=3)
    async with serve_app(create_app(settings)) as server:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, _ = await asyncio.wait_for(_read_answer(reader), 5)
        for _, idle_writer in [*idle, (reader, writer)]:
            idle_writer.close()
    assert status == 503
