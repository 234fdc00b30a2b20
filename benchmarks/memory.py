"""Idle memory of one runbookd process, next to a bare FastAPI app's (issue 17, target 9).

    .venv/bin/python benchmarks/memory.py [--runs 3] [--settle 10] [--venv PATH] [--breakdown]
                                          [--pg postgresql://postgres@127.0.0.1:5432/test]

Starts `runbookd serve` as `make run` does (RUNBOOKD_ENV=dev, SQLite, the shipped catalog),
waits until /-/healthy answers, lets it settle, and reads VmRSS from /proc. The same for two
floors on the same uvicorn: a bare FastAPI app with one route, and that app with an SQLAlchemy
async engine on aiosqlite (the DESIGN's "FastAPI + SQLAlchemy + a driver"). Prints the median
and range of each over --runs.

--venv measures another environment (a production install: `pip install .`, no dev tools);
--pg measures runbookd on PostgreSQL as well.
--breakdown runs runbookd once more under an import profiler and prints, per package, the
resident memory its own modules added while they were imported (code objects, the models and
tables they build), and what start-up added besides imports. It profiles `python -m app.serve`,
the process `runbookd serve` execs once it has checked the settings (an exec would replace the
profiler before it could report), with the same environment and arguments. The profiler's
own bookkeeping and page granularity make each figure approximate (±0.1 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port  # noqa: E402

BARE = '''
from fastapi import FastAPI

app = FastAPI()


@app.get("/-/healthy")
async def healthy() -> dict[str, str]:
    return {"status": "ok"}
'''

BARE_SQLALCHEMY = '''
import contextlib

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


@contextlib.asynccontextmanager
async def lifespan(app):
    engine = create_async_engine("sqlite+aiosqlite:///bare.db")
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/-/healthy")
async def healthy() -> dict[str, str]:
    return {"status": "ok"}
'''

# Run as `python -c PROFILER REPORT-FILE -m MODULE ARGS...`: `python -m MODULE ARGS...` with
# every module's import measured in resident memory; SIGUSR1 writes the report.
PROFILER = r'''
import collections, importlib.abc, os, signal, sys

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


own = collections.Counter()  # module -> bytes added by its own code, not its imports
stack = []


class Timed(importlib.abc.Loader):
    def __init__(self, inner, name):
        self.inner, self.name = inner, name

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        start = rss()
        stack.append(0)
        try:
            self.inner.exec_module(module)
        finally:
            nested, total = stack.pop(), rss() - start
            own[self.name] += total - nested
            if stack:
                stack[-1] += total

    def __getattr__(self, name):
        return getattr(self.inner, name)


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = Timed(spec.loader, name)
                return spec
        return None


def report(*_):
    packages = collections.Counter()
    for name, size in own.items():
        parts = name.split(".")
        packages[".".join(parts[:2]) if parts[0] == "app" else parts[0]] += size
    imports = sum(own.values())
    with open(report_file, "w") as out:
        print(f"{base / 2**20:.1f} {rss() / 2**20:.1f} {imports / 2**20:.1f}", file=out)
        for package, size in packages.most_common():
            print(f"{size / 2**20:.2f} {package}", file=out)


base = rss()
sys.meta_path.insert(0, Finder())
signal.signal(signal.SIGUSR1, report)
report_file, module, args = sys.argv[1], sys.argv[3], sys.argv[4:]
assert sys.argv[2] == "-m", sys.argv
sys.argv = [module, *args]
import runpy

runpy.run_module(module, run_name="__main__", alter_sys=True)
'''


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode} before serving")
        try:
            if httpx.get(f"{url}/-/healthy", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer /-/healthy in 60 s")


def idle_rss(argv: list[str], *, cwd: Path, env: dict[str, str], port: int, settle: float,
             before_stop: Callable[[subprocess.Popen[bytes]], None] | None = None) -> float:
    """Start argv, wait for /-/healthy, settle, and return its VmRSS in MiB."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        time.sleep(settle)
        rss = rss_mib(proc.pid)
        if before_stop is not None:
            before_stop(proc)
        return rss
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def runbookd_env(work: Path, database: str | None = None) -> dict[str, str]:
    """`make run`'s environment, with the shipped catalog; a fresh SQLite file by default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOKD_")}
    env.update({"RUNBOOKD_ENV": "dev",
                "RUNBOOKD_DATABASE_URL": database or f"sqlite+aiosqlite:///{work / 'runbookd.db'}",
                "RUNBOOKD_MAPPINGS": str(ROOT / "alert_mappings.yaml"),
                "RUNBOOKD_REMEDIATIONS_DIR": str(ROOT / "remediations")})
    return env


def migrate(work: Path, database: str | None = None) -> None:
    """The schema, by the checkout's runbookd: an installed one may not carry migrations/."""
    subprocess.run([str(Path(sys.executable).parent / "runbookd"), "db", "upgrade"], cwd=work,
                   env=runbookd_env(work, database), check=True, capture_output=True)


def measure_runbookd(bin_dir: Path, work: Path, settle: float,
                     database: str | None = None) -> float:
    env = runbookd_env(work, database)
    port = free_port()
    return idle_rss([str(bin_dir / "runbookd"), "serve", "--port", str(port)], cwd=work,
                    env=env, port=port, settle=settle)


