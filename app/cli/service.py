"""`runbookd serve` and `runbookd worker`: the long-running processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from app.cli.common import configure_logging
from app.config import Settings, dev_files, get_settings

log = logging.getLogger("runbookd")

app = typer.Typer()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the HTTP service (and, unless disabled, the executor worker)."""
    configure_logging()
    if os.environ.get("RUNBOOKD_ENV") == "dev":
        dev_files()  # the dev token and link secret under var/, kept across restarts
        get_settings.cache_clear()
    settings = _serviceable_settings()
    url = f"http://{host}:{port}"
    typer.echo(f"runbookd listening on {url}  (env={settings.env})")
    if settings.env == "dev" and settings.dev_token is not None:
        typer.echo(f"development token (admin, and accepted on webhooks): "
                   f"{settings.dev_token.get_secret_value()}")
    sys.stdout.flush()
    sys.stderr.flush()
    # Same PID and environment (make run's SIGTERM, the dev files' variables), without the
    # command line's modules resident for the life of the service: see app/serve.py.
    os.execv(sys.executable, [sys.executable, "-m", "app.serve", host, str(port), str(workers)])


def _serviceable_settings() -> Settings:
    """The settings, warning about what is missing; each problem one line, then exit 2."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = [line for error in exc.errors() for line in _problem_lines(error)]
    else:
        for warning in settings.start_warnings():
            log.warning("%s", warning)
        problems = settings.serviceable_problems()
    if problems:
        for problem in problems:
            typer.secho(f"runbookd: cannot start: {problem}", err=True, fg="red")
        raise typer.Exit(2)
    return settings


def _problem_lines(error: ErrorDetails) -> list[str]:
    """A settings error as lines naming its variable (a model check names its own)."""
    name = f"RUNBOOKD_{str(error['loc'][0]).upper()}: " if error["loc"] else ""
    message = error["msg"].removeprefix("Value error, ")
    return [f"{name}{line}" for line in message.splitlines()]


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
