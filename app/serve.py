"""The serving process that `runbookd serve` becomes once it has checked the settings.

`runbookd serve` validates the settings, prints where it listens, then replaces itself (exec,
same PID, same environment) with `python -m app.serve HOST PORT WORKERS`. The command line's
modules (typer, click, every command group) would otherwise stay resident for the life of
the service, about 3 MiB of a process whose idle memory is a target (issue 17). Nothing here
validates again: this module is not a user interface.
"""

from __future__ import annotations

import sys

# FastAPI imports pydantic.v1 (23 modules, about 1.8 MiB of every serving process) only to
# refuse pydantic v1 models in routes, and treats an ImportError as "no v1 model can exist".
# None of runbookd's models, nor any package it runs, uses pydantic.v1; with it unimportable
# here, a v1 model would fail loudly at its import instead of at route registration.
sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]


def main(host: str, port: int, workers: int) -> None:
    import uvicorn

    from app.config import get_settings

    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, **get_settings().server_options())


if __name__ == "__main__":
    from app import logs

    logs.configure()  # the command line has checked RUNBOOKD_LOG_* before it exec'd this
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
