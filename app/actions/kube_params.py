"""What the `kubernetes.*` and `argo.*` actions need before they talk to a cluster: the
parameters naming one object (validated with Kubernetes' own rules), the errors a call can
raise, and how an object is named in messages.

Kept apart from `kube_client` so that the catalog (lint, the loader) validates these actions'
steps at start-up without importing lightkube: the client, its models and httpx2 weigh about
20 MiB of every process, and load on the first call to a cluster.
"""

from __future__ import annotations

import datetime as dt
import re

from pydantic import Field, field_validator

from app.actions.base import ActionFailed, ActionParams, Waits
from app.durations import Duration, format_duration

# DNS-1123: a namespace is a label, an object name a subdomain (Kubernetes' own rules).
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
CONTEXT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,252}$")


class KubeNotFound(ActionFailed):
    """The API answered 404: no such object (or no such subresource)."""


class KubeConflict(ActionFailed):
    """The API answered 409: the object changed since it was read."""


class KubeParams(ActionParams):
    """One namespaced object on one cluster."""

    namespace: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=253)
    # A context of the kubeconfig; none: its current context.
    context: str | None = None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not DNS1123_LABEL.match(value):
            raise ValueError(f"namespace {value[:80]!r} is not a DNS-1123 label (lowercase "
                             "letters, digits and '-', starting and ending alphanumeric)")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not DNS1123_SUBDOMAIN.match(value):
            raise ValueError(f"name {value[:80]!r} is not a DNS-1123 subdomain (lowercase "
                             "letters, digits, '-' and '.', starting and ending alphanumeric)")
        return value

    @field_validator("context")
    @classmethod
    def _context(cls, value: str | None) -> str | None:
        if value is not None and not CONTEXT_NAME.match(value):
            raise ValueError(f"context {value[:80]!r} is not a kubeconfig context name")
        return value


def described(kind: str, namespace: str, name: str) -> str:
    """`Deployment ml-serving/fraud-serving`, the way people read an object."""
    return f"{kind} {namespace}/{name}"


MAX_WITHIN = dt.timedelta(hours=2)


class Polling(ActionParams):
    """A status read that may wait: read every `interval` until done, for at most `within`
    (0s: read once). The engine gives the step that wait on top of its timeout."""

    within: Duration = dt.timedelta(0)
    interval: Duration = dt.timedelta(seconds=2)

    @field_validator("within")
    @classmethod
    def _within(cls, value: dt.timedelta) -> dt.timedelta:
        if not dt.timedelta(0) <= value <= MAX_WITHIN:
            raise ValueError(f"within must be between 0s and {format_duration(MAX_WITHIN)}")
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: dt.timedelta) -> dt.timedelta:
        if value.total_seconds() < 0.1:
            raise ValueError("interval must be at least 100ms")
        return value

    def waits(self) -> Waits:
        within = self.within.total_seconds()
        return Waits(at_most=within + self.interval.total_seconds()) if within else Waits()
