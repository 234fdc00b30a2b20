"""The ASGI application: `create_app()` wires routers, error handlers and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app import metrics
from app.catalog.routes import router as catalog_router
from app.catalog.service import CatalogHolder
from app.catalog.signoff_reviews import refresh_review_gauges
from app.catalog.signoff_routes import router as signoffs_router
from app.config import Settings, get_settings
from app.engine.brake_routes import router as brakes_router
from app.engine.drills_routes import router as drills_router
from app.engine.feedback_routes import router as feedback_router
from app.engine.links import router as links_router
from app.engine.routes import guards_router
from app.engine.routes import router as engine_router
from app.engine.runbook_routes import router as runbooks_router
from app.engine.slack_buttons import router as slack_router
from app.errors import CatalogInvalid, Unavailable, install_error_handlers
from app.history.routes import router as history_router
from app.identity import IdentityStore
from app.identity.deps import identity_from_request
from app.intake.routes import install_webhooks, webhook_schemas
from app.intake.routes import router as intake_router
from app.lifecycle import running
from app.limits import RequestLimits
from app.logs import RequestIds
from app.web.install import error_page
from app.web.install import install as install_web
from app.web.session import load_session

log = logging.getLogger("runbookd")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; nothing touches the database until the lifespan starts."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings) as parts:
            app.state.engine_db = parts.db
            app.state.session_factory = parts.session_factory
            app.state.catalog = parts.catalog
            app.state.engine = parts.engine
            app.state.receiver = parts.receiver
            _reload_on_sighup(parts.catalog, parts.session_factory)
            yield

    app = FastAPI(
        title="runbookd",
        version="0.1.0",
        description="Alert-driven remediation for ML pipelines, with a guarded executor.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.identities = IdentityStore(
        settings.api_tokens_file,
        dev_token=settings.dev_token.get_secret_value() if settings.dev_token else None,
        on_reload=metrics.identities_file_checked,
    )
    install_error_handlers(app)
    install_webhooks(app)
    app.include_router(intake_router)
    # Before the engine's, whose /executions/{id}/{choice} would take .../feedback.
    app.include_router(feedback_router)
    app.include_router(engine_router)
    app.include_router(guards_router)
    app.include_router(brakes_router)
    app.include_router(drills_router)
    app.include_router(history_router)
    app.include_router(catalog_router)
    app.include_router(signoffs_router)
    app.include_router(runbooks_router)
    app.include_router(links_router)
    app.include_router(slack_router)
    install_web(app)
    # Outermost, so that a body is bounded and its sender authenticated before anything
    # (the session check included) reads it.
    app.add_middleware(RequestLimits, settings=settings, api_credential=_has_identity,
                       form_credential=_has_session, error_page=error_page)
    # Outside even that, so that a refused body's log line names its request too.
    app.add_middleware(RequestIds)
    _document_raw_bodies(app)
    _add_operational_routes(app)
    return app


async def _has_identity(request: Request) -> bool:
    """An API request's credential resolves: a bearer token, or a session with its CSRF."""
    return await identity_from_request(request) is not None


async def _has_session(request: Request) -> bool:
    """A form comes from a signed-in session (its CSRF token is in the body, checked later)."""
    return await load_session(request) is not None


def _reload_on_sighup(holder: CatalogHolder, factory: object) -> None:
    """SIGHUP reloads the catalog, as it does for Prometheus and Alertmanager."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()  # keeps each reload task alive until it ends

    def reload() -> None:
        async def run() -> None:
            try:
                await holder.reload(factory, actor="signal:SIGHUP")  # type: ignore[arg-type]
                log.info("catalog reloaded on SIGHUP")
            except CatalogInvalid as exc:
                log.error("catalog reload on SIGHUP rejected; the old catalog stays: %s",
                          exc.details)

        task = loop.create_task(run())
        running.add(task)
        task.add_done_callback(running.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, reload)


def _document_raw_bodies(app: FastAPI) -> None:
    """Add the webhook body schemas, which routes read raw, to the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                webhook_schemas()
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_operational_routes(app: FastAPI) -> None:
    @app.get("/-/healthy", tags=["ops"])
    async def healthy() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/-/ready", tags=["ops"], responses={503: {"description": "not ready"}})
    async def ready(request: Request) -> dict[str, str]:
        """The database answers and the catalog is loaded."""
        try:
            async with request.app.state.engine_db.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise Unavailable("the database is not reachable") from exc
        if not request.app.state.catalog.catalog.runbooks:
            raise Unavailable("the catalog holds no runbooks")
        return {"status": "ready"}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus_metrics(request: Request) -> Response:
        """Prometheus exposition format."""
        factory = getattr(request.app.state, "session_factory", None)
        if factory is not None:
            try:
                await refresh_review_gauges(factory, request.app.state.catalog.catalog)
            except Exception:
                # The other metrics still answer when the database does not.
                log.warning("could not read the review gauges", exc_info=True)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
