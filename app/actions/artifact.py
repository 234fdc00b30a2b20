"""`artifact.verify`: check a model artifact against a sha256, a size or a manifest.

The artifact is a local path, a `file://` URL or an `http(s)` URL (fetched through the
allow-listed client). Every file is streamed through sha256 in chunks, never loaded whole.
Local files (the artifact, its manifest, each file the manifest lists) are read only under
RUNBOOKD_ARTIFACT_ROOTS, symlinks resolved; a path with a `..` component is refused.

`manifest` says where the expected digests come from:
- `true`: `manifest.json` beside the artifact: inside it when the artifact is a directory (an
  http URL ending in `/` counts as one), in the same directory when it is a single file;
- a path or URL of a manifest file (a relative name is looked up beside the artifact); its
  entries are relative to the artifact directory;
- `registry:<model>/<version>` or `registry:<model>@<alias>`: the manifest of that version in
  the embedded registry, e.g. to check that a deployed copy is the one the registry holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlsplit
from urllib.request import url2pathname

from pydantic import Field, model_validator

from app.actions.base import ActionContext, ActionFailed, ActionParams, ActionResult
from app.actions.checksums import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    Digest,
    Expected,
    ManifestError,
    Problem,
    compare,
    hash_file,
    in_thread,
    parse_manifest,
    verify_dir,
    walk_files,
)
from app.actions.downloads import display, fetch_small, stream_digest
from app.actions.embedded_registry import ModelRegistry, RegistryError

# Enough to say what is wrong without flooding the step output.
MAX_REPORTED = 20
ROOTS_SETTING = "RUNBOOKD_ARTIFACT_ROOTS"


class VerifyParams(ActionParams):
    uri: str = Field(min_length=1, max_length=4096)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    size: int | None = Field(default=None, ge=0)
    manifest: bool | str | None = None

    @model_validator(mode="after")
    def _something_to_check(self) -> VerifyParams:
        if self.sha256 is None and self.size is None and not self.manifest:
            raise ValueError("artifact.verify needs `sha256`, `size` or `manifest`")
        if self.manifest and (self.sha256 is not None or self.size is not None):
            raise ValueError("give either `manifest` or `sha256`/`size`, not both")
        return self


def is_http(uri: str) -> bool:
    """Whether the artifact is fetched over HTTP (else it is a local path or file:// URL)."""
    return uri.startswith(("http://", "https://"))


def local_path(uri: str, roots: Sequence[Path]) -> Path:
    """A local path or a `file://` URL as a Path, refused unless it lies under one of `roots`."""
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise ActionFailed(f"file URL {uri!r} names a remote host; only local files work")
        return confine(Path(url2pathname(parts.path)), roots)
    return confine(Path(uri), roots)


def confine(path: Path, roots: Sequence[Path]) -> Path:
    """`path` itself if, symlinks resolved, it lies under one of `roots`; else ActionFailed.

    A `..` component is refused outright, even one that would resolve inside a root: a path
    that climbs is a path nobody should have to reason about.
    """
    if ".." in path.parts:
        raise ActionFailed(f"local path {str(path)[:200]!r} has a '..' component; write the "
                           f"path without it (local files are read only under "
                           f"{ROOTS_SETTING})")
    try:
        resolved = path.resolve()
        bases = [root.resolve() for root in roots]
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
        raise ActionFailed(f"local path {str(path)[:200]!r} cannot be resolved: {exc}") from None
    if any(resolved.is_relative_to(base) for base in bases):
        return path
    shown = ", ".join(str(root) for root in roots)
    raise ActionFailed(f"local path {str(path)[:200]!r} is outside the artifact roots "
                       f"({shown}); to allow it, add a directory that holds it to "
                       f"{ROOTS_SETTING} (comma-separated)")


def _confine_entries(root: Path, names: Sequence[str], roots: Sequence[Path]) -> None:
    # Manifest entries are safe relative names, but a symlink among them could still lead out.
    for name in names:
        confine(root / name, roots)


def _read_local_manifest(path: Path) -> bytes:
    if not path.is_file():
        raise ActionFailed(f"manifest {path} does not exist")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ActionFailed(f"manifest {path} is larger than {MAX_MANIFEST_BYTES} bytes")
    return path.read_bytes()


class ArtifactVerify:
    name: ClassVar[str] = "artifact.verify"
    Params = VerifyParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = (
        "Checks a model artifact (path, file:// or http(s) URL) against sha256/size or a "
        "manifest; streams every file and names each one that fails."
    )

    async def run(self, ctx: ActionContext, params: VerifyParams) -> ActionResult:
        doing = f"artifact.verify {display(params.uri) if is_http(params.uri) else params.uri}"
        if params.manifest:
            problems, checked, extra = await self._against_manifest(ctx, params, doing)
            output: dict[str, Any] = {"uri": params.uri, "files_checked": checked}
            if extra:
                output["unlisted"] = extra[:MAX_REPORTED]
        else:
            digest = await self._digest(ctx, params.uri, doing)
            expected = Expected(params.sha256.lower() if params.sha256 else None, params.size)
            problem = compare(Path(params.uri).name or params.uri, expected, digest)
            problems = [problem] if problem else []
            output = {"uri": params.uri, "files_checked": 1, "sha256": digest.sha256,
                      "size": digest.size}
        output["failed"] = [p.as_dict() for p in problems[:MAX_REPORTED]]
        output["ok"] = not problems
        prefix = "dry run (read-only, ran for real): " if ctx.dry_run else ""
        if problems:
            listed = "; ".join(p.describe() for p in problems[:5])
            more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise ActionFailed(f"{prefix}artifact {params.uri} failed verification: "
                               f"{len(problems)} of {output['files_checked']} file(s) bad: "
                               f"{listed}{more}", output=output)
        what = (f"{output['files_checked']} file(s) match the manifest" if params.manifest
                else "matches the expected " + " and ".join(
                    k for k in ("sha256", "size") if getattr(params, k) is not None))
        return ActionResult(f"{prefix}artifact {params.uri}: {what}", output)

    async def _digest(self, ctx: ActionContext, uri: str, doing: str) -> Digest:
        if is_http(uri):
            digest = await stream_digest(ctx, uri, doing=doing)
            if digest is None:
                raise ActionFailed(f"{doing}: GET {display(uri)} answered 404: no such artifact")
            return digest
        path = local_path(uri, ctx.settings.artifact_root_paths)
        if path.is_dir():
            raise ActionFailed(f"{path} is a directory: verify it with `manifest`")
        if not path.is_file():
            raise ActionFailed(f"artifact file {path} does not exist")
        try:
            return await in_thread(hash_file, path)
        except OSError as exc:
            raise ActionFailed(f"cannot read artifact file {path}: {exc.strerror}") from None

    async def _against_manifest(self, ctx: ActionContext, params: VerifyParams, doing: str,
                                ) -> tuple[list[Problem], int, list[str]]:
        uri = params.uri
        if is_http(uri):
            base, single = (uri, None) if uri.endswith("/") else (
                uri.rsplit("/", 1)[0] + "/", unquote(uri.rsplit("/", 1)[1]))
        else:
            path = local_path(uri, ctx.settings.artifact_root_paths)
            if not path.exists():
                raise ActionFailed(f"artifact {path} does not exist")
            base, single = (str(path), None) if path.is_dir() else (str(path.parent), path.name)
        manifest = await self._load_manifest(ctx, params.manifest, base, doing)
        if single is not None:
            if single not in manifest:
                raise ActionFailed(f"the manifest has no entry for {single!r}")
            manifest = {single: manifest[single]}
        if is_http(uri):
            problems = []
            for name, expected in sorted(manifest.items()):
                digest = await stream_digest(ctx, base + quote(name), doing=doing)
                problem = (Problem(name, "missing") if digest is None
                           else compare(name, expected, digest))
                if problem:
                    problems.append(problem)
            return problems, len(manifest), []
        root = Path(base)
        await asyncio.to_thread(_confine_entries, root, list(manifest),
                                ctx.settings.artifact_root_paths)
        problems = await in_thread(verify_dir, root, manifest)
        # Files the manifest does not list are reported, not failed (the manifest file too).
        own = {params.manifest} if isinstance(params.manifest, str) else set()
        extra = [] if single else await asyncio.to_thread(
            lambda: [f for f in walk_files(root) if f not in manifest and f not in own])
        return problems, len(manifest), extra

    async def _load_manifest(self, ctx: ActionContext, manifest: bool | str | None,
                             base: str, doing: str) -> dict[str, Expected]:
        if isinstance(manifest, str) and manifest.startswith("registry:"):
            return await asyncio.to_thread(self._registry_manifest, ctx, manifest)
        name = MANIFEST_NAME if manifest is True else str(manifest)
        absolute = is_http(name) or name.startswith("file:") or Path(name).is_absolute()
        # A relative manifest name lives beside the artifact, wherever the artifact is.
        location = name if absolute else base.rstrip("/") + "/" + (
            quote(name) if is_http(base) else name)
        if is_http(location):
            raw = await fetch_small(ctx, location, doing=doing)
            if raw is None:
                raise ActionFailed(f"{doing}: manifest {display(location)} answered 404")
        else:
            path = local_path(location, ctx.settings.artifact_root_paths)
            raw = await asyncio.to_thread(_read_local_manifest, path)
        try:
            return parse_manifest(raw, source=location)
        except ManifestError as exc:
            raise ActionFailed(str(exc)) from None

    @staticmethod
    def _registry_manifest(ctx: ActionContext, ref: str) -> dict[str, Expected]:
        target = ref.removeprefix("registry:")
        registry = ModelRegistry(ctx.settings.registry_dir)
        try:
            if "@" in target:
                model, alias = target.split("@", 1)
                state = registry.get_alias(model, alias)
                if state is None:
                    raise ActionFailed(f"alias {alias!r} of model {model!r} is not set")
                version = state.version
            elif "/" in target:
                model, version = target.split("/", 1)
            else:
                raise ActionFailed(f"manifest {ref!r}: write registry:<model>/<version> "
                                   "or registry:<model>@<alias>")
            return registry.read_manifest(model, version)
        except RegistryError as exc:
            raise ActionFailed(str(exc)) from None
