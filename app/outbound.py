"""The one shared outbound HTTP client, limited to an allow-list of hosts.

Alert data can steer a URL only through validated runbook parameters, and even then the
request goes nowhere that the operator did not list in RUNBOOKD_HTTP_ALLOWLIST.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

# httpx is imported where a request is made, not here: this module loads at start-up with
# the actions and notify, and httpx costs about 1.5 MiB of a process that may never send
# a request (issue 17). So the default timeout is httpx's (connect, read, write, pool)
# tuple, the same as httpx.Timeout(10.0, connect=5.0), which would need httpx to build.
DEFAULT_TIMEOUT = (5.0, 10.0, 10.0, 10.0)


class HostNotAllowed(Exception):
    def __init__(self, host: str):
        super().__init__(
            f"outbound HTTP to host {host!r} is not allowed: add it to RUNBOOKD_HTTP_ALLOWLIST"
        )
        self.host = host


def host_allowed(url: httpx.URL, allowlist: frozenset[str]) -> bool:
    """An entry is a host (any port) or host:port; '*.example.com' allows subdomains."""
    host = (url.host or "").lower()
    port = url.port or (443 if url.scheme == "https" else 80)
    for entry in allowlist:
        name, _, entry_port = entry.partition(":")
        if entry_port and str(port) != entry_port:
            continue
        if name == host or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


class OutboundHttp:
    """Wraps one `httpx.AsyncClient`; every request is checked against the allow-list."""

    def __init__(self, allowlist: list[str] | frozenset[str], *,
                 client: httpx.AsyncClient | None = None):
        self.allowlist = frozenset(entry.strip().lower() for entry in allowlist if entry.strip())
        # Built on the first request: a client loads httpcore and the CA bundle (about 4 MiB),
        # which a process that sends nothing never needs.
        self._client = client
        self._closed = False

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            if self._closed:
                raise RuntimeError("the outbound HTTP client is closed")
            import httpx

            self._client = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, follow_redirects=False)
        return self._client

    def check(self, url: str | httpx.URL) -> httpx.URL:
        import httpx

        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https"):
            raise HostNotAllowed(f"{parsed.scheme}://{parsed.host}")
        if not host_allowed(parsed, self.allowlist):
            raise HostNotAllowed(parsed.host or str(url))
        return parsed

    async def request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, self.check(url), **kwargs)

    def stream(self, method: str, url: str | httpx.URL, **kwargs: Any) -> Any:
        return self.client.stream(method, self.check(url), **kwargs)

    async def aclose(self) -> None:
        self._closed = True
        if self._client is not None:
            await self._client.aclose()
