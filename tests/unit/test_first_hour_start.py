"""A production start that cannot serve says why in one line per problem and exits 2, with no
traceback; one that can but lacks API identities or a link secret says so (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.config import MIN_SECRET_LENGTH, Settings

RUNBOOKD = Path(sys.executable).parent / "runbookd"


def _serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOKD_")}
    clean.update({"RUNBOOKD_ENV": "prod", **env})
    return subprocess.run([str(RUNBOOKD), "serve", "--port", "0"], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=60, check=False)


def test_prod_without_credentials_prints_one_line_per_problem_and_exits_2(tmp_path):
    result = _serve(tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    problems = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert problems == ["runbookd: cannot start: no webhook credentials: set "
                        "RUNBOOKD_WEBHOOK_TOKENS (or _WEBHOOK_BASIC_AUTH, _PAGERDUTY_SECRETS, "
                        "_GRAFANA_SECRET)"]
    assert "listening" not in result.stdout


def test_refused_secrets_are_one_line_each_and_say_the_minimum_length(tmp_path):
    result = _serve(tmp_path, RUNBOOKD_WEBHOOK_TOKENS="short", RUNBOOKD_LINK_SECRET="changeme")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "│" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(problems) == 2, result.stderr
    assert [p.split(": ")[2] for p in problems] == ["RUNBOOKD_LINK_SECRET",
                                                   "RUNBOOKD_WEBHOOK_TOKENS"]
    assert all(f"at least {MIN_SECRET_LENGTH} characters" in p for p in problems)
    # The refusal names the variables but never echoes their values.
    assert "changeme" not in result.stderr and "short" not in result.stderr


def test_another_bad_setting_is_one_line_too(tmp_path):
    result = _serve(tmp_path, RUNBOOKD_WEBHOOK_TOKENS="a-long-random-token-1",
                    RUNBOOKD_WORKER_CONCURRENCY="many")
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(problems) == 1 and problems[0].startswith(
        "runbookd: cannot start: RUNBOOKD_WORKER_CONCURRENCY: "), result.stderr
    assert "Traceback" not in result.stderr


def test_start_warns_about_missing_identities_and_link_secret(tmp_path):
    result = _serve(tmp_path)
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 3, result.stderr
    assert "RUNBOOKD_API_TOKENS_FILE" in warnings[0] and "no API identities" in warnings[0]
    assert "RUNBOOKD_LINK_SECRET is not set" in warnings[1]
    assert "Slack is not configured; notifications to Slack go to the log" in warnings[2]


def test_start_warnings_name_each_gap(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNBOOKD_WEBHOOK_TOKENS", "a-long-random-token-1")
    slack = "Slack is not configured; notifications to Slack go to the log"
    bare = Settings(env="prod")
    assert [w.split(":")[0].split(" (")[0] for w in bare.start_warnings()] == [
        "no API identities", "RUNBOOKD_LINK_SECRET is not set", slack]
    missing = Settings(env="prod", api_tokens_file=tmp_path / "nope.yaml",
                       link_secret="a-long-random-link-secret",
                       slack_webhook_url="https://hooks.slack.com/services/T/B/x")
    assert [w.split(":")[0] for w in missing.start_warnings()] == ["no API identities"]
    assert str(tmp_path / "nope.yaml") in missing.start_warnings()[0]
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("[]\n")
    complete = Settings(env="prod", api_tokens_file=tokens,
                        link_secret="a-long-random-link-secret",
                        secrets={"slack_ml-oncall": "https://hooks.slack.com/services/T/B/y"})
    assert complete.start_warnings() == []
    assert [w.split(" (")[0] for w in Settings(env="dev").start_warnings()] == [slack]
