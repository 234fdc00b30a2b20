"""The error tree of runbookd, and the one place that maps it to HTTP.

    RunbookdError
    ├── BadRequest            400  malformed JSON, a catalog rejected on reload
    ├── Unauthenticated       401  missing or wrong credentials or signature
    ├── Forbidden             403  an identity without the right role, separation of duties
    ├── NotFound              404
    ├── Conflict              409  the wrong state for the operation (names the current one)
    │   ├── LinkStale         409  an approval link whose step was decided or changed
    │   ├── PlanChanged       409  a decision on a plan that is no longer the step's (shows it)
    │   └── LeaseLost              a worker's lease moved to another replica (never HTTP)
    ├── RequestTimeout        408  a body that did not arrive within the deadline
    ├── LinkGone              410  an approval link that expired, was used or was revoked
    ├── PayloadTooLarge       413
    ├── UnsupportedMediaType  415
    ├── Invalid               422  a well-formed body with a wrong field (names the field),
    │                              or a value out of the range a database holds
    ├── Unavailable           503  the database cannot be reached; the sender should retry
    └── SigningKeyMissing     503  RUNBOOKD_LINK_SECRET is not set outside dev

Services raise these; routes never build HTTP errors themselves. Lower-level failures are
translated at the boundary with `raise ... from exc`. `error_body` is the JSON answer of the
API, and `error_view` is what an HTML page shows of the same error.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)


class RunbookdError(Exception):
    """Base of every error that runbookd raises on purpose."""

    status_code = 500
    code = "internal"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class BadRequest(RunbookdError):
    status_code = 400
    code = "bad_request"


class Unauthenticated(RunbookdError):
    status_code = 401
    code = "unauthenticated"

    def __init__(self, message: str = "missing or invalid credentials", *, scheme: str = "Bearer"):
        super().__init__(message, headers={"WWW-Authenticate": f'{scheme} realm="runbookd"'})


def no_identity(*, token_sent: bool) -> Unauthenticated:
    """The 401 of an API request without an identity: its token is wrong, or it sent none."""
    if token_sent:
        return Unauthenticated("this token matches no identity")
    return Unauthenticated("an API token is required: Authorization: Bearer <token>")


class Forbidden(RunbookdError):
    status_code = 403
    code = "forbidden"


class NotFound(RunbookdError):
    status_code = 404
    code = "not_found"


class Conflict(RunbookdError):
    status_code = 409
    code = "conflict"

    def __init__(self, message: str, *, current_state: str | None = None, details: Any = None):
        super().__init__(message, details=details)
        self.current_state = current_state


class LinkStale(Conflict):
    """The link's step was decided, expired or changed since the link was made (409)."""

    def __init__(self, message: str, *, current_state: str, execution_id: int):
        super().__init__(message, current_state=current_state)
        self.execution_id = execution_id


class PlanChanged(Conflict):
    """The decision was made on a plan the step no longer has; `details` holds the current
    plan and its hash, so the approver can review what would run now."""

    def __init__(self, message: str, *, current_state: str, plan: dict[str, Any] | None,
                 plan_hash: str | None):
        super().__init__(message, current_state=current_state,
                         details={"plan": plan, "plan_hash": plan_hash})
        self.plan = plan
        self.plan_hash = plan_hash


class LeaseLost(Conflict):
    """This worker no longer holds the execution's lease; another one may have taken it.

    Internal to the worker, which stops driving the execution and logs one line."""


class RequestTimeout(RunbookdError):
    """The body did not arrive in time (RUNBOOKD_BODY_READ_TIMEOUT_SECONDS): 408."""

    status_code = 408
    code = "request_timeout"


class LinkGone(RunbookdError):
    """The link was valid once: it expired, was used, or was revoked (HTTP 410)."""

    status_code = 410
    code = "gone"

    def __init__(self, message: str, *, execution_id: int):
        super().__init__(message)
        # The page points at the execution: other approvers can still decide there.
        self.execution_id = execution_id


class PayloadTooLarge(RunbookdError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(RunbookdError):
    status_code = 415
    code = "unsupported_media_type"


class Invalid(RunbookdError):
    status_code = 422
    code = "invalid"


class Unavailable(RunbookdError):
    status_code = 503
    code = "unavailable"

    def __init__(self, message: str = "the database is unavailable; retry later", *,
                 retry_after: int = 5):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class SigningKeyMissing(RunbookdError):
    """Outside dev, links and web sessions need RUNBOOKD_LINK_SECRET."""

    status_code = 503
    code = "not_configured"


class CatalogInvalid(BadRequest):
    """The runbook catalog failed validation; `details` lists every problem."""

    code = "catalog_invalid"


# What a driver raises when the connection itself failed (asyncpg's names; SQLAlchemy wraps
# them). A driver's InterfaceError in general is not one: it is also how asyncpg refuses a
# statement it cannot send (more than 32,767 bind parameters), which is a bug, not an outage.
_CONNECTION_ERRORS = frozenset({
    "CannotConnectNowError", "ConnectionDoesNotExistError", "ConnectionFailureError",
    "PostgresConnectionError", "ConnectionRejectionError", "TooManyConnectionsError",
    "AdminShutdownError", "CrashShutdownError",
})
# SQLite's OperationalError covers both; only these mean the file cannot be used right now.
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open", "disk i/o error",
                       "database is busy", "readonly database")


