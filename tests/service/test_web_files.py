"""The page's files as the API serves them (no browser needed; test_web_page.py drives Chromium)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from pydantic import SecretStr

from jobs.settings import Settings
from service.app import create_app
from service.web import STATIC_DIR

IMPORT = re.compile(r"""^import .* from "\./([\w.]+)";$""", re.MULTILINE)


def test_the_page_loads_without_the_key_and_its_modules_are_all_served(idle_settings: Settings) -> None:
    keyed = idle_settings.model_copy(update={"api_key": SecretStr("s3cret")})
    with TestClient(create_app(keyed)) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        assert '<script type="module" src="/static/app.js">' in page.text
        # Every module app.js imports, transitively, is served as JavaScript and revalidated.
        pending, seen = ["app.js"], set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            response = client.get(f"/static/{name}")
            assert response.status_code == 200, name
            assert "javascript" in response.headers["content-type"]
            assert response.headers["cache-control"] == "no-cache"
            pending.extend(IMPORT.findall(response.text))
        assert seen == {path.name for path in STATIC_DIR.glob("*.js")}  # and none is left unused
        assert client.get("/static/style.css").status_code == 200
        # The data behind the page still needs the key.
        assert client.get("/archs").status_code == 401


def test_the_page_is_not_part_of_the_api_schema(idle_client: TestClient) -> None:
    paths = idle_client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/static") for path in paths)
