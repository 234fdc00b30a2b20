"""An MLflow model version's files, read and checked through MLflow and nothing else.

Where they are read. A version under MLflow's artifact proxy (`mlflow-artifacts:/…`) is read
through the proxy's REST API. Any other version (a run or logged model whose store is s3://,
gs://, azure, a file system the server mounts; sources written as runs:/ or models:/) is read
through the tracking server's model-version download endpoint, `/model-versions/get-artifact`,
which resolves the version's storage location on the server with the server's own credentials.
runbookd never talks to a store itself: it holds no cloud credentials, and it checks exactly
the bytes that MLflow serves. When the server cannot read the store, the error says which
setting to change.

What is checked is the step's `manifest:` policy:
  require        manifest.json among the version's files gives each file's sha256 (and size);
                 a version without one is unverifiable.
  if_present     the same when there is a manifest; a version without one passes unchecked.
  run_artifacts  every file MLflow lists for the version (its run's or logged model's artifact
                 listing) must read back whole at the size MLflow lists, and files a manifest
                 names must match its sha256 too. MLflow records sizes, not digests, so without
                 a manifest this catches missing, truncated and unreadable files and a version
                 with no files, not a same-size change; the output carries a checksum of the
                 whole version (sha256 over each file's path, size and sha256) to compare later.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from app.actions._support import error_detail, outbound_failure
from app.actions.base import ActionFailed
from app.actions.checksums import (
    MAX_MANIFEST_BYTES,
    Digest,
    Expected,
    ManifestError,
    Problem,
    compare,
    parse_manifest,
    safe_relative,
)
from app.actions.downloads import digest_body, small_body
from app.actions.mlflow_client import ARTIFACTS, Mlflow

if TYPE_CHECKING:  # imported where used: not at start-up (app/outbound.py says why)
    import httpx

ManifestPolicy = Literal["require", "if_present", "run_artifacts"]
# A listing walks one directory per call: bound the walk, and the files it would hash.
MAX_FILES = 10_000
MAX_DIRS = 1_000


class Unverifiable(ActionFailed):
    """A version that the policy cannot check: no manifest under `require`, or no files.
    `reason` says why without naming the version, for a rollback's list of skipped ones."""

    def __init__(self, label: str, reason: str):
        super().__init__(f"{label} {reason}")
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class Verification:
    """What a check found: files checked, the ones that failed, and on what it relied."""

    checked: int
    problems: list[Problem] = field(default_factory=list)
    # The check in a few words, for summaries: "match manifest.json", …
    basis: str
    # sha256 over every file's path, size and sha256 (run_artifacts only).
    checksum: str | None = None


@dataclass(frozen=True)
class VersionFiles:
    """Where one version's files are read: through the proxy, or MLflow's download API."""

    api: Mlflow
    model: str
    found: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.found.get("version"))

    @property
    def label(self) -> str:
        return f"{self.model} version {self.version}"

    @property
    def source(self) -> str:
        return str(self.found.get("source", ""))

    @property
    def proxied(self) -> bool:
        return self.source.startswith("mlflow-artifacts:")

    def url(self, name: str) -> httpx.URL:
        """The URL that serves the file `name` (relative to the version's root)."""
        import httpx

        if self.proxied:
            root = urlsplit(self.source).path.strip("/")
            return httpx.URL(f"{self.api.base}{ARTIFACTS}/{quote(root)}/{quote(name)}")
        return httpx.URL(f"{self.api.base}/model-versions/get-artifact",
                         params={"name": self.model, "version": self.version, "path": name})

    @contextlib.asynccontextmanager
    async def open(self, name: str) -> AsyncIterator[httpx.Response | None]:
        """A streamed read of one file; None when MLflow says it does not exist."""
        url = self.url(name)
        doing = f"reading {self.label}"
        try:
            async with self.api.ctx.http.stream("GET", url,
                                                headers=self.api.headers) as response:
                if response.status_code == 404:
                    yield None
                    return
                if response.status_code != 200:
                    await response.aread()
                    raise self._refused(response, name)
                yield response
        except ActionFailed:
            raise
        except Exception as exc:
            raise outbound_failure(exc, url=url, doing=doing) from exc

    def _refused(self, response: httpx.Response, name: str) -> ActionFailed:
        detail = f"answered {response.status_code} for {name}: {error_detail(response)}"
        if self.proxied:
            return ActionFailed(f"reading {self.label} through the artifact proxy of MLflow at "
                                f"{self.api.host}: it {detail}")
        return store_unreadable(self.api, self.label, self.source, detail)

    async def digest(self, name: str) -> Digest | None:
        """sha256 and size of one file, streamed; None when it does not exist."""
        async with self.open(name) as response:
            return None if response is None else await digest_body(response)

    async def small(self, name: str) -> bytes | None:
        """A small file (a manifest), refused past MAX_MANIFEST_BYTES; None when absent."""
        async with self.open(name) as response:
            if response is None:
                return None
            return await small_body(response, limit=MAX_MANIFEST_BYTES,
                                    too_big=f"{name} of {self.label} is larger than "
                                            f"{MAX_MANIFEST_BYTES} bytes")

    async def listing(self) -> dict[str, int]:
        """Every file MLflow lists for the version: relative path -> size."""
        lister = await self._lister()
        files: dict[str, int] = {}
        pending, walked = [""], 0
        while pending:
            folder = pending.pop()
            walked += 1
            if walked > MAX_DIRS or len(files) > MAX_FILES:
                raise ActionFailed(f"{self.label} has more than {MAX_FILES} files or "
                                   f"{MAX_DIRS} folders: too many to check one by one")
            for path, is_dir, size in await lister(folder):
                try:
                    path = safe_relative(path)
                except ManifestError:
                    raise ActionFailed(f"MLflow at {self.api.host} lists {path!r} among the "
                                       f"files of {self.label}: not a safe relative path"
                                       ) from None
                if is_dir:
                    pending.append(path)
                else:
                    files[path] = size
        return files

    async def _lister(self) -> Any:
        """A function listing one folder of the version, from the API that knows its files."""
        source = self.source
        if source.startswith("runs:/"):
            run_id, _, sub = source.removeprefix("runs:/").partition("/")
            return self._run_lister(run_id, sub.strip("/"))
        if source.startswith("models:/m-"):
            return self._logged_model_lister(source.removeprefix("models:/").strip("/"))
        if self.proxied:
            return self._proxy_lister(urlsplit(source).path.strip("/"))
        run_id = str(self.found.get("run_id") or "")
        if run_id:
            run = await self.api.call("GET", "runs/get", params={"run_id": run_id},
                                      doing=f"reading run {run_id} of {self.label}")
            assert run is not None
            root = str(run["run"]["info"]["artifact_uri"]).rstrip("/")
            if source == root or source.startswith(root + "/"):
                return self._run_lister(run_id, source[len(root):].strip("/"))
        raise ActionFailed(
            f"{self.label}: MLflow cannot list the files of source {source!r} (it lists a "
            "run's or a logged model's artifacts, and this version belongs to neither): use "
            "manifest: require or if_present for it")

    def _run_lister(self, run_id: str, sub: str) -> Any:
        async def list_folder(folder: str) -> list[tuple[str, bool, int]]:
            path = "/".join(p for p in (sub, folder) if p)
            entries = await self._paged("artifacts/list", {"run_id": run_id, "path": path})
            return [(_under(e["path"], sub), bool(e.get("is_dir")), int(e.get("file_size", 0)))
                    for e in entries]
        return list_folder

    def _logged_model_lister(self, model_id: str) -> Any:
        async def list_folder(folder: str) -> list[tuple[str, bool, int]]:
            params = {"artifact_directory_path": folder} if folder else {}
            entries = await self._paged(f"logged-models/{quote(model_id)}/artifacts/directories",
                                        params)
            return [(e["path"], bool(e.get("is_dir")), int(e.get("file_size", 0)))
                    for e in entries]
        return list_folder

    def _proxy_lister(self, root: str) -> Any:
        async def list_folder(folder: str) -> list[tuple[str, bool, int]]:
            url = f"{self.api.base}{ARTIFACTS}"
            path = "/".join(p for p in (root, folder) if p)
            try:
                response = await self.api.ctx.http.request("GET", url, params={"path": path},
                                                           headers=self.api.headers)
            except Exception as exc:
                raise outbound_failure(exc, url=url, doing=f"listing {self.label}") from exc
            if response.status_code != 200:
                raise self._refused(response, folder or "its listing")
            # The proxy names each entry relative to the folder asked for.
            return [("/".join(p for p in (folder, e["path"]) if p), bool(e.get("is_dir")),
                     int(e.get("file_size", 0))) for e in response.json().get("files", [])]
        return list_folder

    async def _paged(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        token = None
        while True:
            page = await self.api.call("GET", path, doing=f"listing {self.label}",
                                       params={**params, **({"page_token": token} if token
                                                            else {})})
            assert page is not None
            entries += page.get("files", [])
            token = page.get("next_page_token")
            if not token or len(entries) > MAX_FILES:
                return entries


def _under(path: str, sub: str) -> str:
    """A run-relative path made relative to the version's folder `sub` inside the run."""
    return path[len(sub) + 1:] if sub and path.startswith(sub + "/") else path


def store_unreadable(api: Mlflow, label: str, source: str, detail: str) -> ActionFailed:
    """The server could not read a store it does not proxy: say which setting to change."""
    parts = urlsplit(source)
    scheme = parts.scheme or "file"
    store = f"{scheme}://{parts.netloc}" if parts.netloc else f"{scheme}://"
    return ActionFailed(
        f"reading {label} from {store} through MLflow at {api.host}: it {detail}. runbookd "
        f"reads a version's files only through MLflow, so the MLflow server must be able to "
        f"read {scheme}:// itself: give it that store's client library and credentials, or "
        f"log models through its artifact proxy (`mlflow server --serve-artifacts "
        f"--artifacts-destination {scheme}://…`); or set `verify: false` on this step")


async def verify_files(api: Mlflow, model: str, found: dict[str, Any], *,
                       policy: ManifestPolicy, manifest_file: str) -> Verification:
    """Check a version's files as the policy says (reads only)."""
    files = VersionFiles(api, model, found)
    if policy == "run_artifacts":
        return await _against_listing(files, manifest_file)
    manifest = await _manifest(files, manifest_file)
    if manifest is None:
        if policy == "require":
            raise Unverifiable(files.label, f"has no {manifest_file} among its artifacts "
                               "(manifest: require; use manifest: if_present or run_artifacts "
                               "for versions logged without one)")
        return Verification(checked=0, basis=f"no {manifest_file}: nothing checked "
                                             "(manifest: if_present)")
    problems = []
    for name, expected in sorted(manifest.items()):
        digest = await files.digest(name)
        problem = Problem(name, "missing") if digest is None else compare(name, expected, digest)
        if problem:
            problems.append(problem)
    return Verification(checked=len(manifest), problems=problems,
                        basis=f"match {manifest_file}")


async def _manifest(files: VersionFiles, name: str) -> dict[str, Expected] | None:
    raw = await files.small(name)
    if raw is None:
        return None
    try:
        return parse_manifest(raw, source=f"{name} of {files.label}")
    except ManifestError as exc:
        raise ActionFailed(str(exc)) from None


async def _against_listing(files: VersionFiles, manifest_file: str) -> Verification:
    listed = await files.listing()
    if not listed:
        raise Unverifiable(files.label, "has no files: MLflow lists none under its source "
                           f"{files.source!r}")
    manifest = await _manifest(files, manifest_file) if manifest_file in listed else None
    problems: list[Problem] = []
    lines = []
    for name, size in sorted(listed.items()):
        digest = await files.digest(name)
        if digest is None:
            problems.append(Problem(name, "missing"))
            continue
        lines.append(f"{name}\t{digest.size}\t{digest.sha256}")
        expected = Expected(sha256=None, size=size)
        if manifest and name in manifest:
            expected = Expected(sha256=manifest[name].sha256,
                                size=manifest[name].size if manifest[name].size is not None
                                else size)
        if problem := compare(name, expected, digest):
            problems.append(problem)
    problems += [Problem(name, "missing") for name in sorted(set(manifest or {}) - set(listed))]
    checksum = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return Verification(checked=len(listed), problems=problems, checksum=checksum,
                        basis="MLflow lists read back whole (manifest: run_artifacts)")

