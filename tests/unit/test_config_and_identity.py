"""Settings refuse placeholder secrets outside dev; tokens are stored only as digests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from app.config import Settings
from app.identity import IdentityStore, create_token, hash_token

RUNBOOKD = Path(sys.executable).parent / "runbookd"


@pytest.mark.parametrize("overrides", [
    {"webhook_tokens": "changeme"},
    {"webhook_tokens": "real-token-abcdef123", "slack_signing_secret": "xxx"},
    {"webhook_basic_auth": "alertmanager:password"},
    {"pagerduty_secrets": "good-secret-1234,secret"},
    {"grafana_secret": "short"},
    {"webhook_tokens": "real-token-abcdef123", "link_secret": "changeme"},
])
def test_placeholder_or_empty_secrets_are_refused_in_prod(overrides, monkeypatch):
    for name, value in overrides.items():
        monkeypatch.setenv(f"RUNBOOKD_{name.upper()}", value)
    with pytest.raises(ValidationError) as caught:
        Settings(env="prod")
    assert "placeholder or empty secrets" in str(caught.value)
    # The refusal names the variable but never echoes the value.
    for value in overrides.values():
        if len(value) >= 4 and "real-token" not in value:
            assert value not in str(caught.value).replace("RUNBOOKD_", "")


def test_dev_accepts_placeholders_and_prod_accepts_real_secrets(monkeypatch):
    monkeypatch.setenv("RUNBOOKD_WEBHOOK_TOKENS", "changeme")
    assert Settings(env="dev").webhook_tokens[0].get_secret_value() == "changeme"
    monkeypatch.setenv("RUNBOOKD_WEBHOOK_TOKENS", "a-long-random-token-1,another-token-22")
    settings = Settings(env="prod")
    assert len(settings.webhook_tokens) == 2
    assert "a-long-random-token-1" not in repr(settings)


def test_prod_without_intake_credentials_is_not_serviceable(monkeypatch):
    monkeypatch.setenv("RUNBOOKD_WEBHOOK_TOKENS", "")
    settings = Settings(env="prod")  # CLI tools still work
    with pytest.raises(ValueError, match="no webhook credentials"):
        settings.check_serviceable()
    Settings(env="dev").check_serviceable()


def test_basic_auth_pairs_must_have_a_colon(monkeypatch):
    monkeypatch.setenv("RUNBOOKD_WEBHOOK_BASIC_AUTH", "no-colon-here-12345")
    with pytest.raises(ValidationError, match="user:password"):
        Settings(env="dev")


def test_tokens_file_keeps_only_digests(tmp_path):
    path = tmp_path / "tokens.yaml"
    token = create_token(path, "alice", ["approver"])
    stored = yaml.safe_load(path.read_text())
    assert stored == [{"name": "alice", "roles": ["approver"],
                       "token_sha256": hash_token(token)}]
    assert token not in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    store = IdentityStore(path)
    assert store.lookup(token).name == "alice"
    assert store.lookup(token + "x") is None
    assert store.lookup(token).has_role("responder")
    assert not store.lookup(token).has_role("admin")
    with pytest.raises(ValueError, match="already exists"):
        create_token(path, "alice", ["viewer"])


def test_cli_token_create(tmp_path):
    path = tmp_path / "tokens.yaml"
    out = subprocess.run([str(RUNBOOKD), "token", "create", "bob", "--role", "approver",
                          "--file", str(path)], capture_output=True, text=True, timeout=60,
                         env={"RUNBOOKD_ENV": "dev", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    label, token = out.stdout.strip().splitlines()
    assert label == f"token for bob (approver), stored as a digest in {path}; shown once:"
    assert IdentityStore(path).lookup(token).name == "bob"
    bad = subprocess.run([str(RUNBOOKD), "token", "create", "eve", "--role", "king",
                          "--file", str(path)], capture_output=True, text=True, timeout=60,
                         env={"RUNBOOKD_ENV": "dev", "PATH": "/usr/bin:/bin"})
    assert bad.returncode != 0 and "unknown role" in bad.stderr


def test_dev_secrets_live_under_var_and_serve_every_process(tmp_path, monkeypatch):
    """Issue 15, first hour: the dev token and link secret are made once under var/ and kept
    (Alertmanager's credentials_file survives a restart); `token create` in dev writes
    var/tokens.yaml, which the service loads; the CLI accepts the dev token."""
    from app import config
    from app.config import Settings, dev_files

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "DEV_DIR", Path("var"))  # as in a checkout
    token, link = dev_files()
    assert (tmp_path / "var" / "dev-token").stat().st_mode & 0o777 == 0o600
    assert dev_files() == (token, link)  # a restart keeps them
    settings = Settings(env="dev")
    assert settings.dev_token == token and settings.link_secret == link
    assert Settings(env="prod", webhook_tokens="a-long-random-token-1").dev_token is None
    env = {"RUNBOOKD_ENV": "dev", "PATH": "/usr/bin:/bin"}
    made = subprocess.run([str(RUNBOOKD), "token", "create", "alice", "--role", "approver"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    alice = made.stdout.strip().splitlines()[-1]
    assert Settings(env="dev").api_tokens_file == Path("var/tokens.yaml")
    assert IdentityStore(tmp_path / "var" / "tokens.yaml").lookup(alice).name == "alice"

    def approve_with(secret: str) -> str:
        return subprocess.run([str(RUNBOOKD), "approve", "1", "change", "--yes", "--token",
                               secret], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path, env=env).stderr

    assert "matches no identity" in approve_with("dev_not-the-token")
    assert "matches no identity" not in approve_with(token.get_secret_value())
