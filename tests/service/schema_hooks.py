"""schemathesis hooks that put NaN, Infinity, -Infinity and 1e400 into a share of the generated requests
(JSON has no literal for them, so schemathesis itself never sends them). Importing this module
registers them: tests/service/test_schema.py does, and so can the CLI against a live server:

    SCHEMATHESIS_HOOKS=tests.service.schema_hooks schemathesis run http://127.0.0.1:8765/openapi.json ...
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from hypothesis import strategies as st

NON_FINITE_JSON = ("NaN", "Infinity", "-Infinity", "1e400")
NON_FINITE_QUERY = ("nan", "inf", "-inf", "1e400")
MARK = "__non_finite__"
SENT: list[str] = []  # the non-finite spellings the hooks put into requests, to show they did


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@schemathesis.hook("flatmap_body")
def _non_finite_bodies(context: Any, body: Any) -> st.SearchStrategy:
    """The body as generated, or as raw JSON text with one of its numbers made NaN, Infinity, ..."""
    if not isinstance(body, dict):
        return st.just(body)
    numbers = [key for key, value in body.items() if _is_number(value)]
    lists = [key for key, value in body.items() if isinstance(value, list) and any(map(_is_number, value))]
    if not numbers and not lists:
        return st.just(body)

    def spoil(choice: tuple[str, str]) -> bytes:
        key, literal = choice
        SENT.append(f"body {key}={literal}")
        value = [MARK] if key in lists else MARK
        return json.dumps({**body, key: value}).replace(f'"{MARK}"', literal).encode()

    spoiled = st.tuples(st.sampled_from(numbers + lists), st.sampled_from(NON_FINITE_JSON)).map(spoil)
    return st.one_of(st.just(body), spoiled)


@schemathesis.hook("flatmap_query")
def _non_finite_queries(context: Any, query: Any) -> st.SearchStrategy:
    """The query as generated, or with one of its numbers spelled nan, inf, -inf or 1e400."""
    if not isinstance(query, dict):
        return st.just(query)
    numbers = [key for key, value in query.items() if _is_number(value)]
    if not numbers:
        return st.just(query)

    def spoil(choice: tuple[str, str]) -> dict[str, Any]:
        SENT.append(f"query {choice[0]}={choice[1]}")
        return {**query, choice[0]: choice[1]}

    choices = st.tuples(st.sampled_from(numbers), st.sampled_from(NON_FINITE_QUERY))
    return st.one_of(st.just(query), choices.map(spoil))
