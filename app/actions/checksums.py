"""Streaming sha256 of files and manifests (relative file -> sha256), shared by the artifact,
registry and MLflow actions.

A manifest is a JSON object mapping a relative path to its sha256 hex digest, or to an object
`{"sha256": ..., "size": ...}` when the size is recorded too. Hashing reads fixed-size chunks,
never a whole file, and stops early when the awaiting task is cancelled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

CHUNK = 1024 * 1024
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest that is not a JSON map of safe relative paths to sha256 digests."""


class HashCancelled(Exception):
    """Hashing stopped because the task awaiting it was cancelled."""


@dataclass(frozen=True)
class Expected:
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int


@dataclass(frozen=True)
class Problem:
    """One file that failed verification: `missing`, `size` or `sha256` mismatch, `unreadable`."""

    file: str
    problem: str
    expected: str | None = None
    actual: str | None = None

    def describe(self) -> str:
        """One line for people: `weights.bin: sha256 is …, expected …`."""
        if self.problem == "missing":
            return f"{self.file}: missing"
        if self.expected is not None:
            return f"{self.file}: {self.problem} is {self.actual}, expected {self.expected}"
        return f"{self.file}: {self.problem} ({self.actual})"

    def as_dict(self) -> dict[str, Any]:
        """The problem as a small JSON object for step outputs."""
        return {k: v for k, v in vars(self).items() if v is not None}


def safe_relative(name: str) -> str:
    """A manifest path, refused if it could escape the artifact (absolute, `..`, backslash)."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or "\\" in name or any(p in ("..", "") for p in
                                                              name.split("/")):
        raise ManifestError(f"manifest entry {name!r} is not a safe relative path")
    return str(path)


def parse_manifest(raw: bytes, *, source: str) -> dict[str, Expected]:
    """Parse manifest bytes; `source` names the file in error messages."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"manifest {source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ManifestError(f"manifest {source} must be a non-empty JSON object "
                            "mapping relative file to sha256")
    out: dict[str, Expected] = {}
    for name, value in data.items():
        entry = value if isinstance(value, dict) else {"sha256": value}
        sha = entry.get("sha256")
        size = entry.get("size")
        if not isinstance(sha, str) or not SHA256_HEX.match(sha.lower()):
            raise ManifestError(f"manifest {source}: entry {name!r} has no valid sha256")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise ManifestError(f"manifest {source}: entry {name!r} has an invalid size")
        out[safe_relative(name)] = Expected(sha256=sha.lower(), size=size)
    return out


def compare(name: str, expected: Expected, actual: Digest) -> Problem | None:
    """The first mismatch between what was expected of a file and what it is."""
    if expected.size is not None and expected.size != actual.size:
        return Problem(name, "size", str(expected.size), str(actual.size))
    if expected.sha256 is not None and expected.sha256 != actual.sha256:
        return Problem(name, "sha256", expected.sha256, actual.sha256)
    return None


def hash_file(path: Path, stop: threading.Event | None = None) -> Digest:
    """sha256 and size of one file, read in chunks (blocking: call it in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            if stop is not None and stop.is_set():
                raise HashCancelled(str(path))
            digest.update(chunk)
            size += len(chunk)
    return Digest(digest.hexdigest(), size)


def verify_dir(root: Path, manifest: dict[str, Expected], stop: threading.Event | None = None,
               ) -> list[Problem]:
    """Check every manifest entry under `root` (blocking); returns the files that failed."""
    problems: list[Problem] = []
    for name, expected in sorted(manifest.items()):
        path = root / name
        if not path.is_file():
            problems.append(Problem(name, "missing"))
            continue
        try:
            actual = hash_file(path, stop)
        except OSError as exc:
            problems.append(Problem(name, "unreadable", actual=exc.strerror or str(exc)))
            continue
        if (problem := compare(name, expected, actual)) is not None:
            problems.append(problem)
    return problems


def walk_files(root: Path) -> Iterator[str]:
    """Relative paths of the regular files under `root`, the manifest itself left out."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            if rel != MANIFEST_NAME:
                yield rel


def build_manifest(root: Path) -> dict[str, str]:
    """Relative file -> sha256 of every file under `root` (blocking)."""
    return {rel: hash_file(root / rel).sha256 for rel in walk_files(root)}


async def in_thread(fn: Any, *args: Any) -> Any:
    """Run a hashing function in a thread, passing a stop event that a cancellation sets, so
    the thread stops at its next chunk instead of reading gigabytes nobody waits for."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(fn, *args, stop)
    except asyncio.CancelledError:
        stop.set()
        raise
