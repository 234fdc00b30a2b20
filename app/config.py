"""Typed settings for runbookd, read from RUNBOOKD_* environment variables.

Secrets are `SecretStr`, so their values never appear in reprs, logs or error messages.
Outside `RUNBOOKD_ENV=dev`, empty or placeholder secrets are refused at start-up.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "placeholder", "xxx", "todo",
     "password", "token", "example", "test", "dev", "default"}
)

# The shortest secret accepted outside dev (a token, a password, the link secret).
MIN_SECRET_LENGTH = 8

# Environment variables a command may be given (RUNBOOKD_COMMAND_ENV, a step's env): a strict
# name, and never one that changes which code the child loads or where it finds programs, nor
# one of runbookd's own settings (RUNBOOKD_SECRETS would hand every secret to the child).
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
FORBIDDEN_ENV = re.compile(
    r"^(PATH|IFS|ENV|BASH_ENV|SHELLOPTS|BASHOPTS|PS4|LD_.*|DYLD_.*|GCONV_PATH|LOCPATH|"
    r"PYTHONPATH|PYTHONHOME|PYTHONSTARTUP|PYTHONUSERBASE|PYTHONINSPECT|NODE_OPTIONS|"
    r"NODE_PATH|PERL5LIB|PERL5OPT|PERLLIB|RUBYOPT|RUBYLIB|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|"
    r"RUNBOOKD_.*)$")


def env_name_problem(name: str) -> str | None:
    """Why `name` may not be given to a command, or None when it may."""
    if not ENV_NAME.match(name):
        return f"{name[:60]!r} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
    if FORBIDDEN_ENV.match(name):
        return (f"environment variable {name} changes what code a command loads, or holds "
                "runbookd's own settings")
    return None


CommaList = Annotated[list[str], NoDecode]
CommaSecrets = Annotated[list[SecretStr], NoDecode]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of runbookd, with the defaults of the embedded single-process setup."""

    # hide_input_in_errors: a refused secret must not be echoed in the start-up error.
    model_config = SettingsConfigDict(env_prefix="RUNBOOKD_", extra="ignore",
                                      hide_input_in_errors=True)

    env: Literal["dev", "prod"] = "prod"
    database_url: str = "sqlite+aiosqlite:///./runbookd.db"
    mappings: Path = Path("alert_mappings.yaml")
    remediations_dir: Path = Path("remediations")

    # Intake authentication.
    webhook_tokens: CommaSecrets = Field(default_factory=list)
    webhook_basic_auth: CommaSecrets = Field(default_factory=list)
    pagerduty_secrets: CommaSecrets = Field(default_factory=list)
    grafana_secret: SecretStr | None = None
    grafana_timestamp_header: str | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # Limits on every other request (app/limits.py), and on connections (uvicorn's options).
    api_max_body_bytes: int = Field(default=262_144, ge=1024)
    body_read_timeout_seconds: float = Field(default=15.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    # Whose X-Forwarded-For names the client (addresses or CIDRs); empty: nobody's.
    trusted_proxies: CommaList = Field(default_factory=list)

    # API identities.
    api_tokens_file: Path | None = None
    dev_token: SecretStr | None = None

    # Responder channels.
    slack_signing_secret: SecretStr | None = None
    slack_users: dict[str, str] = Field(default_factory=dict)
    slack_webhook_url: SecretStr | None = None
    link_secret: SecretStr | None = None
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    notify_webhook_url: str | None = None
    public_url: str = "http://127.0.0.1:8080"

    # Actions.
    http_allowlist: CommaList = Field(default_factory=list)
    command_allowlist: CommaList = Field(default_factory=list)
    # Variables of runbookd's own environment that pass through to commands (KUBECONFIG,HOME).
    command_env: CommaList = Field(default_factory=list)
    registry_dir: Path = Path("var/registry")
    # The only directories artifact.verify reads local files under; empty: registry_dir.
    artifact_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    prometheus_url: str = "http://127.0.0.1:9090"
    mlflow_url: str = "http://127.0.0.1:5000"
    # The kubeconfig of kubernetes.* and argo.*; none: KUBECONFIG, then the service account.
    kubeconfig: Path | None = None
    # airflow.* actions: the base URL, the REST API (v2: Airflow 3, JWT; v1: Airflow 2, basic
    # auth) and the name of the secret holding `user:password`; a step may override each.
    airflow_url: str | None = Field(default=None, pattern=r"^https?://")
    airflow_api: Literal["v2", "v1"] = "v2"
    airflow_auth_secret: str | None = None
    secrets: dict[str, SecretStr] = Field(default_factory=dict)

    # Engine.
    worker_enabled: bool = True
    # Executions in flight per replica. Their decisions share rounds (engine/rounds.py), so
    # more in flight is cheaper per step (figures in benchmarks/RESULTS.md, "Executor
    # rounds"). Runbooks' own limits and the storm brake bound what any one runbook does.
    worker_concurrency: int = Field(default=32, ge=1, le=256)
    lease_seconds: float = Field(default=30.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    # On shutdown, how long running steps may finish before they are cut (and then treated
    # as interrupted by the next start).
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # How often a process looks for due drills (runbooks' `drill:` schedules; one replica
    # runs each); 0 starts none (a drill by hand still runs).
    drill_check_seconds: float = Field(default=30.0, ge=0)
    step_output_limit: int = Field(default=16_384, ge=256)
    default_step_timeout_seconds: float = Field(default=300.0, gt=0)
    default_approval_timeout_seconds: float = Field(default=1800.0, gt=0)
    # Circuit breaker, unless a runbook sets `limits.breaker`.
    breaker_failures: int = Field(default=3, ge=1)
    breaker_window_seconds: float = Field(default=3600.0, gt=0)
    # Change sign-off: when set, the risky steps of a runbook whose review is overdue are
    # held for an approval that names the overdue review (README: "Change sign-off").
    require_review: bool = False
    # How often a process looks for overdue reviews to remind their owners (once per
    # period each, whichever replica gets there first); 0 never looks.
    review_check_seconds: float = Field(default=300.0, ge=0)

    # Retention of raw payloads and events, in days; 0 keeps them forever.
    retention_days: int = Field(default=90, ge=0)

    # Group commit: the most webhook requests written in one transaction.
    ingest_batch_max: int = Field(default=256, ge=1)

    @field_validator(
        "webhook_tokens", "webhook_basic_auth", "pagerduty_secrets", "http_allowlist",
        "command_allowlist", "command_env", "artifact_roots", "trusted_proxies", mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"RUNBOOKD_TRUSTED_PROXIES entries must be IP addresses or "
                                 f"CIDR networks, not {entry[:60]!r}") from None
        return entries

    @field_validator("command_env")
    @classmethod
    def _command_env_names(cls, names: list[str]) -> list[str]:
        problems = [problem for name in names if (problem := env_name_problem(name))]
        if problems:
            raise ValueError(f"RUNBOOKD_COMMAND_ENV: {'; '.join(problems)}")
        return names

    @field_validator("webhook_basic_auth")
    @classmethod
    def _basic_auth_pairs(cls, pairs: list[SecretStr]) -> list[SecretStr]:
        for pair in pairs:
            if ":" not in pair.get_secret_value():
                raise ValueError("RUNBOOKD_WEBHOOK_BASIC_AUTH entries must be user:password")
        return pairs

    @model_validator(mode="after")
    def _dev_secrets_from_var(self) -> Settings:
        # In dev, what `make run` keeps under var/ (dev_files) serves every process: the
        # service, the CLI, and Alertmanager's credentials_file across restarts.
        if self.env == "dev":
            self.dev_token = self.dev_token or _read_secret(DEV_DIR / DEV_TOKEN_FILE)
            self.link_secret = self.link_secret or _read_secret(DEV_DIR / DEV_LINK_SECRET_FILE)
            if self.api_tokens_file is None and (DEV_DIR / DEV_TOKENS_FILE).is_file():
                self.api_tokens_file = DEV_DIR / DEV_TOKENS_FILE
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_outside_dev(self) -> Settings:
        if self.env == "dev":
            return self
        bad = [name for name, value in self._secret_fields() if _is_placeholder(value)]
        if bad:
            # One line per variable: `runbookd serve` prints each as a problem of its own.
            raise ValueError("\n".join(
                f"{name}: placeholder or empty secrets are refused outside RUNBOOKD_ENV=dev; "
                f"use a random value of at least {MIN_SECRET_LENGTH} characters"
                for name in sorted(set(bad))))
        return self

    def _secret_fields(self) -> list[tuple[str, SecretStr]]:
        found: list[tuple[str, SecretStr]] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                found.append((f"RUNBOOKD_{name.upper()}", value))
            elif isinstance(value, list):
                found += [
                    (f"RUNBOOKD_{name.upper()}", v) for v in value if isinstance(v, SecretStr)
                ]
            elif isinstance(value, dict):
                found += [
                    (f"RUNBOOKD_{name.upper()}", v) for v in value.values()
                    if isinstance(v, SecretStr)
                ]
        return found

    def serviceable_problems(self) -> list[str]:
        """Why this process must not serve, one line each; empty when it may.

        Checked when the service starts, not on every read of the settings, so that CLI
        tools (lint, simulate, history) work without webhook secrets.
        """
        problems = []
        if self.env == "prod" and not (self.webhook_tokens or self.webhook_basic_auth
                                       or self.pagerduty_secrets or self.grafana_secret):
            # Every alert would get a 401.
            problems.append("no webhook credentials: set RUNBOOKD_WEBHOOK_TOKENS (or "
                            "_WEBHOOK_BASIC_AUTH, _PAGERDUTY_SECRETS, _GRAFANA_SECRET)")
        return problems

    def check_serviceable(self) -> None:
        """Refuse to serve in prod without any intake credential (ValueError, every problem)."""
        problems = self.serviceable_problems()
        if problems:
            raise ValueError("; ".join(problems))

    def start_warnings(self) -> list[str]:
        """What a start lacks but can run without, one line each."""
        warnings = []
        if self.env != "dev":
            warnings += self._identity_warnings()
        if self.slack_webhook_url is None and not any(n.startswith("slack_")
                                                      for n in self.secrets):
            warnings.append("Slack is not configured; notifications to Slack go to the log "
                            "(set RUNBOOKD_SLACK_WEBHOOK_URL)")
        return warnings

    def _identity_warnings(self) -> list[str]:
        warnings = []
        if self.api_tokens_file is None and self.dev_token is None:
            warnings.append("no API identities: RUNBOOKD_API_TOKENS_FILE is not set, so no one "
                            "can approve, pause or read history (`runbookd token create`)")
        elif not self.api_tokens_file.is_file():
            warnings.append(f"no API identities: RUNBOOKD_API_TOKENS_FILE "
                            f"{self.api_tokens_file} does not exist (`runbookd token create`)")
        if self.link_secret is None:
            warnings.append(f"RUNBOOKD_LINK_SECRET is not set: approval links and web sign-in "
                            f"are disabled (set a random value of at least "
                            f"{MIN_SECRET_LENGTH} characters)")
        return warnings

    def server_options(self) -> dict[str, Any]:
        """uvicorn's options for the connection limit, keep-alive and trusted proxies."""
        trusted = list(self.trusted_proxies)
        return {
            # Beyond this many connections (or requests in progress), uvicorn answers 503.
            "limit_concurrency": self.max_connections,
            "timeout_keep_alive": self.keep_alive_seconds,
            # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise; then
            # any local process sets the address that approvals and events record.
            "proxy_headers": bool(trusted),
            "forwarded_allow_ips": trusted,
        }

    @property
    def artifact_root_paths(self) -> list[Path]:
        """Where local artifacts may be read: RUNBOOKD_ARTIFACT_ROOTS, else the registry."""
        return list(self.artifact_roots) or [self.registry_dir]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


# Development state, under the working directory (`make run` runs from the checkout).
DEV_DIR = Path("var")
DEV_TOKEN_FILE = "dev-token"
DEV_LINK_SECRET_FILE = "dev-link-secret"
DEV_TOKENS_FILE = "tokens.yaml"


def _read_secret(path: Path) -> SecretStr | None:
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return SecretStr(value) if value else None


def dev_files() -> tuple[SecretStr, SecretStr]:
    """The dev token and link secret under var/, made on first use (mode 0600) and kept, so
    a restart of `make run` does not break Alertmanager's credentials_file or open links."""
    made = []
    for name, prefix in ((DEV_TOKEN_FILE, "dev_"), (DEV_LINK_SECRET_FILE, "")):
        path = DEV_DIR / name
        secret = _read_secret(path)
        if secret is None:
            DEV_DIR.mkdir(exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(prefix + secrets.token_urlsafe(32) + "\n")
            secret = _read_secret(path)
        assert secret is not None
        made.append(secret)
    return made[0], made[1]


def _is_placeholder(secret: SecretStr) -> bool:
    value = secret.get_secret_value().strip().lower()
    if ":" in value:  # user:password pairs are judged by their password
        value = value.split(":", 1)[1]
    return value in PLACEHOLDER_SECRETS or len(value) < MIN_SECRET_LENGTH


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
