"""command.run: argv only, the allow-list, a restricted environment, truncation, timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from app.actions.base import ActionContext, ActionFailed
from app.actions.command import CommandRun
from tests.support.action_ctx import make_ctx, run_action

ACTION = CommandRun()
PYTHON = sys.executable
ECHO = shutil.which("echo") or "/bin/echo"


def ctx(**kwargs: Any) -> ActionContext:
    return make_ctx(command_allowlist=["echo", "sleep", "printenv", PYTHON], **kwargs)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_runs_and_captures_stdout() -> None:
    result = await run_action(ACTION, ctx(), argv=["echo", "hello", "world"])
    assert result.output == {"exit_code": 0, "stdout": "hello world\n", "stderr": ""}
    assert result.summary == f"{ECHO} hello world exited with code 0"


@pytest.mark.parametrize("hostile", ["$(rm -rf /)", "; ls", "a b  c", "`id`", "x && echo y",
                                     "'quoted'", "*", "\n"])
async def test_a_label_value_is_exactly_one_argument(hostile: str) -> None:
    script = "import json, sys; print(json.dumps(sys.argv[1:]))"
    result = await run_action(ACTION, ctx(), argv=[PYTHON, "-c", script, hostile, "next"])
    assert json.loads(result.output["stdout"]) == [hostile, "next"]


async def test_environment_is_restricted() -> None:
    os.environ["RUNBOOKD_TEST_LEAK"] = "should-not-pass"
    try:
        result = await run_action(ACTION, ctx(), argv=["printenv"], env={"MODEL": "fraud v3"})
    finally:
        del os.environ["RUNBOOKD_TEST_LEAK"]
    names = {line.split("=", 1)[0] for line in result.output["stdout"].splitlines()}
    assert names == {"PATH", "LANG", "MODEL"}
    assert "MODEL=fraud v3" in result.output["stdout"]


async def test_secret_env_is_passed_but_never_shown() -> None:
    context = ctx(secrets={"token": SecretStr("s3cr3t-value-123")})
    result = await run_action(ACTION, context, argv=["printenv", "TOKEN"],
                              secret_env={"TOKEN": "token"})
    assert result.output["stdout"] == "***\n"
    assert "s3cr3t" not in result.summary


def test_dangerous_environment_names_are_refused() -> None:
    for name in ("LD_PRELOAD", "PATH", "PYTHONPATH", "BAD-NAME"):
        with pytest.raises(ValidationError):
            CommandRun.Params.model_validate({"argv": ["echo"], "env": {name: "x"}})
    with pytest.raises(ValidationError):
        CommandRun.Params.model_validate({"argv": "echo hello"})
    with pytest.raises(ValidationError):
        CommandRun.Params.model_validate({"argv": []})


async def test_executable_must_be_allow_listed() -> None:
    with pytest.raises(ActionFailed, match="'ls' is not on the command allow-list"):
        await run_action(ACTION, ctx(), argv=["ls"])


async def test_a_bare_entry_does_not_allow_another_path(tmp_path: Path) -> None:
    fake = tmp_path / "echo"
    fake.write_text("#!/bin/sh\necho pwned\n")
    fake.chmod(0o755)
    with pytest.raises(ActionFailed, match=f"{fake} is not on the command allow-list"):
        await run_action(ACTION, ctx(), argv=[str(fake), "x"])
    with pytest.raises(ActionFailed, match="must be a bare name or an absolute path"):
        await run_action(ACTION, ctx(), argv=["./echo"])


async def test_an_absolute_entry_allows_that_path() -> None:
    context = make_ctx(command_allowlist=[ECHO])
    result = await run_action(ACTION, context, argv=[ECHO, "ok"])
    assert result.output["stdout"] == "ok\n"
    assert (await run_action(ACTION, context, argv=["echo", "ok"])).output["exit_code"] == 0


async def test_non_zero_exit_fails_with_code_and_stderr_tail() -> None:
    script = "import sys; sys.stderr.write('x' * 20000 + 'the real reason'); sys.exit(3)"
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx(), argv=[PYTHON, "-c", script])
    assert "exited with code 3" in failed.value.message
    assert failed.value.message.endswith("the real reason")
    stderr = failed.value.output["stderr"]
    assert stderr.startswith("[")
    assert len(stderr) < 8 * 1024 + 40


async def test_missing_cwd_is_named(tmp_path: Path) -> None:
    with pytest.raises(ActionFailed, match=f"working directory {tmp_path / 'nope'} does not"):
        await run_action(ACTION, ctx(), argv=["echo"], cwd=str(tmp_path / "nope"))


async def test_cwd_is_used(tmp_path: Path) -> None:
    script = "import os; print(os.getcwd())"
    result = await run_action(ACTION, ctx(), argv=[PYTHON, "-c", script], cwd=str(tmp_path))
    assert result.output["stdout"].strip() == str(tmp_path)


async def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = f"open({str(marker)!r}, 'w').close()"
    result = await run_action(ACTION, ctx(dry_run=True), argv=[PYTHON, "-c", script])
    assert result.summary.startswith(f"would run {PYTHON} -c ")
    assert not marker.exists()


async def test_own_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = ("import os, subprocess, time; child = subprocess.Popen(['sleep', '60']); "
              f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}'); "
              "time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(ActionFailed, match=r"timed out after 1s and was killed"):
        await run_action(ACTION, ctx(), argv=[PYTHON, "-c", script], timeout="1s")
    assert time.monotonic() - started < 5
    parent, child = map(int, pids.read_text().split())
    assert not alive(parent)
    await _gone(child)


async def test_cancellation_kills_the_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = ("import os, subprocess, time; child = subprocess.Popen(['sleep', '60']); "
              f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}'); "
              "time.sleep(60)")
    task = asyncio.create_task(run_action(ACTION, ctx(), argv=[PYTHON, "-c", script]))
    for _ in range(100):
        if pids.exists() and pids.read_text():
            break
        await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, 0.1)
    parent, child = map(int, pids.read_text().split())
    assert not alive(parent)
    await _gone(child)


async def _gone(pid: int) -> None:
    # The orphaned grandchild is reaped by init, not by us: give it a moment.
    for _ in range(50):
        if not alive(pid):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} outlived the step")


# -- the environment a command may inherit (RUNBOOKD_COMMAND_ENV) -------------------------------

FAKE_KUBECTL = """#!/bin/sh
# Behaves like kubectl without a kubeconfig: no KUBECONFIG (and no ~/.kube/config) means it
# talks to localhost:8080 and fails.
if [ -z "$KUBECONFIG" ] || [ ! -f "$KUBECONFIG" ]; then
  echo "The connection to the server localhost:8080 was refused -" \
       "did you specify the right host or port?" >&2
  exit 1
