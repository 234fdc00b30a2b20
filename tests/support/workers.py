"""How the suite shares pytest-xdist workers (`make test` runs `-n 2 --dist loadgroup`).

Each worker is a pytest session of its own, with its own temporary directory, SQLite template
and PostgreSQL database (tests/conftest.py). Two things need more than that:

- A peer started by a session- or module-scoped fixture would start once on every worker that
  needs it. The slow ones take 10-30 s to start and hundreds of MB to run, so the tests that use
  such a peer (defined in one conftest or module) form one xdist group: one worker runs them
  all, and the peer starts once per run.
- A test marked `alone` is timing-bound (SIGKILLs under load, leases of 2 s). It runs while no
  other test of the run does, so it sees the machine as a serial run would: a lock file shared
  by the run's workers is held shared by every test and exclusively by an `alone` test.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

SLOW_SHARED_PEERS = frozenset({"airflow", "mlflow", "mlflow_server"})


def worker_group(item: pytest.Item) -> str | None:
    """Where the slow shared peer a test uses is defined (its group), if it uses one."""
    # pytest keeps no public map from a test to its fixtures' definitions; plugins use this.
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    for name in sorted(SLOW_SHARED_PEERS & set(definitions)):
        closest = definitions[name][-1]
        if closest.scope in ("session", "package", "module"):
            return f"peers:{closest.baseid or '.'}"
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue  # grouped already (the drills group themselves)
        group = worker_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(trylast=True)  # after xdist has added each test's group to its id
def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail at once if xdist ignored the groups, as it silently does on some pytest releases:
    every slow peer would start on both workers."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items
            if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist ignored the xdist_group of {len(lost)} tests (first: {lost[0]}) "
            f"under pytest {pytest.__version__}: install the versions pyproject.toml's dev "
            "extras allow (.venv/bin/pip install -e '.[dev]')")


@pytest.fixture(scope="session")
def turn_locks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path] | None:
    """Under xdist, the run's turnstile and room lock files (in the directory that holds every
    worker's temporary directory); None in a run without workers."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    shared = tmp_path_factory.getbasetemp().parent
    return shared / "turnstile.lock", shared / "room.lock"


@pytest.fixture(autouse=True)
def take_turns(request: pytest.FixtureRequest,
               turn_locks: tuple[Path, Path] | None) -> Iterator[None]:
    """Hold the room shared for a test, or exclusively for an `alone` one. A test that wants
    the room alone holds the turnstile while it waits, so that tests starting meanwhile queue
    behind it instead of keeping it out for ever."""
    if turn_locks is None:
        yield
        return
    alone = request.node.get_closest_marker("alone") is not None
    with ExitStack() as held:
        turnstile, room = (held.enter_context(path.open("a")) for path in turn_locks)
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield
