"""Helpers for the browser tests: the API served over real HTTP, headless Chromium driven by Selenium,
screenshots, and the browser console read as test failures.

Chromium and its driver are Debian's (`apt-get install chromium chromium-driver`); Selenium is given
both paths, so its Selenium Manager never runs (it would try to download a browser).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from fastapi import FastAPI

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
LAPTOP = (1366, 900)
PHONE = (390, 844)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
SERVER_START_TIMEOUT_S = 20.0

T = TypeVar("T")


def _missing() -> list[str]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    try:
        import selenium  # noqa: F401
    except ModuleNotFoundError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    return missing


def _reason(missing: list[str]) -> str:
    return f"browser tests need {', '.join(missing)}: apt-get install -y chromium chromium-driver"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def skip_module_unless_chromium() -> None:
    """Outside CI, a machine without the browser skips the module (before any worker is started);
    in CI (where .ci/run installs it) each test fails instead, through require_chromium."""
    missing = _missing()
    if missing and not _in_ci():
        pytest.skip(_reason(missing), allow_module_level=True)


def require_chromium() -> None:
    missing = _missing()
    if missing:
        pytest.fail(_reason(missing), pytrace=False)


def browser_session(window: tuple[int, int]) -> Iterator[Any]:
    """A module's headless Chromium (failing clearly when it is missing), quit at the end: `yield from`
    it in a fixture."""
    require_chromium()
    driver = chromium(window)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serves `app` on a free localhost port from a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # Event streams stay open until their job ends: do not wait long for them at shutdown.
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the API server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def chromium(window: tuple[int, int] = LAPTOP) -> Any:
    """Headless Chromium at a laptop's window size, keeping every console message for console_errors."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={window[0]},{window[1]}",
        # Nothing outside the machine is reachable; do not let the browser try.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


# "http://127.0.0.1:4321/train - Failed to load resource: the server responded with a status of 422 (...)"
_FAILED_RESOURCE = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


def console_errors(driver: Any, expected_statuses: Iterable[int] = ()) -> list[str]:
    """SEVERE console messages since the last call: JavaScript errors, and failed requests other than
    those answered with a status the test provoked on purpose."""
    allowed = set(expected_statuses)
    errors = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        failed = _FAILED_RESOURCE.search(entry["message"])
        if failed and int(failed.group(1)) in allowed:
            continue
        errors.append(entry["message"])
    return errors


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def wait_until(condition: Callable[[], T], timeout: float, what: str, poll: float = 0.1) -> T:
    """condition()'s first truthy value; fails saying `what` did not happen (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as err:  # the page is re-rendering: an element went stale, or is not there yet
            last_error, value = err, None
        if value:
            return value
        time.sleep(poll)
    pytest.fail(
        f"{what} did not happen in {timeout:g} s" + (f" (last error: {last_error})" if last_error else "")
    )
