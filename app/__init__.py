"""runbookd."""

import sys

# `import httpx` also imports httpx's own command-line tool when click, rich and pygments are
# installed (they are: uvicorn and typer need them), about 3 MiB of every runbookd process
# that never runs it. A None entry makes that optional import fail, so httpx falls back to its
# stub `httpx.main`; the `httpx` console script runs in a process of its own, unaffected.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