def measure_bare(bin_dir: Path, work: Path, source: str, settle: float) -> float:
    (work / "bare_app.py").write_text(source)
    port = free_port()
    return idle_rss([str(bin_dir / "python"), "-m", "uvicorn", "bare_app:app", "--port",
                     str(port), "--log-level", "warning"], cwd=work,
                    env={**os.environ, "PYTHONPATH": str(work)}, port=port, settle=settle)


def profiled(bin_dir: Path, work: Path, command: list[str], env: dict[str, str],
             port: int, settle: float) -> tuple[float, float, float, dict[str, float]]:
    """One profiled start: (interpreter, VmRSS, imports, package -> MiB its modules added)."""
    out = work / "profile.txt"
    out.unlink(missing_ok=True)

    def dump(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGUSR1)
        for _ in range(100):
            if out.exists() and out.read_text().count("\n") > 1:
                return
            time.sleep(0.1)

    idle_rss([str(bin_dir / "python"), "-c", PROFILER, str(out), *command], cwd=work,
             env=env, port=port, settle=settle, before_stop=dump)
    head, *rows = out.read_text().splitlines()
    base, now, imports = (float(x) for x in head.split())
    packages = {package: float(size) for size, package in (row.split() for row in rows)}
    return base, now, imports, packages


def breakdown(bin_dir: Path, work: Path, settle: float) -> None:
    """Where runbookd's idle memory goes, per package, next to the bare SQLAlchemy app's."""
    env = runbookd_env(work)
    # What `runbookd serve` does before its exec that the serving process relies on: the dev
    # token and link secret files under var/ (the settings read them there in dev).
    subprocess.run([str(bin_dir / "python"), "-c", "from app.config import dev_files; "
                    "dev_files()"], cwd=work, env=env, check=True)
    port = free_port()
    # `runbookd serve --port PORT` execs `python -m app.serve 127.0.0.1 PORT 1`.
    base, now, imports, ours = profiled(bin_dir, work, ["-m", "app.serve", "127.0.0.1",
                                                       str(port), "1"], env, port, settle)
    (work / "bare_app.py").write_text(BARE_SQLALCHEMY)
    port = free_port()
    *_, floor = profiled(bin_dir, work, ["-m", "uvicorn", "bare_app:app", "--port", str(port),
                                         "--log-level", "warning"],
                         {**os.environ, "PYTHONPATH": str(work)}, port, settle)
    print(f"\nbreakdown of one profiled start of runbookd serve ({now:.1f} MiB resident):")
    print(f"  {base:6.1f} MiB  the interpreter before any import")
    print(f"  {now - base - imports:6.1f} MiB  start-up besides imports (app, catalog, "
          "database, threads)")
    print(f"  {imports:6.1f} MiB  imports: each package's own modules (code, the models and "
          "tables they build);")
    print("              the bare FastAPI + SQLAlchemy + aiosqlite app's figure beside it")
    shared = sum(size for package, size in ours.items() if package in floor)
    print(f"    {shared:6.1f} MiB  in packages the bare app imports too")
    print(f"    {imports - shared:6.1f} MiB  in packages only runbookd imports")
    small = 0.0
    for package, size in sorted(ours.items(), key=lambda item: -item[1]):
        if size < 0.3:
            small += size
            continue
        beside = f"{floor[package]:6.2f}" if package in floor else "     -"
        print(f"      {size:6.2f} {beside}  {package}")
    print(f"      {small:6.2f}         every package under 0.3 MiB")


def measure_on_pg(bin_dir: Path, work: Path, settle: float, server: str) -> float:
    from benchmarks.history import drop_pg
    from benchmarks.ingest import fresh_pg

    database = asyncio.run(fresh_pg(server))
    try:
        migrate(work, database)
        return measure_runbookd(bin_dir, work, settle, database)
    finally:
        asyncio.run(drop_pg(database))


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):6.1f} MiB  "
            f"(range {min(values):.1f} to {max(values):.1f}, n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds between /-/healthy answering and the reading")
    parser.add_argument("--venv", type=Path, default=Path(sys.executable).parent.parent,
                        help="the environment whose runbookd and uvicorn are measured")
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--pg", help="also measure runbookd on this PostgreSQL server (a fresh "
                                     "database is made and dropped)")
    args = parser.parse_args()
    bin_dir = args.venv / "bin"
    results: dict[str, list[float]] = {"runbookd serve": [], "bare FastAPI": [],
                                       "bare FastAPI + SQLAlchemy + aiosqlite": []}
    if args.pg:
        results["runbookd serve on PostgreSQL"] = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="runbookd-memory-") as tmp:
            work = Path(tmp)
            migrate(work)
            results["runbookd serve"].append(measure_runbookd(bin_dir, work, args.settle))
            results["bare FastAPI"].append(measure_bare(bin_dir, work, BARE, args.settle))
            results["bare FastAPI + SQLAlchemy + aiosqlite"].append(
                measure_bare(bin_dir, work, BARE_SQLALCHEMY, args.settle))
            if args.pg:
                results["runbookd serve on PostgreSQL"].append(
                    measure_on_pg(bin_dir, work, args.settle, args.pg))
    print(f"idle VmRSS, {args.settle:g} s after /-/healthy answered ({bin_dir.parent}):")
    for name, values in results.items():
        print(f"  {name:<40} {summary(values)}")
    if args.breakdown:
        with tempfile.TemporaryDirectory(prefix="runbookd-memory-") as tmp:
            work = Path(tmp)
            migrate(work)
            breakdown(bin_dir, work, args.settle)


if __name__ == "__main__":
    main()
