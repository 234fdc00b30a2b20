"""API identities: who is calling, and with which roles.

Tokens are stored only as sha256 digests in the tokens file, in the shape
`- {name: alice, roles: [approver], token_sha256: <hex>}`. A presented token is hashed and
looked up; the digest of a 256-bit random token leaks nothing worth timing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Role = Literal["viewer", "responder", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "responder", "approver", "admin")

# Each role includes the ones before it.
_RANK = {role: i for i, role in enumerate(ROLES)}


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    roles: list[Role] = Field(min_length=1)
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


_ENTRIES = TypeAdapter(list[TokenEntry])
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    name: str
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        """True if any of the identity's roles is `role` or ranks above it."""
        need = _RANK[role]  # type: ignore[index]
        return any(_RANK.get(r, -1) >= need for r in self.roles)  # type: ignore[call-overload]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_tokens_file(path: Path) -> list[TokenEntry]:
    """Read and validate a tokens file; a missing file is an empty list."""
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or []
    return _ENTRIES.validate_python(data)


class IdentityStore:
    """Identities by token digest and by name, from the tokens file.

    The file is re-read whenever it changes (its mtime, size or inode), so an added or
    revoked token takes effect on the next request, for the API, the web pages and Slack
    alike, with no restart: rotating a token at 3 a.m. must not need a deploy.
    """

    def __init__(self, path: Path | None, *, dev_token: str | None = None) -> None:
        self._path = path
        self._dev = hash_token(dev_token) if dev_token else None
        self._stamp: tuple[int, int, int] | None = None
        self._by_digest: dict[str, Identity] = {}
        self._by_name: dict[str, Identity] = {}
        self._loaded = False
        self._refresh()

    def _refresh(self) -> None:
        try:
            st = os.stat(self._path) if self._path else None
        except OSError:
            st = None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino) if st else None
        if self._loaded and stamp == self._stamp:
            return
        try:
            entries = load_tokens_file(self._path) if self._path and st else []
        except Exception:
            if not self._loaded:
                raise  # at start-up a bad file is an error to fix, not to run with
            # A half-edited file must not sign everyone out; keep what was loaded last.
            log.warning("could not read the tokens file; keeping the identities loaded before")
            return
        by_digest = {e.token_sha256: Identity(e.name, frozenset(e.roles)) for e in entries}
        if self._dev:
            by_digest[self._dev] = Identity("dev", frozenset({"admin"}))
        self._by_digest = by_digest
        self._by_name = {i.name: i for i in by_digest.values()}
        self._stamp = stamp
        self._loaded = True

    def lookup(self, token: str) -> Identity | None:
        """The identity whose token this is, if it still exists."""
        return self.by_digest(hash_token(token))

    def by_digest(self, digest: str) -> Identity | None:
        """The identity whose token hashes to `digest`, if it still exists."""
        self._refresh()
        return self._by_digest.get(digest)

    def by_name(self, name: str) -> Identity | None:
        """The identity called `name` (with its roles), if it still exists."""
        self._refresh()
        return self._by_name.get(name)

    def names(self) -> set[str]:
        self._refresh()
        return set(self._by_name)


def create_token(path: Path, name: str, roles: list[Role]) -> str:
    """Append a new identity to the tokens file and return its token, the only time it exists."""
    entries = load_tokens_file(path)
    if any(e.name == name for e in entries):
        raise ValueError(f"an identity named {name!r} already exists in {path}")
    token = "rbd_" + secrets.token_urlsafe(32)
    entries.append(TokenEntry(name=name, roles=roles, token_sha256=hash_token(token)))
    text = yaml.safe_dump([e.model_dump() for e in entries], sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tokens-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return token
