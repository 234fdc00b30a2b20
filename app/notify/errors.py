"""The one error that every sender raises: whether a retry could help, and why it failed."""

from __future__ import annotations


class DeliveryError(Exception):
    """A notification was not delivered. `retryable` for 429, 5xx and transport errors.

    The message names the service, its host and the status, never a URL path, a routing key
    or a token (a Slack webhook URL is itself a secret).
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, *, cap: float = 60.0) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds form only), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), cap)


class NotConfigured(DeliveryError):
    """The channel has no destination configured: nothing was tried, and retrying won't help.
    Said once at start-up, so each notification is only noted at INFO."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)
