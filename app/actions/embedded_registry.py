"""The embedded model registry: plain files that a rollback can trust.

Layout under `registry_dir`:

    models/<model>/<version>/...                  the model's files
    models/<model>/<version>/manifest.json        relative file -> sha256
    models/<model>/aliases/<alias>.json           {"version", "set_at", "reason", "execution_id"}
    models/<model>/aliases/<alias>.history.jsonl  one line per change: time, from, to, reason,
                                                  execution_id, step_id, kind (set | rollback)

An alias file is replaced atomically (temp file, fsync, os.replace, fsync of the directory),
so a crash leaves the old or the new alias, never a torn one. The history is append-only, is
written before the alias, and is what `previous` reads. A per-alias lock file serialises
writers across processes.

Everything here is blocking filesystem code; the actions call it through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from app.actions.checksums import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    Expected,
    ManifestError,
    Problem,
    build_manifest,
    parse_manifest,
    verify_dir,
)

# Names become path segments: a strict pattern keeps `..` and slashes out.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
RESERVED = frozenset({"aliases"})


class RegistryError(Exception):
    """A registry operation failed; the message names the model, version, alias or file."""


@dataclass(frozen=True)
class AliasState:
    version: str
    set_at: str | None = None
    reason: str | None = None
    execution_id: int | None = None


@dataclass(frozen=True)
class HistoryEntry:
    time: str
    from_version: str | None
    to_version: str
    reason: str | None = None
    execution_id: int | None = None
    step_id: str | None = None
    kind: str = "set"


@dataclass(frozen=True)
class AliasChange:
    model: str
    alias: str
    previous: str | None
    current: str

    @property
    def changed(self) -> bool:
        """Whether the alias moved."""
        return self.previous != self.current


@dataclass(frozen=True)
class Rollback:
    """The version `previous` resolves to, and the candidates skipped because they failed."""

    version: str
    skipped: tuple[tuple[str, str], ...] = ()


def check_name(kind: str, value: str) -> str:
    """Validate a model or version name (a path segment)."""
    # fullmatch: `$` alone would let a trailing newline through.
    if not NAME.fullmatch(value) or value in RESERVED:
        raise RegistryError(f"{kind} {value!r} is not a valid name "
                            "(letters, digits, '.', '_', '-'; not 'aliases')")
    return value


def check_alias(value: str) -> str:
    """Validate an alias name."""
    if not ALIAS.fullmatch(value):
        raise RegistryError(f"alias {value!r} is not a valid alias (lower-case letters, "
                            "digits, '_', '-')")
    return value


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class ModelRegistry:
    """Read and change the registry rooted at `root` (blocking filesystem calls)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def model_dir(self, model: str) -> Path:
        """The folder of a model (the name is validated first)."""
        return self.root / "models" / check_name("model", model)

    def version_dir(self, model: str, version: str) -> Path:
        """The folder of one version (both names validated first)."""
        return self.model_dir(model) / check_name("version", str(version))

    def _own(self, path: Path) -> Path:
        """`path`, refused when it resolves (through a symlink) outside the registry."""
        try:
            inside = path.resolve().is_relative_to(self.root.resolve())
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise RegistryError(f"{path} cannot be resolved: {exc}") from None
        if not inside:
            raise RegistryError(f"{path} resolves outside the registry at {self.root} (a "
                                "symlink?); the registry reads only its own files")
        return path

    def _alias_path(self, model: str, alias: str, suffix: str) -> Path:
        return self.model_dir(model) / "aliases" / f"{check_alias(alias)}{suffix}"

    @contextlib.contextmanager
    def _locked(self, model: str, alias: str) -> Iterator[None]:
        lock = self._alias_path(model, alias, ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def require_model(self, model: str) -> Path:
        """The folder of an existing model, or RegistryError listing the known ones."""
        path = self.model_dir(model)
        if not path.is_dir():
            known = ", ".join(self.models()) or "none"
            raise RegistryError(f"model {model!r} is not in the registry at {self.root} "
                                f"(models: {known})")
        return path

    def models(self) -> list[str]:
        """Every model in the registry."""
        base = self.root / "models"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def list_versions(self, model: str) -> list[str]:
        """Versions of `model`, numeric ones in numeric order."""
        path = self.require_model(model)
        names = [p.name for p in path.iterdir() if p.is_dir() and p.name not in RESERVED]
        return sorted(names, key=_version_key)

    def aliases(self, model: str) -> dict[str, str]:
        """Alias -> version for every alias of `model`."""
        folder = self.require_model(model) / "aliases"
        if not folder.is_dir():
            return {}
        out = {}
        for path in sorted(folder.glob("*.json")):
            state = self.get_alias(model, path.stem)
            if state is not None:
                out[path.stem] = state.version
        return out

    def get_alias(self, model: str, alias: str) -> AliasState | None:
        """The version an alias points at, or None when the alias was never set."""
        self.require_model(model)
        path = self._alias_path(model, alias, ".json")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise RegistryError(f"alias file {path} is not valid JSON: {exc}") from None
        return AliasState(version=str(data["version"]), set_at=data.get("set_at"),
                          reason=data.get("reason"), execution_id=data.get("execution_id"))

    def history(self, model: str, alias: str) -> list[HistoryEntry]:
        """Every change of `alias`, oldest first."""
        path = self._alias_path(model, alias, ".history.jsonl")
        if not path.exists():
            return []
        entries = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                entries.append(HistoryEntry(
                    time=data["time"], from_version=data.get("from"), to_version=str(data["to"]),
                    reason=data.get("reason"), execution_id=data.get("execution_id"),
                    step_id=data.get("step_id"), kind=data.get("kind", "set")))
            except (ValueError, KeyError) as exc:
                raise RegistryError(f"{path} line {number} is not a history entry: {exc}"
                                    ) from None
        return entries

    def read_manifest(self, model: str, version: str) -> dict[str, Expected]:
        """The manifest of one version; raises RegistryError when missing or invalid."""
        path = self.version_dir(model, version) / MANIFEST_NAME
        try:
            if self._own(path).stat().st_size > MAX_MANIFEST_BYTES:
                raise RegistryError(f"manifest {path} is larger than {MAX_MANIFEST_BYTES} bytes")
            return parse_manifest(path.read_bytes(), source=str(path))
        except FileNotFoundError:
            raise RegistryError(f"version {version} of model {model!r} has no manifest "
                                f"({path} is missing)") from None
        except ManifestError as exc:
            raise RegistryError(str(exc)) from None

    def verify(self, model: str, version: str, stop: threading.Event | None = None,
               ) -> list[Problem]:
        """The files of a version that do not match its manifest (empty when it verifies)."""
        self.require_model(model)
        folder = self.version_dir(model, version)
        if not folder.is_dir():
            raise RegistryError(f"model {model!r} has no version {version} "
                                f"(versions: {', '.join(self.list_versions(model)) or 'none'})")
        manifest = self.read_manifest(model, version)
        for name in manifest:
            self._own(folder / name)
        return verify_dir(folder, manifest, stop)

    def resolve_previous(self, model: str, alias: str, stop: threading.Event | None = None,
                         ) -> Rollback:
        """The last version that held `alias` before the current one and still verifies."""
        current = self.get_alias(model, alias)
        if current is None:
            raise RegistryError(f"alias {alias!r} of model {model!r} is not set, "
                                "so it has no previous version")
        skipped: list[tuple[str, str]] = []
        seen = {current.version}
        for entry in reversed(self.history(model, alias)):
            for candidate in (entry.to_version, entry.from_version):
                if candidate is None or candidate in seen:
                    continue
                seen.add(candidate)
                reason = self._unusable(model, candidate, stop)
                if reason is None:
                    return Rollback(candidate, tuple(skipped))
                skipped.append((candidate, reason))
        detail = "; ".join(f"version {v}: {r}" for v, r in skipped)
        raise RegistryError(
            f"alias {alias!r} of model {model!r} has no previous version to go back to "
            f"(current {current.version}" + (f"; skipped {detail})" if detail else ")"))

    def _unusable(self, model: str, version: str, stop: threading.Event | None) -> str | None:
        try:
            problems = self.verify(model, version, stop)
        except RegistryError as exc:
            return str(exc)
        if problems:
            return "fails verification: " + "; ".join(p.describe() for p in problems[:3])
        return None

    def set_alias(self, model: str, alias: str, version: str, *, reason: str | None = None,
                  execution_id: int | None = None, step_id: str | None = None,
                  kind: str = "set") -> AliasChange:
        """Point `alias` at `version`; setting it to its current version changes nothing."""
        version = str(version)
        if not self.version_dir(model, version).is_dir():
            self.require_model(model)
            raise RegistryError(f"model {model!r} has no version {version} "
                                f"(versions: {', '.join(self.list_versions(model)) or 'none'})")
        with self._locked(model, alias):
            current = self.get_alias(model, alias)
            previous = current.version if current else None
            if previous == version:
                return AliasChange(model, alias, previous, version)
            now = _now()
            # History first, alias second: a crash in between leaves an entry that names this
            # step, so a retry completes the move instead of computing `previous` afresh.
            history = self.history(model, alias)
            last = history[-1] if history else None
            resuming = (execution_id is not None and last is not None and
                        (last.to_version, last.execution_id, last.step_id, last.kind)
                        == (version, execution_id, step_id, kind))
            if not resuming:
                entry = {"time": now, "from": previous, "to": version, "reason": reason,
                         "execution_id": execution_id, "step_id": step_id, "kind": kind}
                _append_line(self._alias_path(model, alias, ".history.jsonl"),
                             json.dumps(entry))
            state = AliasState(version=version, set_at=now, reason=reason,
                               execution_id=execution_id)
            atomic_write(self._alias_path(model, alias, ".json"),
                         json.dumps(asdict(state), indent=2).encode())
            return AliasChange(model, alias, previous, version)

    def add_version(self, model: str, version: str, files: dict[str, bytes]) -> Path:
        """Write a version's files and its manifest; an existing version is left untouched."""
        folder = self.version_dir(model, version)
        if (folder / MANIFEST_NAME).exists():
            return folder
        for name, data in files.items():
            atomic_write(folder / name, data)
        atomic_write(folder / MANIFEST_NAME,
                     json.dumps(build_manifest(folder), indent=2, sort_keys=True).encode())
        return folder


DEMO_MODEL = "demo-model"


def create_demo_registry(path: Path) -> None:
    """Write `demo-model` versions 1 and 2 with champion -> 2 (history 1 then 2); re-runnable."""
    registry = ModelRegistry(path)
    for version in ("1", "2"):
        registry.add_version(DEMO_MODEL, version, {
            "model.txt": f"demo-model weights, version {version}\n".encode(),
            "config.json": json.dumps({"version": int(version), "threshold": 0.5}).encode(),
        })
    # Only a registry without a champion gets the demo history: never clobber real aliases.
    if registry.get_alias(DEMO_MODEL, "champion") is None:
        registry.set_alias(DEMO_MODEL, "champion", "1", reason="demo: first release")
        registry.set_alias(DEMO_MODEL, "champion", "2", reason="demo: second release")
