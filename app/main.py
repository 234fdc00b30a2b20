"""The ASGI application: `create_app()` wires routers, error handlers and the lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.config import Settings, get_settings
from app.db import make_engine, make_session_factory
from app.errors import Unavailable, install_error_handlers
from app.identity import IdentityStore, load_tokens_file
from app.intake.auth import WebhookAuth
from app.intake.receiver import WebhookReceiver
from app.intake.routes import router as intake_router
from app.intake.routes import webhook_schemas
from app.intake.service import record_no_match
from app.intake.writer import GroupCommitWriter

log = logging.getLogger("runbookd")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; nothing touches the database until the lifespan starts."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        factory = make_session_factory(engine)
        app.state.engine = engine
        app.state.session_factory = factory
        writer = GroupCommitWriter(
            factory, hook=lambda: record_no_match, max_batch=settings.ingest_batch_max,
        )
        app.state.receiver = WebhookReceiver(
            auth=WebhookAuth.from_settings(settings), writer=writer,
            max_body_bytes=settings.max_body_bytes,
        )
        await writer.start()
        try:
            yield
        finally:
            await writer.stop()
            await engine.dispose()

    app = FastAPI(
        title="runbookd",
        version="0.1.0",
        description="Alert-driven remediation for ML pipelines, with a guarded executor.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.identities = IdentityStore(
        load_tokens_file(settings.api_tokens_file) if settings.api_tokens_file else [],
        dev_token=settings.dev_token.get_secret_value() if settings.dev_token else None,
    )
    install_error_handlers(app)
    app.include_router(intake_router)
    _document_raw_bodies(app)
    _add_operational_routes(app)
    return app


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
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise Unavailable("the database is not reachable") from exc
        return {"status": "ready"}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus exposition format."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
