"""API identities: who is calling, and with which roles.

Tokens are stored only as sha256 digests in the tokens file, in the shape
`- {name: alice, roles: [approver], token_sha256: <hex>}`. A presented token is hashed and
looked up; the digest of a 256-bit random token leaks nothing worth timing.

A file that is empty, unparsable, or gives one digest to two entries (whose token would it
be?) is refused: the identities loaded before stay, and the refusal is logged without any
token or digest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

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


class TokensFileInvalid(ValueError):
    """A tokens file that must not be used; the message never quotes the file's content."""


def _parse(path: Path, text: str) -> list[TokenEntry] | None:
    """The entries of a tokens file's text, or None when it holds no YAML document at all."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Not str(exc): it quotes the offending line, which may hold a pasted token.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TokensFileInvalid(f"{path}: not valid YAML{where}") from None
    if data is None:
        return None
    try:
        entries = _ENTRIES.validate_python(data)
    except ValidationError as exc:
        raise TokensFileInvalid(f"{path}: {_describe(exc)}") from None
    shared: dict[str, list[str]] = {}
    for entry in entries:
        shared.setdefault(entry.token_sha256, []).append(entry.name)
    clashes = "; ".join(", ".join(names) for names in shared.values() if len(names) > 1)
    if clashes:
        raise TokensFileInvalid(f"{path}: entries share the same token digest "
                                f"(one token, several identities): {clashes}")
    return entries


def _describe(exc: ValidationError) -> str:
    """What is wrong with the entries, by position and field, without the values given."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        loc = error["loc"]
        where = f"entry {int(loc[0]) + 1}" if loc and isinstance(loc[0], int) else "the file"
        if len(loc) > 1:
            # An unknown key is content too (it might be a pasted token): name only ours.
            field = loc[1] if loc[1] in TokenEntry.model_fields else "an unknown field"
            where += f", {field}"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def load_tokens_file(path: Path) -> list[TokenEntry]:
    """Read and validate a tokens file; a missing or empty file is an empty list.

    Raises `TokensFileInvalid` (a ValueError) for a file that is not YAML, has a bad entry,
    or gives one token digest to two entries.
    """
    if not path.exists():
        return []
    return _parse(path, path.read_text()) or []


class IdentityStore:
    """Identities by token digest and by name, from the tokens file.

    The file is re-read whenever it changes (its mtime, size or inode), so an added or
    revoked token takes effect on the next request, for the API, the web pages and Slack
    alike, with no restart: rotating a token at 3 a.m. must not need a deploy.

    A changed file that is empty (half-written), unparsable or ambiguous is refused once per
    version: logged, reported to `on_reload(False)`, and the identities loaded before stay.
    At start-up there is nothing to keep, so a bad file is an error (an empty one starts with
    no identities). `on_reload(True)` follows each good load.
    """

    def __init__(self, path: Path | None, *, dev_token: str | None = None,
                 on_reload: Callable[[bool], None] | None = None) -> None:
        self._path = path
        self._dev = hash_token(dev_token) if dev_token else None
        self._on_reload = on_reload
        self._stamp: tuple[int, int, int] | None = None
        self._refused: object = None  # the stamp of the version refused last, not re-read
        self._by_digest: dict[str, Identity] = {}
        self._by_name: dict[str, Identity] = {}
        self._loaded = False
        self._refresh()

    def _refresh(self) -> None:
        try:
            st = os.stat(self._path) if self._path else None
        except FileNotFoundError:
            st = None  # no file means no identities (besides the dev token)
        except OSError as exc:
            if exc.errno != self._refused:
                self._refuse(exc.errno, f"{self._path}: cannot be read ({exc.strerror})")
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino) if st else None
        if (self._loaded and stamp == self._stamp) or (stamp and stamp == self._refused):
            return
        entries: list[TokenEntry] | None = []
        if self._path and st:
            try:
                entries = _parse(self._path, self._path.read_text())
            except TokensFileInvalid as exc:
                self._refuse(stamp, str(exc))
                return
            except (OSError, UnicodeDecodeError) as exc:
                self._refuse(stamp, f"{self._path}: cannot be read ({type(exc).__name__})")
                return
            if entries is None and self._loaded:
                self._refuse(stamp, f"{self._path}: the file is empty (still being written?)")
                return
            if entries is None:
                log.error("the tokens file %s is empty: no identities can sign in", self._path)
        by_digest = {e.token_sha256: Identity(e.name, frozenset(e.roles))
                     for e in entries or []}
        if self._dev:
            by_digest[self._dev] = Identity("dev", frozenset({"admin"}))
        self._by_digest = by_digest
        self._by_name = {i.name: i for i in by_digest.values()}
        self._stamp = stamp
        self._refused = None
        self._loaded = True
        if self._on_reload:
            self._on_reload(entries is not None)

    def _refuse(self, stamp: object, why: str) -> None:
        """Keep the identities loaded before (none at start-up: then raise)."""
        self._refused = stamp
        if self._on_reload:
            self._on_reload(False)
        if not self._loaded:
            # At start-up: an error to fix, not to run with.
            raise TokensFileInvalid(why) from None
        # A half-edited file must not sign everyone out, nor let a token change hands.
        log.error("refused the tokens file, keeping the identities loaded before: %s", why)

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
    entries = load_tokens_file(path)  # refuses a file whose digests already clash
    if any(e.name == name for e in entries):
        raise ValueError(f"an identity named {name!r} already exists in {path}")
    token = "rbd_" + secrets.token_urlsafe(32)
    if any(e.token_sha256 == hash_token(token) for e in entries):  # never, for 256 bits
        raise ValueError(f"the new token's digest already belongs to an entry in {path}")
    entries.append(TokenEntry(name=name, roles=roles, token_sha256=hash_token(token)))
    text = yaml.safe_dump([e.model_dump() for e in entries], sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tokens-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return token
