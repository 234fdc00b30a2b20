"""`command.run`: run one allow-listed executable with an argv list, never through a shell.

Each argv element reaches the program as exactly one argument, so a label value such as
`$(rm -rf /)` or `; ls` is only ever text. The executable must be on RUNBOOKD_COMMAND_ALLOWLIST:
an entry with a slash allows that absolute path; a bare name allows that name as found on PATH
(a path like `/tmp/x/python` never matches the bare entry `python`). The child gets its own
process group, and on a timeout or a cancellation the whole group is killed.

The child's environment is built, never inherited: PATH and LANG; then the variables of
runbookd's own environment that RUNBOOKD_COMMAND_ENV lists (`KUBECONFIG,HOME`, so that kubectl
finds its kubeconfig; unset ones are skipped); then the step's `env` (plain values, which the
approval covers); then `secret_env` (variable -> name of a secret in RUNBOOKD_SECRETS; the value
is redacted from the captured output and never recorded). Names that change which code the
child loads (PATH, LD_*, PYTHONPATH...) or that hold runbookd's settings are refused.

Its plan is the argv as it will run ("argv: kubectl argo rollouts abort fraud-v3 -n
ml-serving"), with the executable resolved against the allow-list; `resolved` holds both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from app.actions._support import redact, secret_value
from app.actions.base import (
    ActionContext,
    ActionFailed,
    ActionParams,
    ActionPlan,
    ActionResult,
)
from app.config import env_name_problem
from app.durations import Duration

OUTPUT_LIMIT = 8 * 1024
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class CommandParams(ActionParams):
    argv: list[str] = Field(min_length=1, max_length=256)
    timeout: Duration | None = None
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # Variable name -> secret name; the value is redacted from the captured output.
    secret_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("argv")
    @classmethod
    def _argv(cls, argv: list[str]) -> list[str]:
        if not argv[0]:
            raise ValueError("argv[0] (the executable) is empty")
        if any("\x00" in arg for arg in argv):
            raise ValueError("an argv element contains a NUL byte")
        return argv

    @field_validator("env", "secret_env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if problem := env_name_problem(name):
                raise ValueError(f"{problem}: it may not be set by a runbook")
        return env

    @model_validator(mode="after")
    def _one_source_per_variable(self) -> CommandParams:
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"{', '.join(both)} is in both env and secret_env: keep one")
        return self


def resolve_executable(program: str, allowlist: list[str]) -> str:
    """The absolute path to run, or ActionFailed when it is not allowed or not found."""
    entries = [e.strip() for e in allowlist if e.strip()]
    if "/" in program:
        path = Path(program)
        if not path.is_absolute():
            raise ActionFailed(f"executable {program!r} must be a bare name or an absolute path")
        resolved = shutil.which(str(path))
        allowed = {str(Path(e)) for e in entries if "/" in e}
        if str(path) not in allowed:
            raise ActionFailed(f"executable {program} is not on the command allow-list "
                               "(RUNBOOKD_COMMAND_ALLOWLIST)")
        if resolved is None:
            raise ActionFailed(f"executable {program} does not exist or is not executable")
        return resolved
    resolved = shutil.which(program, path=os.environ.get("PATH", DEFAULT_PATH))
    if program not in entries and (resolved is None or resolved not in entries):
        raise ActionFailed(f"executable {program!r} is not on the command allow-list "
                           "(RUNBOOKD_COMMAND_ALLOWLIST)")
    if resolved is None:
        raise ActionFailed(f"executable {program!r} is allowed but not found on PATH")
    return resolved


def child_environment(passed: list[str], env: dict[str, str], secrets: dict[str, str],
                      ) -> dict[str, str]:
    """The child's whole environment: PATH and LANG, the allow-listed variables of runbookd's
    own environment that are set, the step's `env`, then its secrets (later ones win)."""
    inherited = {name: os.environ[name] for name in passed if name in os.environ}
    return {"PATH": os.environ.get("PATH", DEFAULT_PATH),
            "LANG": os.environ.get("LANG", "C.UTF-8"), **inherited, **env, **secrets}


