"""Typed dependencies: the settings, the job store and the queue live on app.state (one per app)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from jobs.publish import JobQueue
from jobs.settings import Settings
from jobs.store import JobStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]


def authorised(
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> bool:
    """Whether the caller may see everything: no API_KEY is set, or it sent the key (X-API-Key, or
    Authorization: Bearer), compared in constant time."""
    if settings.api_key is None:
        return True
    given = x_api_key
    if given is None and authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    expected = settings.api_key.get_secret_value()
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


AuthorisedDep = Annotated[bool, Depends(authorised)]


def require_api_key(allowed: AuthorisedDep) -> None:
    """When API_KEY is set, every resource route needs it."""
    if not allowed:
        raise HTTPException(
            status_code=401,
            detail="missing or wrong API key: send it as the X-API-Key header (or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