def is_database_unavailable(exc: BaseException) -> bool:
    """True when an exception means the database cannot be reached right now (a 503 that
    senders retry); False for anything else a database says, which is a bug (a 500)."""
    if isinstance(exc, (PoolTimeoutError, ConnectionError, TimeoutError, OSError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return is_database_unavailable(exc.orig) if exc.orig is not None else False
    name = type(exc).__name__
    if name in _CONNECTION_ERRORS:
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in {
            "57P01", "57P02", "57P03", "53300"}):
        return True  # connection exception, shutdown, cannot connect now, too many clients
    if name == "OperationalError" and type(exc).__module__.startswith("sqlite3"):
        return any(reason in str(exc).lower() for reason in _SQLITE_UNAVAILABLE)
    return False


def is_data_error(exc: BaseException) -> bool:
    """True when the database refused a value (SQLSTATE class 22), whichever layer raised."""
    if isinstance(exc, OverflowError):
        return True
    if isinstance(exc, DBAPIError):
        return _sqlstate(exc).startswith("22")
    code = getattr(exc, "sqlstate", None)  # the driver's own exception (asyncpg)
    return isinstance(code, str) and code.startswith("22")


def _sqlstate(exc: DBAPIError) -> str:
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


class InternalError(RunbookdError):
    """A bug: the answer carries an id, and the log holds the traceback under that id."""

    def __init__(self, message: str, *, error_id: str):
        super().__init__(f"{message}; report error id {error_id}")
        self.error_id = error_id


def internal_error(what: str, exc: BaseException) -> InternalError:
    """Log `exc` with its traceback under a fresh error id, and the error to answer with."""
    error_id = secrets.token_hex(8)
    log.error("%s (error id %s)", what, error_id, exc_info=exc)
    return InternalError(what, error_id=error_id)


def error_body(exc: RunbookdError) -> dict[str, Any]:
    """The JSON body of an error answer."""
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details is not None:
        body["details"] = exc.details
    if isinstance(exc, Conflict) and exc.current_state is not None:
        body["current_state"] = exc.current_state
    if isinstance(exc, InternalError):
        body["error_id"] = exc.error_id
    return {"error": body}


# What a page calls each status, for a person rather than a program.
_PAGE_TITLES = {400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Not found",
                408: "Too slow", 409: "No longer possible", 410: "Link no longer valid",
                413: "Too large", 422: "Invalid request", 503: "Unavailable"}


def error_view(exc: RunbookdError) -> dict[str, Any]:
    """What an HTML error page shows: a title, the message, and where to go on from."""
    return {
        "title": _PAGE_TITLES.get(exc.status_code, "Error"), "message": exc.message,
        "status": exc.status_code,
        "current_state": exc.current_state if isinstance(exc, Conflict) else None,
        "details": exc.details,
        # Link errors point at the execution: other approvers can still decide there.
        "execution_id": getattr(exc, "execution_id", None),
    }


def out_of_range() -> Invalid:
    """The 422 of a value no column can hold: a far date or a number beyond 64 bits."""
    return Invalid("a value in the request is out of range: dates must fall between the "
                   "years 1 and 9999 once converted to UTC (mind the offset), and numbers "
                   "must fit in 64 bits")


def describe_validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Pydantic errors as [{field, message}], the field as a dotted path a person can find."""
    out = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        out.append({"field": ".".join(loc) or "(body)", "message": err.get("msg", "invalid")})
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Map the error tree, request validation and database outages to HTTP answers."""

    @app.exception_handler(RunbookdError)
    async def _runbookd_error(_: Request, exc: RunbookdError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = describe_validation_errors(list(exc.errors()))
        # Each field with what is wrong with it: the message alone says what to fix.
        fields = "; ".join(f"{d['field']}: {d['message'][:200]}" for d in details[:5])
        err = Invalid(f"invalid request: check {fields}", details=details)
        return JSONResponse(error_body(err), status_code=422)

    @app.exception_handler(OverflowError)
    @app.exception_handler(StatementError)
    async def _out_of_range(_: Request, exc: Exception) -> JSONResponse:
        # A value that cannot become a database parameter: `since=9999-12-31T23:59:59-14:00`
        # overflows on the way to UTC, and SQLite's driver refuses ints beyond 64 bits.
        cause = exc.orig if isinstance(exc, StatementError) else exc
        if isinstance(cause, OverflowError):
            err: RunbookdError = out_of_range()
        elif is_database_unavailable(cause):
            err = Unavailable()
        else:
            err = internal_error("a database statement failed", exc)
        return JSONResponse(error_body(err), status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug anywhere: the sender gets an id to report, the log the traceback under it.
        err = internal_error("an unexpected error", exc)
        return JSONResponse(error_body(err), status_code=500)

    @app.exception_handler(DBAPIError)
    async def _database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if _sqlstate(exc).startswith("22"):
            # A data exception: a value the database cannot store (NUL in text, out of range).
            err: RunbookdError = Invalid(
                "a value in the request cannot be stored: text must not contain NUL "
                "characters and numbers must fit in 64 bits")
        elif is_database_unavailable(exc):
            log.warning("database unavailable: %s", type(exc).__name__)
            err = Unavailable()
        else:
            err = internal_error("a database statement failed", exc)
        return JSONResponse(error_body(err), status_code=err.status_code, headers=err.headers)
