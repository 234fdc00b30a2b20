"""Installing runbookd prints no `project.license` warning: the licence is an SPDX string
(PEP 639), and the build asks for a setuptools that understands it (issue 15)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_license_is_an_spdx_string_without_a_classifier():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert not [c for c in project["project"].get("classifiers", []) if "License ::" in c]
    # PEP 639's string form needs setuptools 77; an older one rejects it.
    assert "setuptools>=77" in project["build-system"]["requires"]


def test_the_metadata_builds_without_a_license_warning(tmp_path):
    # A copy, so the build's egg-info lands in tmp_path and not in the working tree.
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "README.md", tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    out = tmp_path / "meta"
    out.mkdir()
    build = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "import sys; from setuptools import build_meta as b; "
         "print(b.prepare_metadata_for_build_editable(sys.argv[1]))", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert build.returncode == 0, build.stderr
    assert "license" not in build.stderr.lower(), build.stderr
    metadata = (out / build.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata
