"""`runbookd serve` and `runbookd worker`: the long-running processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from typing import Annotated

import typer

from app.cli.common import configure_logging
from app.config import Settings, get_settings

log = logging.getLogger("runbookd")

app = typer.Typer()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the HTTP service (and, unless disabled, the executor worker)."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: it serves nothing.
    import uvicorn

    configure_logging()
    settings = get_settings()
    if settings.env == "dev" and settings.dev_token is None:
        # A fresh token per start, printed once, so the demo is usable without a tokens file.
        os.environ["RUNBOOKD_DEV_TOKEN"] = "dev_" + secrets.token_urlsafe(24)
        get_settings.cache_clear()
        settings = get_settings()
    url = f"http://{host}:{port}"
    typer.echo(f"runbookd listening on {url}  (env={settings.env})")
    if settings.env == "dev" and settings.dev_token is not None:
        typer.echo(f"development token (admin, and accepted on webhooks): "
                   f"{settings.dev_token.get_secret_value()}")
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, **settings.server_options())


@app.command()
def worker() -> None:
    """Run only the executor worker and the notification sender (no HTTP)."""
    configure_logging()
    asyncio.run(run_worker(get_settings()))


async def run_worker(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly (running steps get their grace)."""
    # Imported on use to keep `runbookd lint` (a pre-commit hook) fast: this is the whole app.
    from app.lifecycle import running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with running(settings):
        log.info("runbookd worker running")
        await stop.wait()