class _Tail:
    """Keeps the last OUTPUT_LIMIT bytes of a stream, and whether anything was dropped."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.dropped = 0

    async def drain(self, stream: asyncio.StreamReader) -> None:
        """Read `stream` to its end, keeping only the tail."""
        while chunk := await stream.read(65536):
            self.data += chunk
            if len(self.data) > OUTPUT_LIMIT:
                self.dropped += len(self.data) - OUTPUT_LIMIT
                del self.data[:-OUTPUT_LIMIT]

    def text(self, secrets: list[str]) -> str:
        """The kept tail as text, secrets redacted, marked when bytes were cut."""
        text = redact(self.data.decode("utf-8", "replace"), secrets)
        return f"[{self.dropped} bytes cut]...{text}" if self.dropped else text


def _kill_group(process: asyncio.subprocess.Process) -> None:
    # The child leads its own group: killing the group also takes its children.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class CommandRun:
    name: ClassVar[str] = "command.run"
    Params = CommandParams
    idempotent: ClassVar[bool] = False
    description: ClassVar[str] = (
        "Runs an allow-listed executable with an argv list (no shell), a restricted "
        "environment and a timeout; captures the tail of stdout and stderr."
    )

    async def plan(self, ctx: ActionContext, params: CommandParams) -> ActionPlan:
        """The argv as it will run, once the executable, directory and secrets resolve."""
        executable, cwd, _ = self._prepare(ctx, params)
        summary = f"argv: {shlex.join(params.argv)}"
        if executable != params.argv[0]:
            summary += f" ({params.argv[0]} is {executable})"
        if cwd is not None:
            summary += f" in {cwd}"
        return ActionPlan(summary=summary, resolved={"argv": list(params.argv),
                                                     "executable": executable})

    @staticmethod
    def _prepare(ctx: ActionContext, params: CommandParams,
                 ) -> tuple[str, Path | None, dict[str, str]]:
        """The executable's path, the working directory and the secret variables, or
        ActionFailed: what `plan` and `run` both resolve, in the same way."""
        executable = resolve_executable(params.argv[0], ctx.settings.command_allowlist)
        cwd = Path(params.cwd) if params.cwd else None
        if cwd is not None and not cwd.is_dir():
            raise ActionFailed(f"working directory {cwd} does not exist")
        secrets = {name: secret_value(ctx, secret) for name, secret in params.secret_env.items()}
        return executable, cwd, secrets

    async def run(self, ctx: ActionContext, params: CommandParams) -> ActionResult:
        executable, cwd, secrets = self._prepare(ctx, params)
        shown = shlex.join([executable, *params.argv[1:]])
        if ctx.dry_run:
            where = f" in {cwd}" if cwd else ""
            return ActionResult(f"would run {shown}{where}",
                                {"argv": [executable, *params.argv[1:]]})
        env = child_environment(ctx.settings.command_env, params.env, secrets)
        try:
            process = await asyncio.create_subprocess_exec(
                executable, *params.argv[1:], stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                cwd=cwd, env=env, start_new_session=True)
        except OSError as exc:
            raise ActionFailed(f"could not start {executable}: {exc.strerror}") from None
        stdout, stderr = _Tail(), _Tail()
        assert process.stdout is not None and process.stderr is not None
        seconds = params.timeout.total_seconds() if params.timeout else None
        finished = False
        try:
            async with asyncio.timeout(seconds):
                await asyncio.gather(stdout.drain(process.stdout), stderr.drain(process.stderr))
                code = await process.wait()
            finished = True
        except TimeoutError:
            raise ActionFailed(f"{shown} timed out after {seconds:g}s and was killed",
                               output=self._output(None, stdout, stderr, list(secrets.values())),
                               ) from None
        finally:
            if not finished:
                # Timed out or cancelled: kill the group even if the leader already exited, since
                # a child it left behind may still hold the pipes open.
                _kill_group(process)
                if process.returncode is None:
                    # Reap it, even while this task is being cancelled, so no zombie is left.
                    await asyncio.shield(process.wait())
        output = self._output(code, stdout, stderr, list(secrets.values()))
        if code != 0:
            tail = output["stderr"][-500:].strip() or "(no stderr)"
            raise ActionFailed(f"{shown} exited with code {code}: {tail}", output=output)
        return ActionResult(f"{shown} exited with code 0", output)

    @staticmethod
    def _output(code: int | None, stdout: _Tail, stderr: _Tail, secrets: list[str],
                ) -> dict[str, Any]:
        return {"exit_code": code, "stdout": stdout.text(secrets), "stderr": stderr.text(secrets)}
