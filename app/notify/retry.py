"""Delivery with retries: exponential backoff with jitter (tenacity), only for retryable
failures, and never shorter than a server's `Retry-After`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from app.notify.errors import DeliveryError

# tenacity is imported by the first delivery, not at start-up: 0.4 MiB of idle memory
# (issue 17) in a process that may never send a notification.
if TYPE_CHECKING:
    from tenacity import RetryCallState

T = TypeVar("T")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, DeliveryError) and exc.retryable


def _wait(initial: float, maximum: float) -> Callable[[RetryCallState], float]:
    from tenacity import wait_exponential_jitter

    backoff = wait_exponential_jitter(multiplier=initial, max=maximum)

    def wait(state: RetryCallState) -> float:
        """Backoff with jitter, but never less than the server's Retry-After."""
        exc = state.outcome.exception() if state.outcome else None
        hinted = getattr(exc, "retry_after", None) or 0.0
        return min(max(backoff(state), hinted), maximum)

    return wait


async def deliver_with_retries(fn: Callable[[], Awaitable[T]], *, attempts: int = 3,
                               initial: float = 0.5, maximum: float = 30.0) -> T:
    """Call `fn` until it succeeds, it fails for good, or `attempts` run out (re-raises)."""
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

    retrying = AsyncRetrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=_wait(initial, maximum),
        retry=retry_if_exception(_retryable),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await fn()
    raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover
