"""Load the catalog: parse every file, run every lint check, and refuse the whole catalog if
any check reports an error; warnings ride along."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.catalog.lint import analyse
from app.catalog.matcher import CompiledMapping, match_mappings
from app.catalog.parser import ActionSpecs, Issue, catalog_files
from app.catalog.schema import Runbook, StormBrake
from app.errors import CatalogInvalid


def runbook_version(content: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a runbook's normalised content."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def normalised(runbook: Runbook) -> dict[str, Any]:
    """The content that is hashed and stored: every field, defaults filled, by alias."""
    return runbook.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class LoadedRunbook:
    runbook: Runbook
    version: str
    content: dict[str, Any]
    path: str


@dataclass(frozen=True)
class Catalog:
    """One consistent, validated catalog. Replaced whole on reload, never mutated."""

    runbooks: dict[str, LoadedRunbook]
    mappings: tuple[CompiledMapping, ...]
    loaded_at: dt.datetime
    warnings: tuple[Issue, ...] = ()
    mappings_path: str = ""
    brake: StormBrake | None = None  # the global storm brake (the mappings file's `brake:`)

    def match(self, labels: Mapping[str, str]) -> list[tuple[CompiledMapping, LoadedRunbook]]:
        """The mappings that take an alert with these labels, each with its runbook."""
        return [(m, self.runbooks[m.runbook]) for m in match_mappings(self.mappings, labels)]

    def get(self, runbook_id: str) -> LoadedRunbook | None:
        return self.runbooks.get(runbook_id)


def load_catalog(
    mappings_path: Path | str, remediations_dir: Path | str, *,
    action_names: Iterable[str] | ActionSpecs | None,
    today: dt.date | None = None,
) -> Catalog:
    """Load and check the whole catalog; raises CatalogInvalid listing every error.

    `action_names` may map names to their Params models, so that `with:` keys are checked.
    """
    mappings_path, remediations_dir = Path(mappings_path), Path(remediations_dir)
    if not remediations_dir.is_dir():
        raise CatalogInvalid(
            f"the catalog is invalid: {remediations_dir} is not a directory",
            details=[f"{remediations_dir}:1:1: the remediations directory does not exist"])
    result = analyse(
        [mappings_path, *catalog_files(remediations_dir)], actions=action_names, today=today)
    errors = [i for i in result.issues if i.severity == "error"]
    if errors:
        raise CatalogInvalid(
            f"the catalog is invalid: {len(errors)} error(s); the first: {errors[0].short()}",
            details=[i.short() for i in errors],
        )
    runbooks = {}
    for parsed in result.runbooks:
        assert parsed.runbook is not None
        content = normalised(parsed.runbook)
        runbooks[parsed.runbook.id] = LoadedRunbook(
            parsed.runbook, runbook_version(content), content, parsed.doc.path)
    return Catalog(
        runbooks=runbooks, mappings=tuple(result.mappings),
        loaded_at=dt.datetime.now(dt.UTC),
        warnings=tuple(i for i in result.issues if i.severity == "warning"),
        mappings_path=str(mappings_path), brake=result.brake,
    )

