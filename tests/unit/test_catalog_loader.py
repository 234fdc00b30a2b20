"""The loader: a valid catalog loads with stable versions; an invalid one lists every error."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path

import pytest
import yaml

from app.catalog.loader import load_catalog, runbook_version
from app.catalog.parser import read_yaml
from app.catalog.schema import Runbook
from app.errors import CatalogInvalid
from tests.support.catalog_fixtures import (
    ACTIONS,
    DRIFT_LABELS,
    MAPPINGS,
    line_of,
    runbook_text,
    write_catalog,
)

ROOT = Path(__file__).resolve().parents[2]


def load(tmp_path, runbooks=None, mappings=MAPPINGS, **kw):
    mappings_path, remediations = write_catalog(tmp_path, runbooks, mappings)
    return load_catalog(mappings_path, remediations, action_names=ACTIONS,
                        today=kw.pop("today", dt.date(2026, 11, 26)), **kw)


def test_a_valid_catalog_loads(tmp_path):
    catalog = load(tmp_path)
    loaded = catalog.runbooks["drift"]
    assert loaded.runbook.steps[1].approvals.count == 2
    assert loaded.path.endswith("remediations/drift.yaml")
    assert [m.name for m in catalog.mappings] == ["to-drift"]
    assert catalog.warnings == ()
    assert [(m.name, lr.runbook.id) for m, lr in catalog.match(DRIFT_LABELS)] == [
        ("to-drift", "drift")]
    assert catalog.match({"alertname": "Drift", "severity": "info"}) == []


def test_the_version_is_the_sha256_of_the_canonical_content(tmp_path):
    loaded = load(tmp_path).runbooks["drift"]
    canonical = json.dumps(loaded.content, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    assert loaded.version == hashlib.sha256(canonical.encode()).hexdigest()
    assert loaded.content == loaded.runbook.model_dump(mode="json", by_alias=True)


def test_the_version_ignores_formatting_but_not_content(tmp_path):
    first = load(tmp_path / "a").runbooks["drift"].version
    # Comments, key order, flow vs block style and the `approvals: 1` shorthand normalise away.
    data = yaml.safe_load(runbook_text())
    reordered = yaml.safe_dump(dict(reversed(list(data.items()))), default_flow_style=False)
    same = load(tmp_path / "b", {"drift": "# a comment\n" + reordered}).runbooks["drift"]
    assert same.version == first
    changed = load(tmp_path / "c", {"drift": runbook_text(
        replace={"title: Check the drift": "title: Check the drift now"})})
    assert changed.runbooks["drift"].version != first


def test_stored_content_parses_back_to_the_same_runbook(tmp_path):
    loaded = load(tmp_path).runbooks["drift"]
    again = Runbook.model_validate(loaded.content)
    assert again == loaded.runbook
    assert runbook_version(again.model_dump(mode="json", by_alias=True)) == loaded.version


def test_an_invalid_catalog_lists_every_error_with_its_position(tmp_path):
    bad = runbook_text(replace={"severity: critical": "severity: urgent"})
    broken_mappings = MAPPINGS.replace("runbook: drift", "runbook: nope")
    with pytest.raises(CatalogInvalid) as caught:
        load(tmp_path, {"drift": bad, "syntax": "id: x\n  title: [\n"}, broken_mappings)
    details = caught.value.details
    assert len(details) == 3, details
    severity_line = line_of(bad, "severity: urgent")
    assert any(d.endswith(f"drift.yaml:{severity_line}:11: severity: Input should be "
                          "'critical', 'high', 'warning' or 'info'") for d in details)
    assert any("syntax.yaml:2:" in d and "YAML syntax error" in d for d in details)
    assert any("alert_mappings.yaml:4:14: mapping 'to-drift' names runbook 'nope'" in d
               for d in details)
    assert caught.value.status_code == 400
    assert "3 error(s)" in caught.value.message


def test_warnings_do_not_stop_a_load(tmp_path):
    catalog = load(tmp_path, today=dt.date(2027, 6, 1))
    assert "drift" in catalog.runbooks
    assert [w.severity for w in catalog.warnings] == ["warning"]
    assert "review overdue" in catalog.warnings[0].message


def test_missing_files_are_errors(tmp_path):
    with pytest.raises(CatalogInvalid, match="not a directory"):
        load_catalog(tmp_path / "m.yaml", tmp_path / "nowhere", action_names=ACTIONS)
    (tmp_path / "remediations").mkdir()
    with pytest.raises(CatalogInvalid) as caught:
        load_catalog(tmp_path / "m.yaml", tmp_path / "remediations", action_names=ACTIONS)
    assert caught.value.details == [f"{tmp_path / 'm.yaml'}:1:1: file not found"]


def test_an_empty_or_non_mapping_file_is_an_error(tmp_path):
    with pytest.raises(CatalogInvalid) as caught:
        load(tmp_path, {"drift": runbook_text(), "empty": "", "list": "- a\n- b\n"})
    assert any("empty.yaml:1:1: the file is empty" in d for d in caught.value.details)
    assert any("list.yaml:1:1: the file is a list" in d for d in caught.value.details)


def test_read_yaml_keeps_positions_of_keys_and_values(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("a:\n  b: [1, {c: 2}]\n")
    doc, issues = read_yaml(path)
    assert issues == []
    assert doc.at(("a", "b", 1, "c")) == (2, 14)
    assert doc.at(("a", "b", 1, "c"), key=True) == (2, 11)
    assert doc.at(("a", "zzz", 9)) == (2, 3)  # the nearest ancestor in the file


def test_the_shipped_library_loads_fast():
    from app.actions.registry import default_registry
    from app.catalog.parser import registry_specs

    specs = registry_specs(default_registry())
    started = time.perf_counter()
    catalog = load_catalog(ROOT / "alert_mappings.yaml", ROOT / "remediations",
                           action_names=specs, today=dt.date(2026, 11, 26))
    elapsed = time.perf_counter() - started
    assert len(catalog.runbooks) >= 8
    assert elapsed < 1.0, f"loading took {elapsed:.2f}s"


def test_yaml_aliases_cannot_blow_up_the_loader(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(levels) + "\n")
    started = time.perf_counter()
    doc, issues = read_yaml(path)
    assert doc is None and "through YAML aliases" in issues[0].message
    assert time.perf_counter() - started < 1.0


def test_a_recursive_alias_is_an_error_not_a_crash(tmp_path):
    with pytest.raises(CatalogInvalid):
        load(tmp_path, {"drift": runbook_text(), "loop": "id: &x [*x]\n"})
