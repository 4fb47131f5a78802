"""`ddpm study` without --local against a small HTTP server that answers as the service's routes do
(the contract in docs: POST /studies, GET /studies/{id}, GET /studies/{id}/report?format=...)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ddpm.cli import main
from ddpm.study.client import member_progress
from ddpm.study.spec import preset


class _Service(BaseHTTPRequestHandler):
    posted: list[Any] = []
    polls = 0
    refuse = False

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, code: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Service.posted.append((self.path, body, self.headers.get("X-API-Key")))
        if _Service.refuse:
            detail = {"detail": [{"loc": ["body", "variants", 0], "msg": "unknown arch 'x'"}]}
            self._answer(422, json.dumps(detail).encode())
            return
        self._answer(202, json.dumps({"id": "s1", "state": "queued"}).encode())

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/studies/s1":
            _Service.polls += 1
            state = "running" if _Service.polls < 3 else "done"
            stages = {"train": {"progress": 0.75}, "grid": {"progress": 0.0}, "fid": {"progress": 0.0}}
            members = [{"key": "baseline@0", "state": "training", "stages": stages}]
            body = {"id": "s1", "state": state, "members": 1, "member_states": members}
            self._answer(200, json.dumps(body).encode())
        elif self.path.startswith("/studies/s1/report?format="):
            fmt = self.path.rsplit("=", 1)[1]
            self._answer(200, f"the {fmt} report".encode(), "application/octet-stream")
        else:
            self._answer(404, b"{}")


@pytest.fixture
def service() -> Iterator[str]:
    _Service.posted, _Service.polls, _Service.refuse = [], 0, False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_submits_follows_and_downloads(service: str, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["study", "--preset", "digits-smoke", "--url", service, "--out", str(out), "--poll", "0.01"]
    assert main([*args, "--api-key", "k"]) == 0
    [(path, body, key)] = _Service.posted
    assert path == "/studies" and key == "k" and body == preset("digits-smoke").to_dict()
    assert _Service.polls == 3
    assert (out / "report.html").read_text() == "the html report"
    assert (out / "report.zip").read_bytes() == b"the zip report"
    assert (out / "table.csv").read_text() == "the csv report"


def test_member_progress_is_the_mean_of_its_stages() -> None:
    stages = {"train": {"progress": 0.9}, "grid": {"progress": 0.3}, "fid": {"progress": 0.0}}
    assert member_progress({"state": "evaluating", "stages": stages}) == pytest.approx(0.4)
    assert member_progress({"state": "done", "stages": stages}) == 1.0
    assert member_progress({"state": "training", "progress": 0.25}) == 0.25


def test_a_refusal_is_printed(service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _Service.refuse = True
    assert main(["study", "--preset", "digits-smoke", "--url", service, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "HTTP 422" in err and "unknown arch 'x'" in err


def test_no_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["study", "--preset", "digits-smoke", "--url", "http://127.0.0.1:9", "--out", str(tmp_path)])
        == 2
    )
    assert "cannot reach the service" in capsys.readouterr().err