fi
echo "context $(sed -n 's/^current-context: //p' "$KUBECONFIG") home=$HOME token=$KUBE_TOKEN"
"""


@pytest.fixture
def kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake kubectl that needs KUBECONFIG, and runbookd's own environment carrying one."""
    fake = tmp_path / "bin" / "kubectl"
    fake.parent.mkdir()
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(0o755)
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\ncurrent-context: prod-eu\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.setenv("HOME", str(tmp_path))
    return fake


async def test_kubectl_without_the_allow_listed_environment_finds_no_kubeconfig(
        kubectl: Path) -> None:
    context = make_ctx(command_allowlist=[str(kubectl)])
    with pytest.raises(ActionFailed, match="exited with code 1: The connection to the server"):
        await run_action(ACTION, context, argv=[str(kubectl), "get", "pods"])


async def test_allow_listed_variables_pass_through_to_the_command(kubectl: Path,
                                                                  tmp_path: Path) -> None:
    context = make_ctx(command_allowlist=[str(kubectl)], command_env=["KUBECONFIG", "HOME"])
    result = await run_action(ACTION, context, argv=[str(kubectl), "get", "pods"])
    assert result.output["stdout"] == f"context prod-eu home={tmp_path} token=\n"


async def test_only_the_listed_variables_pass_and_unset_ones_are_skipped(
        kubectl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOKD_TEST_LEAK", "should-not-pass")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    context = make_ctx(command_allowlist=["printenv"],
                       command_env=["KUBECONFIG", "AWS_PROFILE"])
    result = await run_action(ACTION, context, argv=["printenv"])
    names = {line.split("=", 1)[0] for line in result.output["stdout"].splitlines()}
    assert names == {"PATH", "LANG", "KUBECONFIG"}


async def test_step_env_and_secret_env_reach_the_command_and_the_secret_stays_hidden(
        kubectl: Path, tmp_path: Path) -> None:
    other = tmp_path / "staging.kubeconfig"
    other.write_text("current-context: staging\n")
    context = make_ctx(command_allowlist=[str(kubectl)], command_env=["KUBECONFIG", "HOME"],
                       secrets={"kube_token": SecretStr("tok-0123456789abcdef")})
    # A step may point at another cluster's kubeconfig, and take a token from a secret.
    result = await run_action(ACTION, context, argv=[str(kubectl), "get", "pods"],
                              env={"KUBECONFIG": str(other)},
                              secret_env={"KUBE_TOKEN": "kube_token"})
    assert result.output["stdout"] == f"context staging home={tmp_path} token=***\n"
    assert "tok-0123456789abcdef" not in json.dumps(result.output) + result.summary


def test_command_env_is_read_as_a_comma_separated_list(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import Settings

    monkeypatch.setenv("RUNBOOKD_COMMAND_ENV", " KUBECONFIG, HOME ,")
    assert Settings(env="dev").command_env == ["KUBECONFIG", "HOME"]


@pytest.mark.parametrize("name", ["PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH",
                                  "BASH_ENV", "RUNBOOKD_SECRETS", "BAD-NAME", "1X", "A B"])
def test_command_env_refuses_names_that_change_the_code_or_leak_runbookd(name: str) -> None:
    from app.config import Settings

    with pytest.raises(ValidationError, match="RUNBOOKD_COMMAND_ENV"):
        Settings(env="dev", command_env=["KUBECONFIG", name])


@pytest.mark.parametrize("name", ["LD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES", "PYTHONHOME",
                                  "NODE_OPTIONS", "RUNBOOKD_SECRETS"])
def test_a_step_may_not_set_variables_that_change_the_code(name: str) -> None:
    for field in ("env", "secret_env"):
        with pytest.raises(ValidationError, match="may not be set by a runbook"):
            CommandRun.Params.model_validate({"argv": ["echo"], field: {name: "x"}})


def test_a_variable_in_both_env_and_secret_env_is_refused() -> None:
    with pytest.raises(ValidationError, match="TOKEN is in both env and secret_env"):
        CommandRun.Params.model_validate({"argv": ["echo"], "env": {"TOKEN": "x"},
                                          "secret_env": {"TOKEN": "t"}})
