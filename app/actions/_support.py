"""Small helpers shared by the built-in actions: secrets by name, outbound errors, truncation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field

from app.actions.base import ActionContext, ActionFailed
from app.notify.transport import host_of
from app.outbound import HostNotAllowed

# httpx is imported where it is used, so that start-up, which imports every action, does not
# load it (about 1.5 MiB) before the first outbound request (see app/outbound.py).
if TYPE_CHECKING:
    import httpx

# Keeps step outputs well under the executor's `step_output_limit`.
BODY_LIMIT = 2048
JSON_LIMIT = 4096


def _number_to_str(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


# A model version as runbooks write it: `7` or "7" (or a name); always kept as a string.
VersionStr = Annotated[str, BeforeValidator(_number_to_str),
                       Field(min_length=1, max_length=128)]


def json_sha256(value: Any) -> str | None:
    """sha256 of a JSON value in canonical form (sorted keys), for plans; None for None."""
    if value is None:
        return None
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def secret_value(ctx: ActionContext, name: str) -> str:
    """The value of the secret `name` from settings.secrets; the error never shows a value."""
    secret = ctx.settings.secrets.get(name)
    if secret is None:
        raise ActionFailed(
            f"secret {name!r} is not configured: add it to RUNBOOKD_SECRETS "
            f"(known names: {', '.join(sorted(ctx.settings.secrets)) or 'none'})"
        )
    return secret.get_secret_value()


def outbound_failure(exc: Exception, *, url: str | httpx.URL, doing: str) -> ActionFailed:
    """Turn an outbound error into an ActionFailed that names the host, never the full URL."""
    import httpx

    host = host_of(url)
    if isinstance(exc, HostNotAllowed):
        return ActionFailed(
            f"{doing}: host {exc.host!r} is not on the HTTP allow-list "
            "(add it to RUNBOOKD_HTTP_ALLOWLIST)"
        )
    if isinstance(exc, httpx.TimeoutException):
        return ActionFailed(f"{doing}: {host} did not answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.HTTPError):
        return ActionFailed(f"{doing}: could not reach {host} ({type(exc).__name__}: {exc})")
    return ActionFailed(f"{doing}: {type(exc).__name__}: {exc}")


def truncate(text: str, limit: int = BODY_LIMIT) -> str:
    """At most `limit` characters, marking the cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value (a server may echo a header back) with `***`."""
    for value in secrets:
        if value:
            text = text.replace(value, "***")
    return text


def small_json(raw: bytes) -> Any | None:
    """The parsed body when it is small JSON, else None: later steps may read its fields."""
    if not raw or len(raw) > JSON_LIMIT:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def error_detail(response: httpx.Response) -> str:
    """A short reason from an error response: its JSON `message`/`error`, or the body text."""
    try:
        body = response.json()
    except ValueError:
        return truncate(response.text.strip(), 300)
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if body.get(key):
                return truncate(str(body[key]), 300)
    return truncate(response.text.strip(), 300)
