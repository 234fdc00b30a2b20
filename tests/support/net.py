"""Free ports, in-process uvicorn servers, and a TCP proxy that can cut a connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from app.config import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    app: FastAPI
    url: str
    port: int


@contextlib.asynccontextmanager
async def serve_app(app: FastAPI, port: int | None = None) -> AsyncIterator[RunningServer]:
    """Run `app` under a real uvicorn on 127.0.0.1, in this event loop; a runbookd with the
    options `runbookd serve` gives uvicorn (connection limit, keep-alive, trusted proxies)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and one made with
    # socket.socket() has proto 0: every keep-alive response then waited for the client's
    # delayed ACK (Nagle), 40 ms a request. `runbookd serve` runs on uvloop, which sets it.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port or 0))
    port = sock.getsockname()[1]
    settings = getattr(app.state, "settings", None)
    options = settings.server_options() if isinstance(settings, Settings) else {}
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                            **options)
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when the lifespan fails; the log says why
            raise RuntimeError(f"runbookd failed to start (exit {exc.code}); see the log") from None

    task = asyncio.create_task(serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn exited before starting")
            await asyncio.sleep(0.01)
        yield RunningServer(app=app, url=f"http://127.0.0.1:{port}", port=port)
    finally:
        server.should_exit = True
        # Longer than the worker's shutdown grace (10 s) and the rest of the lifespan's stops
        # on a loaded host: a shutdown cut short used to leave background tasks in the
        # shared event loop (tests/integration/test_lifecycle_stop.py).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=45)
        sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new
    ones until `restore()`. Lets a test take a real database away and bring it back."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  reuse_address=True)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)
