"""One default sampler story (issue 18): every `links.samples` URL the API hands out (runs, jobs, their
results), GET /samples without a sampler and `ddpm sample` all mean DDIM 50, so no link the user did not
ask about starts the report's 1000-step sampler; the report's DDPM-1000 is one option away."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from ddpm.limits import DEFAULT_STEPS, GRID_SAMPLER, REPORT_SAMPLER
from tests.stack import TINY_TRAIN, finished, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def sample_urls(value: Any) -> Iterator[str]:
    """Every links.samples value, and every other /samples? URL, anywhere in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "samples" and isinstance(item, str):
                yield item
            yield from sample_urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from sample_urls(item)
    elif isinstance(value, str) and value.startswith("/samples?"):
        yield value


def test_every_samples_link_is_the_grid_default_and_get_samples_agrees(
    client: TestClient, local_checkpoint: dict[str, Any]
) -> None:
    run = client.post("/train", json={"arch": "pure_unet", "max_steps": 2, **TINY_TRAIN}).json()
    assert wait_for(client, run["job_id"], finished)["state"] == "succeeded"

    documents = [client.get("/jobs").json(), client.get("/runs").json(), client.get("/archs").json()]
    documents += [client.get(f"/jobs/{job['id']}").json() for job in documents[0]["jobs"][:20]]
    documents += [client.get(f"/runs/{r['run_id']}").json() for r in documents[1]["runs"][:20]]
    urls = {url for document in documents for url in sample_urls(document)}
    links = {url for url in urls if "checkpoint=" in url and "&n=80" in url}
    # The new run's two checkpoints (job result, job links, run detail) and the session's other runs.
    assert any(f"run={run['run_id']}" in url for url in links), urls
    grid_steps = DEFAULT_STEPS[GRID_SAMPLER]
    for url in urls:
        query = parse_qs(urlsplit(url).query)
        assert query.get("sampler") != [REPORT_SAMPLER], f"{url} starts the report's 1000-step sampler"
    for url in links:
        query = parse_qs(urlsplit(url).query)
        assert query["sampler"] == [GRID_SAMPLER] and query["steps"] == [str(grid_steps)], url

    # GET /samples without a sampler draws the same grid a link names: the same job, not another.
    link = next(url for url in links if f"run={run['run_id']}" in url)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    bare = {k: v for k, v in query.items() if k not in ("sampler", "steps")}
    by_link, by_default = client.get(link), client.get("/samples", params=bare)
    assert by_link.status_code in (200, 202) and by_default.status_code in (200, 202), by_default.text
    if by_link.status_code == 202:
        job = client.get(f"/jobs/{by_link.json()['job_id']}").json()
        assert job["params"]["sampler"] == GRID_SAMPLER and job["params"]["steps"] == grid_steps
        assert by_default.json()["job_id"] == by_link.json()["job_id"]  # joined: the same grid
        wait_for(client, job["id"], finished, timeout=300)
    else:
        assert by_default.headers["etag"] == by_link.headers["etag"]
    # The report's sampler is one option away, and says so when asked for.
    report = client.get("/samples", params={**bare, "sampler": REPORT_SAMPLER, "n": 1})
    assert report.status_code in (200, 202), report.text
    if report.status_code == 202:
        assert "sampler=ddpm" in report.json()["links"]["result"]
        client.delete(f"/jobs/{report.json()['job_id']}")  # 1000 steps are not this test's business


def test_ddpm_sample_s_default_is_the_grid_default_and_the_report_s_is_named() -> None:
    from ddpm.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["sample", "--run", "x", "--out", "x.png"])
    assert args.sampler == GRID_SAMPLER and args.steps is None  # None: the sampler's own, 50 for ddim
    help_text = " ".join(
        next(
            action.choices["sample"].format_help()
            for action in parser._actions
            if getattr(action, "choices", None) and "sample" in action.choices
        ).split()
    )
    assert "ddpm: the report's 1000-step ancestral sampler" in help_text and "(default: ddim)" in help_text
