"""Errors the API answers with a status and a JSON message (never a traceback)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import kombu.exceptions
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ddpm.runs import UnreadableRun
from ddpm.storage import MIB, NoSpace, free_bytes, relative_to_volume

log = logging.getLogger("service")


class ApiError(Exception):
    """A request the service cannot serve as asked; `detail` says why and what would work."""

    status_code = 400

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


def invalid_field(location: tuple[str, ...], message: str, value: object) -> RequestValidationError:
    """A bound that depends on settings (so not in the request model), answered in the same 422 shape
    as the model's own checks, which is the shape the OpenAPI schema promises for 422."""
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message, "input": value}])


class JobFailed(ApiError):
    """The job behind a request failed in the worker; detail carries its error."""

    status_code = 500


class Unavailable(ApiError):
    status_code = 503


class InsufficientStorage(ApiError):
    """The request itself needs space on the data volume, and there is not enough (RFC 4918's 507)."""

    status_code = 507


def low_space(data_dir: Path, min_free_mb: int) -> InsufficientStorage | None:
    """507 when the data volume has less free space than the configured minimum (DDPM_MIN_FREE_MB)."""
    free_mb = free_bytes(data_dir) // MIB
    if free_mb >= min_free_mb:
        return None
    return InsufficientStorage(
        f"no space left on the data volume: {free_mb} MiB free, under the {min_free_mb} MiB this service "
        "keeps free for a job (DDPM_MIN_FREE_MB); free space on it, then try again"
    )


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def redis_unavailable_message(url: str, err: Exception) -> str:
    return (
        f"Redis is unreachable at {redact(url)} ({type(err).__name__}: {err}). Jobs cannot be created or "
        "read until it is back: start Redis (`docker compose up -d redis`), or run `ddpm serve` without "
        "REDIS_URL for an embedded one, or point REDIS_URL at a running server."
    )


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float spelled as text ("NaN", "Infinity", "-Infinity"): a 422 echoes
    the input it refuses, and JSON has no literal for these (the encoder would raise, turning the 422
    into a 500)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def install_handlers(app: FastAPI, redis_url: str, data_dir: Path) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        # FastAPI's own shape ({"detail": [{"loc", "msg", "type", "input", ...}]}), made JSON-safe.
        return JSONResponse({"detail": json_safe(jsonable_encoder(err.errors()))}, status_code=422)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"detail": err.detail, **err.extra}, status_code=err.status_code)

    @app.exception_handler(NoSpace)
    async def no_space(_: Request, err: NoSpace) -> JSONResponse:
        log.warning("%s", err)
        where = relative_to_volume(str(err.path), data_dir) if err.path is not None else "a file"
        detail = (
            f"no space left on the data volume (writing {where}; {free_bytes(data_dir) // MIB} MiB free); "
            "free space on it, then try again"
        )
        return JSONResponse({"detail": detail}, status_code=507)

    @app.exception_handler(UnreadableRun)
    async def unreadable_run(_: Request, err: UnreadableRun) -> JSONResponse:
        # The run exists but its record cannot be used until someone repairs or removes it.
        log.warning("%s", err)
        return JSONResponse({"detail": str(err)}, status_code=409)

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def redis_down(_: Request, err: Exception) -> JSONResponse:
        log.warning("redis unavailable: %s", err)
        return JSONResponse({"detail": redis_unavailable_message(redis_url, err)}, status_code=503)

    @app.exception_handler(redis.exceptions.RedisError)
    async def redis_error(_: Request, err: Exception) -> JSONResponse:
        log.warning("redis error: %s", err)
        detail = f"Redis at {redact(redis_url)} refused the request ({type(err).__name__}: {err})"
        if "MISCONF" in str(err):  # it cannot save (AOF or RDB) and refuses writes until it can
            detail += "; it cannot save its data, most likely because its disk is full: free space there"
        return JSONResponse({"detail": detail}, status_code=503)

    @app.exception_handler(kombu.exceptions.OperationalError)
    async def broker_down(_: Request, err: Exception) -> JSONResponse:
        log.warning("broker unavailable: %s", err)
        return JSONResponse(
            {"detail": f"the job queue (broker at {redact(redis_url)}) is unreachable: {err}"},
            status_code=503,
        )

    @app.exception_handler(Exception)
    async def internal(_: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            {"detail": f"internal error ({type(err).__name__}); the API log has the details"},
            status_code=500,
        )
