"""runbookd as a real child process, for crash (kill -9) and multi-replica tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.net import free_port

RUNBOOKD = Path(sys.executable).parent / "runbookd"


class RunbookdProcess:
    def __init__(self, env: dict[str, str], *, log_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        # Popen only forks and returns; waiting happens below, without blocking the loop.
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            [str(RUNBOOKD), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # Its own directory: a dev start keeps var/dev-token there, not in the checkout.
            cwd=self.log_path.parent,
        )
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"runbookd exited with {self.proc.returncode}; "
                                       f"log:\n{self.log_path.read_text()[-3000:]}")
                try:
                    if (await http.get(f"{self.url}/-/healthy")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("runbookd did not start")
                await asyncio.sleep(0.1)

    def kill9(self) -> None:
        """Die at once, the way a crash or an OOM kill does: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()


def runbookd_env(*, db_url: str, mappings: Path, remediations: Path, tokens_file: Path,
                 webhook_token: str, **extra: str) -> dict[str, str]:
    env = {
        "RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": db_url,
        "RUNBOOKD_MAPPINGS": str(mappings), "RUNBOOKD_REMEDIATIONS_DIR": str(remediations),
        "RUNBOOKD_API_TOKENS_FILE": str(tokens_file),
        "RUNBOOKD_WEBHOOK_TOKENS": webhook_token, "RUNBOOKD_POLL_SECONDS": "0.2",
        "RUNBOOKD_DRILL_CHECK_SECONDS": "0",
        "RUNBOOKD_LOG_LEVEL": "WARNING",
    }
    env.update(extra)
    return env
