"""`ddpm study` through the service: submit the spec, follow its members, download the report.

Standard library only (urllib): the engine does not depend on an HTTP client package. The routes are
the service's (docs/api.md, "Studies"): POST /studies, GET /studies/{id}, GET /studies/{id}/report.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddpm.errors import DdpmError

TERMINAL = ("done", "succeeded", "failed", "cancelled", "partial")  # the service says done, failed, cancelled
FORMATS = {"html": "report.html", "zip": "report.zip", "csv": "table.csv"}


class ServiceError(DdpmError):
    """The service refused the study or could not be reached; the message carries its answer."""


class StudyClient:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.url, self.api_key, self.timeout = url.rstrip("/"), api_key, timeout

    def _request(self, method: str, path: str, body: Any = None) -> bytes:
        headers = {"Accept": "*/*"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:2000]
            raise ServiceError(f"{method} {path}: HTTP {err.code}: {detail}") from err
        except (urllib.error.URLError, OSError) as err:
            raise ServiceError(
                f"cannot reach the service at {self.url} ({err}); start it with `make serve`, or run with --local"
            ) from err

    def _json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        answer = json.loads(self._request(method, path, body) or b"{}")
        if not isinstance(answer, dict):
            raise ServiceError(f"{method} {path}: expected a JSON object, got {answer!r:.200}")
        return answer

    def submit(self, body: dict[str, Any]) -> str:
        answer = self._json("POST", "/studies", body)
        study_id = answer.get("id") or answer.get("study_id")
        if not isinstance(study_id, str):
            raise ServiceError(f"POST /studies answered without a study id: {answer!r:.500}")
        return study_id

    def status(self, study_id: str) -> dict[str, Any]:
        return self._json("GET", f"/studies/{study_id}")

    def wait(
        self, study_id: str, poll_s: float = 2.0, show: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        while True:
            state = self.status(study_id)
            if show is not None:
                show(state)
            if state.get("state") in TERMINAL:
                return state
            time.sleep(poll_s)

    def download(self, study_id: str, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for fmt, name in FORMATS.items():
            data = self._request("GET", f"/studies/{study_id}/report?format={fmt}")
            (out / name).write_bytes(data)
            written.append(out / name)
        return written


class MemberBars:
    """One tqdm bar per member from GET /studies/{id}'s `member_states` (the service's shape: key, state,
    and per stage train / grid / fid a 0..1 progress); the bar is the mean over the stages."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, state: dict[str, Any]) -> None:
        from tqdm import tqdm

        members = state.get("member_states")
        if not isinstance(members, list):
            members = state.get("members") if isinstance(state.get("members"), list) else []
        for member in members:
            key = str(member.get("key") or member.get("member") or "?")
            if key not in self.bars:
                self.bars[key] = tqdm(total=1000, desc=key, file=sys.stderr, dynamic_ncols=True, leave=True)
            bar = self.bars[key]
            bar.n = round(1000 * min(max(member_progress(member), 0.0), 1.0))
            bar.set_description(f"{key} {member.get('state', '')}", refresh=False)
            bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def member_progress(member: dict[str, Any]) -> float:
    """0..1: done is 1; else the mean of the stages' progress, or the member's own `progress`."""
    if member.get("state") == "done":
        return 1.0
    stages = member.get("stages")
    if isinstance(stages, dict) and stages:
        values = [float(stage.get("progress") or 0.0) for stage in stages.values() if isinstance(stage, dict)]
        return sum(values) / len(values) if values else 0.0
    return float(member.get("progress") or 0.0)
