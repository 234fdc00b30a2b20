"""The suite's own safety nets: a hung test ends and says where, and a transaction an earlier
test left open cannot stop the next test's database from being emptied."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import _plain_pg, _truncate_pg

ROOT = Path(__file__).resolve().parents[2]


async def test_a_transaction_left_open_is_ended_and_the_database_emptied(pg_url):
    leftover = await asyncpg.connect(_plain_pg(pg_url))
    try:
        await leftover.execute(
            "INSERT INTO guards (key, engaged, kind, reason, updated_at, updated_by) "
            "VALUES ('global', true, 'manual', 'left by a test', now(), 'test')")
        await leftover.transaction().start()
        await leftover.execute("LOCK TABLE guards IN ACCESS SHARE MODE")
        with pytest.warns(UserWarning, match="left 1 transactions open"):
            await _truncate_pg(pg_url)
        assert leftover.is_closed()
    finally:
        leftover.terminate()
    check = await asyncpg.connect(_plain_pg(pg_url))
    try:
        assert await check.fetchval("SELECT count(*) FROM guards") == 0
    finally:
        await check.close()


def test_a_hung_test_prints_its_tasks_and_its_timeout_ends_it(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.support.hangs"]\n')
    (tmp_path / "test_hangs.py").write_text(textwrap.dedent("""
        import asyncio

        async def wait_for_ever():
            await asyncio.Event().wait()

        async def test_hangs():
            await asyncio.gather(wait_for_ever())
    """))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=3",
         "-o", "asyncio_mode=auto", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "test_hangs.py::test_hangs is still running after 2 s" in output, output
    assert "in wait_for_ever" in output, output  # the task's own stack, not the loop's
    assert "Timeout" in output, output
