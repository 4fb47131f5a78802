"""Load check: N concurrent clients poll a job and fetch a cached sample grid for a fixed time.

    .venv/bin/python -m tests.service.load --base http://127.0.0.1:8000 --job JOB_ID \
        --sample '/samples?run=RUN&n=4&sampler=ddim&steps=2' --clients 50 --seconds 60

Every request must answer 200 (the grid as image/png); prints count, rate, p50/p99/max latency and
the errors, and exits 1 on any error. Not a pytest test: it needs a running API (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import httpx


async def _client(
    http: httpx.AsyncClient, paths: list[str], until: float, latencies: list[float], errors: list[str]
) -> None:
    i = 0
    while time.monotonic() < until:
        path = paths[i % len(paths)]
        i += 1
        started = time.perf_counter()
        try:
            response = await http.get(path)
            ok = response.status_code == 200 and (
                "/samples" not in path or response.headers.get("content-type") == "image/png"
            )
            if not ok:
                errors.append(f"{path}: {response.status_code} {response.text[:200]}")
        except httpx.HTTPError as err:
            errors.append(f"{path}: {type(err).__name__}: {err}")
        latencies.append(time.perf_counter() - started)


async def run(base: str, paths: list[str], clients: int, seconds: float, api_key: str | None) -> int:
    latencies: list[float] = []
    errors: list[str] = []
    headers = {"X-API-Key": api_key} if api_key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as http:
        until = time.monotonic() + seconds
        await asyncio.gather(*(_client(http, paths, until, latencies, errors) for _ in range(clients)))
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    print(
        f"{len(latencies)} requests in {seconds:.0f}s from {clients} clients ({len(latencies) / seconds:.0f}/s); "
        f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
        f"errors {len(errors)}"
    )
    for error in errors[:10]:
        print("  ", error)
    return 1 if errors or not latencies else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--job", required=True, help="a job id to poll (GET /jobs/ID)")
    parser.add_argument("--sample", required=True, help="a GET /samples path whose grid is cached")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--api-key")
    args = parser.parse_args()
    paths = [f"/jobs/{args.job}", args.sample, "/jobs?limit=20"]
    return asyncio.run(run(args.base, paths, args.clients, args.seconds, args.api_key))


if __name__ == "__main__":
    sys.exit(main())
