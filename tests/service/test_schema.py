"""schemathesis fuzzes every operation in the OpenAPI schema, /readyz included: no 5xx, every response
matches its schema. JSON has no literal for NaN or Infinity, so schemathesis never generates them; the
hooks below do: a share of the generated bodies and queries carry NaN, Infinity, -Infinity or 1e400 in
one of their numbers (tests/service/test_hostile_input.py sends each of these to every numeric field).

In-process (ASGI) against the test Redis with a queue no worker consumes, so generated jobs stay
queued; a worker heartbeat is written for the run, so /readyz answers 200 as it does in service. The
same run against a live server, with more examples, is in docs/reliability.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from jobs.registry import WorkerRegistry  # noqa: E402
from jobs.settings import Settings  # noqa: E402
from service.app import create_app  # noqa: E402
from tests.service.schema_hooks import SENT  # noqa: E402  (importing it registers the hooks)
from tests.stack import LOCAL_REDIS, _cleanup, _reachable  # noqa: E402

# Module level, as schemathesis' parametrize needs the schema at collection time.
REDIS_URL = os.environ.get("DDPM_TEST_REDIS_URL", LOCAL_REDIS)
if not _reachable(REDIS_URL):
    pytest.skip(f"no Redis at {REDIS_URL} for the schema fuzz", allow_module_level=True)
PREFIX = f"test-schema-{uuid.uuid4().hex[:8]}"
APP_SETTINGS = Settings(
    redis_url=REDIS_URL,
    data_dir=tempfile.mkdtemp(prefix="ddpm-schema-"),
    key_prefix=PREFIX,
    queue=f"{PREFIX}-idle",
    max_wait_s=0.5,
    events_poll_s=0.05,
    min_free_mb=0,
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    app = create_app(APP_SETTINGS)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module", autouse=True)
def _a_worker_and_clean_keys() -> Iterator[None]:
    store = app.state.store
    registry = WorkerRegistry(store.client, store.prefix)
    registry.beat(f"{PREFIX}@schema", {"hostname": f"{PREFIX}@schema", "device": "cpu"}, ttl_s=3600)
    yield
    _cleanup(APP_SETTINGS.redis_url, PREFIX)
    shutil.rmtree(APP_SETTINGS.data_dir, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(case) -> None:  # noqa: ANN001
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])


def test_the_fuzz_sent_non_finite_numbers() -> None:
    """Runs after the fuzz (pytest keeps the file's order): its hooks did reach bodies and queries."""
    assert any(s.startswith("body ") for s in SENT) and any(s.startswith("query ") for s in SENT), SENT
