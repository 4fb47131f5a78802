"""The browser page: `/` and its files under `/static` (plain HTML, CSS and JavaScript modules).

They are served without the API key on purpose: the page holds no data and must load before the user
can type the key into it; every request the page then makes carries the key (service/static/api.js).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"


class RevalidatedFiles(StaticFiles):
    """Static files the browser must revalidate (cheap 304s): there is no build step stamping names
    with hashes, so after an upgrade a cached old app.js would otherwise run against the new API."""

    async def get_response(self, path: str, scope: Scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        return response


def install_web(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", RevalidatedFiles(directory=STATIC_DIR), name="static")
