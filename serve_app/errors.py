"""Typed API errors and the handlers that give every error the official shape {"detail": ...}."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class ApiError(Exception):
    status_code = 400

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class BadRequest(ApiError):
    status_code = 400


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Invalid(ApiError):
    status_code = 422


class Unavailable(ApiError):
    status_code = 503


log = logging.getLogger(__name__)
# Seconds a client is told to wait when the database does not answer: about how long a restarted
# Postgres takes to accept connections again, and the pool to reconnect.
DATABASE_RETRY_AFTER_S = 5


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {error.get('msg')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(psycopg.errors.DataError)
    async def _bad_value(_: Request, exc: psycopg.errors.DataError) -> JSONResponse:
        # Values Postgres refuses (a NUL character in JSON, an out-of-range number) are bad input.
        return JSONResponse({"detail": f"invalid value: {exc.diag.message_primary or exc}"}, status_code=422)

    @app.exception_handler(psycopg.errors.ProgramLimitExceeded)
    async def _too_large(_: Request, exc: psycopg.errors.ProgramLimitExceeded) -> JSONResponse:
        # A value past what Postgres can index or store (an index row over its page size).
        return JSONResponse({"detail": f"value too large: {exc.diag.message_primary or 'over a database limit'}"},
                            status_code=422)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg.InterfaceError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # Postgres stopped, restarting or out of connections (a pool timeout is one too): the request can be retried, so it
        # is a 503 with Retry-After, not a 500. The driver's text may name the server's address
        # or user, so the client gets a fixed message and the log the cause.
        log.warning("database unavailable for %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"detail": "the database is unavailable; retry later"}, status_code=503,
                            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)
