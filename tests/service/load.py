"""Load check: N concurrent clients poll a job and fetch a cached sample grid for a fixed time.

    .venv/bin/python -m tests.service.load --base http://127.0.0.1:8000 --prepare --clients 50 --seconds 60

--prepare first makes what the clients read through the real path (a 2-step training of a tiny model
and a 4-image DDIM grid from it, run by a worker), then measures; or name them yourself with
--job JOB_ID --sample '/samples?run=RUN&n=4&sampler=ddim&steps=2'. Every request must answer 200 (the
grid as image/png); prints count, rate, p50/p99/max latency and the errors, and exits 1 on any error.
Not a pytest test: it needs a running API (docs/reliability.md).

--mode picks what the clients send: `mixed` (the default: the job, the grid and the job list in turn),
`sample` (the cached grid only) or `train` (POST /train of a tiny digits run, each answered 202). Every
POST /train creates a job and a run: point it at an API with a throwaway DATA_DIR and DDPM_KEY_PREFIX
and a DDPM_QUEUE no worker consumes (docs/performance.md, "API overhead").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import httpx

# The smallest real model: a 16x16 digits training of two steps, and a 4-image DDIM grid from it.
PREPARE_TRAIN = {
    "arch": "pure_unet",
    "dataset": "digits",
    "width": 0.125,
    "image_size": 16,
    "batch_size": 8,
    "epochs": 1,
    "max_steps": 2,
}
PREPARE_TIMEOUT_S = 300.0


def prepare(base: str, headers: dict[str, str]) -> tuple[str, str]:
    """(job id, sample path): a finished training and its cached grid, made by the API's worker."""
    with httpx.Client(base_url=base, headers=headers, timeout=PREPARE_TIMEOUT_S) as http:
        accepted = http.post("/train", json=PREPARE_TRAIN)
        accepted.raise_for_status()
        job_id, run_id = accepted.json()["job_id"], accepted.json()["run_id"]
        deadline = time.monotonic() + PREPARE_TIMEOUT_S
        while (job := http.get(f"/jobs/{job_id}").json())["state"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise SystemExit(f"training {job_id} did not finish in {PREPARE_TIMEOUT_S:.0f}s: {job}")
            time.sleep(0.5)
        if job["state"] != "succeeded":
            raise SystemExit(f"training {job_id} {job['state']}: {job.get('error')}")
        sample = f"/samples?run={run_id}&n=4&sampler=ddim&steps=2&seed=0"
        grid = http.get(f"{sample}&wait={PREPARE_TIMEOUT_S:.0f}")
        if grid.status_code != 200:
            raise SystemExit(f"the grid was not made: {grid.status_code} {grid.text[:200]}")
    print(f"prepared: job {job_id}, grid {sample}")
    return job_id, sample


# POST /train's body in --mode train: a valid tiny run (each request creates one; no worker runs it).
LOAD_TRAIN = {**PREPARE_TRAIN, "arch": "convnext", "max_steps": 1}
TRAIN_PATH = "POST /train"


async def _send(http: httpx.AsyncClient, path: str) -> str | None:
    """One request; None when it answered as it should, else what went wrong."""
    if path == TRAIN_PATH:
        response = await http.post("/train", json=LOAD_TRAIN)
        return None if response.status_code == 202 else f"{response.status_code} {response.text[:200]}"
    response = await http.get(path)
    ok = response.status_code == 200 and (
        "/samples" not in path or response.headers.get("content-type") == "image/png"
    )
    return None if ok else f"{response.status_code} {response.text[:200]}"


async def _client(
    http: httpx.AsyncClient,
    paths: list[str],
    until: float,
    latencies: dict[str, list[float]],
    errors: list[str],
) -> None:
    i = 0
    while time.monotonic() < until:
        path = paths[i % len(paths)]
        i += 1
        started = time.perf_counter()
        try:
            error = await _send(http, path)
            if error:
                errors.append(f"{path}: {error}")
        except httpx.HTTPError as err:
            errors.append(f"{path}: {type(err).__name__}: {err}")
        latencies[path].append(time.perf_counter() - started)


def _figures(latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"


async def run(base: str, paths: list[str], clients: int, seconds: float, api_key: str | None) -> int:
    latencies: dict[str, list[float]] = {path: [] for path in paths}
    errors: list[str] = []
    headers = {"X-API-Key": api_key} if api_key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as http:
        until = time.monotonic() + seconds
        await asyncio.gather(*(_client(http, paths, until, latencies, errors) for _ in range(clients)))
    every = [latency for per_path in latencies.values() for latency in per_path]
    if not every:
        print("no request completed")
        return 1
    print(
        f"{len(every)} requests in {seconds:.0f}s from {clients} clients ({len(every) / seconds:.0f}/s); "
        f"{_figures(every)}; errors {len(errors)}"
    )
    for path, per_path in latencies.items():
        if per_path:
            print(f"   {path}: {len(per_path)} requests, {_figures(per_path)}")
    for error in errors[:10]:
        print("  ", error)
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--prepare", action="store_true", help="make the job and grid first (needs a worker)")
    parser.add_argument("--job", help="a job id to poll (GET /jobs/ID)")
    parser.add_argument("--sample", help="a GET /samples path whose grid is cached")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--api-key")
    parser.add_argument("--mode", choices=("mixed", "sample", "train"), default="mixed")
    args = parser.parse_args()
    if args.mode == "train":
        paths = [TRAIN_PATH]
        return asyncio.run(run(args.base, paths, args.clients, args.seconds, args.api_key))
    if args.prepare:
        args.job, args.sample = prepare(args.base, {"X-API-Key": args.api_key} if args.api_key else {})
    elif not (args.sample and (args.job or args.mode == "sample")):
        parser.error("give --job and --sample (--mode sample: --sample), or --prepare")
    paths = [args.sample] if args.mode == "sample" else [f"/jobs/{args.job}", args.sample, "/jobs?limit=20"]
    return asyncio.run(run(args.base, paths, args.clients, args.seconds, args.api_key))


if __name__ == "__main__":
    sys.exit(main())
