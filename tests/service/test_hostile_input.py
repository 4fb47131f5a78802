"""Inputs a hostile or careless client sends: every number finite and bounded, strict JSON types, and the
variant's own constraints checked before anything is queued. Every refusal is a 422 whose body is
valid JSON (no NaN literal) and whose error is located at the field to change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models import arch_config, arch_names

# A valid request per operation that takes numbers, and where each number goes (body or query).
BASE_BODIES = {
    "/train": {"arch": "biggan", "dataset": "digits", "image_size": 16},
    "/fid": {"arch": "biggan"},
}
BASE_QUERIES = {"/samples": {"arch": "biggan"}}
PATH_VALUES = {"{run_id}": "no-such-run", "{job_id}": "0" * 32}
NON_FINITE_JSON = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400")
NON_FINITE_QUERY = ("nan", "inf", "-inf", "Infinity", "1e400")


def _strict_json(text: str) -> Any:
    """json.loads that refuses NaN and Infinity, as every JSON parser but Python's does."""

    def refuse(literal: str) -> None:
        raise ValueError(f"{literal} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return _resolve(spec["components"]["schemas"][ref.rsplit("/", 1)[1]], spec)
    return schema


def _numbers(schema: dict[str, Any], spec: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, schema) of every integer or number a schema admits, through refs, unions and arrays."""
    schema = _resolve(schema, spec)
    for option in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        yield from _numbers(option, spec, path)
    if schema.get("type") in ("integer", "number"):
        yield path, schema
    if schema.get("type") == "array" and "items" in schema:
        yield from _numbers(schema["items"], spec, f"{path}[]")
    for name, child in schema.get("properties", {}).items():
        yield from _numbers(child, spec, f"{path}.{name}")


def _all_numbers(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for route, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                where = f"{method.upper()} {route} {parameter['in']} {parameter['name']}"
                found += list(_numbers(parameter["schema"], spec, where))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                found += list(_numbers(body["schema"], spec, f"{method.upper()} {route} body"))
    return found


def test_every_number_the_api_accepts_is_bounded(idle_client: TestClient) -> None:
    spec = idle_client.get("/openapi.json").json()
    numbers = _all_numbers(spec)
    assert len(numbers) > 20  # the walk found the bodies' and queries' numbers
    unbounded = [
        where
        for where, schema in numbers
        if "maximum" not in schema
        and "exclusiveMaximum" not in schema
        or "minimum" not in schema
        and "exclusiveMinimum" not in schema
    ]
    assert unbounded == []


def _numeric_fields(spec: dict[str, Any], route: str, method: str) -> list[tuple[str, bool]]:
    """(field name, inside a list) of every number of an operation's body or query."""
    operation = spec["paths"][route].get(method, {})
    if method == "post":
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        return sorted(
            {(w.split(".")[1].rstrip("[]"), w.endswith("[]")) for w, _ in _numbers(schema, spec, "")}
        )
    return sorted(
        {
            (p["name"], False)
            for p in operation.get("parameters", [])
            if p["in"] == "query" and list(_numbers(p["schema"], spec, p["name"]))
        }
    )


def _located(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    body = _strict_json(response.text)  # valid JSON: no bare NaN or Infinity
    assert any(error["loc"][-1] == field or field in error["loc"] for error in body["detail"]), body


@pytest.mark.parametrize("route", sorted(BASE_BODIES))
def test_non_finite_numbers_in_bodies_are_422_naming_the_field(idle_client: TestClient, route: str) -> None:
    fields = _numeric_fields(idle_client.get("/openapi.json").json(), route, "post")
    assert len(fields) >= 5, fields
    for field, in_list in fields:
        for literal in NON_FINITE_JSON:
            value = f"[{literal}]" if in_list else literal
            text = json.dumps(BASE_BODIES[route])[:-1] + f', "{field}": {value}}}'
            response = idle_client.post(route, content=text, headers={"Content-Type": "application/json"})
            _located(response, field)
            if in_list:  # the single-value spelling of the same field as well
                text = json.dumps(BASE_BODIES[route])[:-1] + f', "{field}": {literal}}}'
                response = idle_client.post(route, content=text, headers={"Content-Type": "application/json"})
                _located(response, field)


def test_non_finite_numbers_in_queries_are_422_naming_the_field(idle_client: TestClient) -> None:
    spec = idle_client.get("/openapi.json").json()
    routes = [route for route, operations in spec["paths"].items() if _numeric_fields(spec, route, "get")]
    assert {"/samples", "/jobs", "/runs/{run_id}", "/runs/{run_id}/loss.png"} <= set(routes)
    for route in routes:
        url = route
        for placeholder, value in PATH_VALUES.items():
            url = url.replace(placeholder, value)
        for field, _ in _numeric_fields(spec, route, "get"):
            for literal in NON_FINITE_QUERY:
                response = idle_client.get(url, params={**BASE_QUERIES.get(route, {}), field: literal})
                _located(response, field)


@pytest.mark.parametrize(
    ("route", "field", "value"),
    [
        ("/train", "epochs", "3"),
        ("/train", "epochs", True),
        ("/train", "epochs", 3.5),
        ("/train", "max_steps", "10"),
        ("/train", "batch_size", False),
        ("/train", "seed", "0"),
        ("/train", "lr", "0.001"),
        ("/train", "width", True),
        ("/train", "ema", "yes"),
        ("/train", "ema", 1),
        ("/train", "resume", "true"),
        ("/train", "image_size", "16"),
        ("/fid", "n_samples", "512"),
        ("/fid", "n_samples", True),
        ("/fid", "n_samples", [512, "1024"]),
        ("/fid", "batch_size", "8"),
        ("/fid", "eta", "0"),
        ("/fid", "seed", 1.0),
    ],
)
def test_json_bodies_take_no_surprising_coercion(
    idle_client: TestClient, route: str, field: str, value: Any
) -> None:
    response = idle_client.post(route, json={**BASE_BODIES[route], field: value})
    _located(response, field)


def test_json_numbers_of_the_right_kind_still_pass(idle_client: TestClient) -> None:
    # An integer where a float goes is fine (JSON has one number type; 1 is a float too).
    body = {**BASE_BODIES["/train"], "arch": "convnext", "lr": 1, "width": 1, "max_steps": 1, "ema": True}
    response = idle_client.post("/train", json=body)
    assert response.status_code == 202, response.text
    assert idle_client.delete(f"/jobs/{response.json()['job_id']}").status_code == 200


# ---- what the chosen variant's network can take

SIZES = (8, 12, 16, 24, 40, 48)


def _network_runs(arch: str, size: int) -> bool:
    import torch

    from models import build_from_config

    net = build_from_config(arch_config(arch, width=0.125)).eval()
    try:
        with torch.no_grad():
            net(torch.randn(1, 3, size, size), torch.tensor([5]))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("arch", [*arch_names(), "deep+biggan"])
def test_image_size_is_checked_against_the_network(idle_client: TestClient, arch: str) -> None:
    """The API accepts exactly the sizes the variant's network runs at, and names the valid ones."""
    for size in SIZES:
        body = {"arch": arch, "dataset": "digits", "width": 0.125, "image_size": size, "max_steps": 1}
        response = idle_client.post("/train", json=body)
        if _network_runs(arch, size):
            assert response.status_code == 202, (size, response.text)
            idle_client.delete(f"/jobs/{response.json()['job_id']}")
        else:
            _located(response, "image_size")
            message = response.json()["detail"][0]["msg"]
            first = min(s for s in range(8, 257) if _api_takes(arch, s))
            factor = 2 ** arch_config(arch).levels
            assert f"multiple of {factor} from {first}" in message
            assert f"valid sizes: {first}, {first + factor}, " in message


def _api_takes(arch: str, size: int) -> bool:
    from service.schemas import valid_image_sizes

    return size in valid_image_sizes(arch_config(arch, width=0.125))


def test_dropout_only_where_the_network_has_it(idle_client: TestClient) -> None:
    response = idle_client.post("/train", json={"arch": "refinenet", "dataset": "digits", "dropout": 0.1})
    _located(response, "dropout")
    assert "refinenet" in response.json()["detail"][0]["msg"]
    ok = idle_client.post("/train", json={"arch": "ddpm_original", "dataset": "digits", "dropout": 0.2})
    assert ok.status_code == 202, ok.text
    idle_client.delete(f"/jobs/{ok.json()['job_id']}")
