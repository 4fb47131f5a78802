"""Request batching, measured through the real service: 8 sampling requests one by one vs all at once.

    .venv/bin/python scripts/bench_batching.py --arch baseline --width 0.25 --image-size 32 --steps 50

Starts `ddpm serve` (API + one CPU worker) on a throwaway DATA_DIR and Redis key prefix, trains a
checkpoint of the given size for two steps through POST /train (sampling speed does not depend on
training), makes one warm-up grid, then:

  one by one  each GET /samples?...&wait= waits for its grid before the next is sent;
  together    the same 8 requests sent at once (the grids deleted first, so nothing is cached).

It prints images/s both ways, their ratio, the batches the worker ran (from the job records), and
checks every grid is byte-identical between the two passes. Exits 1 if any is not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 1800  # a grid's longest wait (GET /samples?wait=); the service's cap is raised to match


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """`ddpm serve` in its own process group, on a throwaway data dir and key prefix."""

    def __init__(self, redis_url: str, window_s: float, threads: int | None) -> None:
        self.redis_url = redis_url
        self.tag = f"bench-{uuid.uuid4().hex[:8]}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="ddpm-bench-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "DDPM_KEY_PREFIX": self.tag,
            "DDPM_QUEUE": self.tag,
            "DDPM_BATCH_WINDOW_S": str(window_s),
            "DDPM_MAX_WAIT_S": str(WAIT_S),
            "DDPM_TENSORBOARD": "0",
            "DDPM_DOWNLOAD": "0",
            **({"OMP_NUM_THREADS": str(threads)} if threads else {}),
        }
        command = [sys.executable, "-m", "ddpm.cli", "--data-dir", str(self.data_dir), "serve"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"]
        self.log = (self.data_dir / "serve.log").open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"the service did not start:\n{(self.data_dir / 'serve.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()
        client = redis.Redis.from_url(self.redis_url)
        for pattern in (f"{self.tag}:*", self.tag, f"_kombu.binding.{self.tag}*"):
            keys = list(client.scan_iter(match=pattern, count=500))
            if keys:
                client.delete(*keys)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def train(http: httpx.Client, args: argparse.Namespace) -> str:
    body = {
        "arch": args.arch,
        "dataset": "digits",
        "width": args.width,
        "image_size": args.image_size,
        "batch_size": 8,
        "epochs": 1,
        "max_steps": 2,
    }
    accepted = http.post("/train", json=body)
    accepted.raise_for_status()
    job_id, run_id = accepted.json()["job_id"], accepted.json()["run_id"]
    while (job := http.get(f"/jobs/{job_id}").json())["state"] in ("queued", "running"):
        time.sleep(0.5)
    if job["state"] != "succeeded":
        raise SystemExit(f"training failed: {job.get('error')}")
    return run_id


def grid_path(run_id: str, seed: int, args: argparse.Namespace) -> str:
    return f"/samples?run={run_id}&seed={seed}&n={args.n}&sampler=ddim&steps={args.steps}&wait={WAIT_S}"


async def fetch(http: httpx.AsyncClient, path: str) -> bytes:
    response = await http.get(path)
    if response.status_code != 200 or response.headers.get("content-type") != "image/png":
        raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return response.content


async def one_by_one(http: httpx.AsyncClient, paths: list[str]) -> tuple[float, list[bytes]]:
    started = time.perf_counter()
    grids = [await fetch(http, path) for path in paths]
    return time.perf_counter() - started, grids


async def together(http: httpx.AsyncClient, paths: list[str]) -> tuple[float, list[bytes]]:
    started = time.perf_counter()
    grids = await asyncio.gather(*(fetch(http, path) for path in paths))
    return time.perf_counter() - started, list(grids)


def batches_of_last(http: httpx.Client, count: int) -> list[int]:
    """Sizes of the batches the newest `count` sampling jobs ran in."""
    jobs = http.get("/jobs", params={"kind": "sample", "limit": count}).json()["jobs"]
    leaders = Counter(job["result"]["batch"]["leader"] for job in jobs if job.get("result"))
    return sorted(leaders.values(), reverse=True)


async def measure(service: Service, args: argparse.Namespace) -> int:
    timeout = httpx.Timeout(WAIT_S + 60)
    with httpx.Client(base_url=service.base, timeout=timeout) as sync:
        run_id = train(sync, args)
        seeds = list(range(args.requests))
        paths = [grid_path(run_id, seed, args) for seed in seeds]
        limits = httpx.Limits(max_connections=args.requests)
        async with httpx.AsyncClient(base_url=service.base, timeout=timeout, limits=limits) as http:
            await fetch(http, grid_path(run_id, 10_000, args))  # warm-up: torch, the model, the fast path
            alone_s, alone = await one_by_one(http, paths)
            alone_batches = batches_of_last(sync, args.requests)
            shutil.rmtree(service.data_dir / "samples")
            together_s, batched = await together(http, paths)
            together_batches = batches_of_last(sync, args.requests)
    images = args.requests * args.n
    same = [a == b for a, b in zip(alone, batched, strict=True)]
    print(
        f"{args.arch} width {args.width} at {args.image_size}x{args.image_size}, DDIM {args.steps} steps, "
        f"{args.requests} requests of n={args.n}, batch window {args.batch_window_s:g} s"
    )
    print(f"  one by one: {alone_s:7.1f} s  {images / alone_s:6.2f} images/s  batches {alone_batches}")
    print(
        f"  together:   {together_s:7.1f} s  {images / together_s:6.2f} images/s  batches {together_batches}"
    )
    print(f"  speed-up {alone_s / together_s:.2f}x; grids byte-identical: {sum(same)}/{len(same)}")
    return 0 if all(same) else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="baseline")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--n", type=int, default=10, help="images per request")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--batch-window-s", type=float, default=0.1, help="DDPM_BATCH_WINDOW_S (0: off)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the worker (default: torch's)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    service = Service(args.redis_url, args.batch_window_s, args.threads)
    try:
        service.wait_ready()
        return asyncio.run(measure(service, args))
    finally:
        service.stop()


if __name__ == "__main__":
    sys.exit(main())
