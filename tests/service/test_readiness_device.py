"""/readyz names the device each live worker resolved (cpu here; cuda:0 on a GPU host), and lists them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def test_readyz_lists_each_workers_resolved_device(client: TestClient, worker: dict[str, Any]) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ok"
    (ours,) = [entry for entry in body["workers"] if entry["hostname"] == worker["name"]]
    # The worker was started with --device cpu: its heartbeat carries what that resolved to.
    assert ours["device"] == "cpu"
    assert body["devices"] == sorted({entry["device"] for entry in body["workers"]}) == ["cpu"]
