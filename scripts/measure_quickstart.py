"""The quiet-machine measurements of docs/quickstart.md and docs/performance.md: the README's quick start
through the service (`ddpm serve` on a fresh DATA_DIR, POST /train {"preset": "digits-quick"}), a grid
requested while it trains, each grid job's pick-up-to-first-call time, an FID job at N=1024 twice with
its phases, then `ddpm bench --fid` with the fast and the eager Inception. Prints JSON lines (and appends
them to $OUT/measure.jsonl). From the repository root, on a quiet machine:

  OUT=/tmp/quick REFERENCE_FROM=<a DATA_DIR with fid/reference> COMPARE=<checkpoint> \
      .venv/bin/python scripts/measure_quickstart.py

REFERENCE_FROM (optional) copies cached reference statistics in first; COMPARE (optional) is a
checkpoint the run's last one is compared with, tensor by tensor."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

DATA = Path(os.environ.get("OUT", "quickstart-measure")).resolve()
BASE = "http://127.0.0.1:8100"
COMPARE = os.environ.get("COMPARE")
ROOT = Path(__file__).resolve().parents[1]


def say(**kw: object) -> None:
    """One JSON line, with the time and load average, to stdout and $OUT/measure.jsonl."""
    kw["t"] = time.strftime("%H:%M:%S", time.gmtime())
    kw["load"] = Path("/proc/loadavg").read_text().split()[:3]
    line = json.dumps(kw)
    print(line, flush=True)
    with (DATA / "measure.jsonl").open("a") as out:
        out.write(line + "\n")


shutil.rmtree(DATA, ignore_errors=True)
(DATA / "fid").mkdir(parents=True)
if os.environ.get("REFERENCE_FROM"):
    shutil.copytree(Path(os.environ["REFERENCE_FROM"]) / "fid" / "reference", DATA / "fid" / "reference")
serve = subprocess.Popen(
    [".venv/bin/ddpm", "serve", "--port", "8100"],
    cwd=ROOT,
    env={**os.environ, "DATA_DIR": str(DATA)},
    stdout=(DATA / "serve.log").open("wb"),  # noqa: SIM115 (open while it runs)
    stderr=subprocess.STDOUT,
    start_new_session=True,
)
c = httpx.Client(base_url=BASE, timeout=330)
try:
    for _ in range(120):
        try:
            r = c.get("/readyz")
            if r.status_code == 200 and len(r.json().get("workers", [])) >= 2:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    say(what="ready", readyz=r.json())
    t0 = time.monotonic()
    post = c.post("/train", json={"preset": "digits-quick"}).json()
    job, run = post["job_id"], post["run_id"]
    say(what="train posted", job=job, run=run)
    grid_done = False
    while True:
        j = c.get(f"/jobs/{job}").json()
        if not grid_done:
            runrec = c.get(f"/runs/{run}").json()
            steps = [cp["step"] for cp in runrec.get("checkpoints", []) if isinstance(cp, dict)]
            if steps:
                g0 = time.monotonic()
                r = c.get(
                    "/samples", params={"run": run, "checkpoint": min(steps), "seed": 0, "n": 80, "wait": 300}
                )
                j2 = c.get(f"/jobs/{job}").json()
                say(
                    what="grid during training",
                    status=r.status_code,
                    seconds=round(time.monotonic() - g0, 2),
                    checkpoint=min(steps),
                    train_step_after=j2.get("step"),
                    train_state=j2["state"],
                )
                grid_done = True
        if j["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(2)
    wall = time.monotonic() - t0
    say(what="train done", state=j["state"], wall_s=round(wall, 1), job=j)
    import torch
    from safetensors.torch import load_file

    runrec = c.get(f"/runs/{run}", params={"points": 22}).json()
    say(what="run record", run=runrec)
    if COMPARE:
        final = DATA / "runs" / run / "checkpoints" / "step-00002100.safetensors"
        a, b = load_file(str(final)), load_file(COMPARE)
        same = {k: torch.equal(a[k], b[k]) for k in a if k in b}
        say(
            what="weights equal COMPARE",
            all_equal=all(same.values()),
            n=len(same),
            keys_only_one=sorted(set(a) ^ set(b))[:5],
        )
    for seed in (0, 1, 2):
        r = c.get("/samples", params={"run": run, "seed": seed, "n": 40, "wait": 300})
        if seed == 0:
            (DATA / "readme-grid.png").write_bytes(r.content)
        jobs = c.get("/jobs", params={"kind": "sample"}).json()
        say(what="grid", seed=seed, status=r.status_code)
    jobs = c.get("/jobs").json()
    for item in jobs.get("jobs") if isinstance(jobs, dict) else jobs:
        if item.get("kind") == "sample":
            full = c.get(f"/jobs/{item['id']}").json()
            say(
                what="sample job",
                id=item["id"],
                timings=(full.get("result") or {}).get("timings"),
                compile=(full.get("result") or {}).get("compile"),
                params=full.get("params"),
            )
    for seed in (0, 1):
        f0 = time.monotonic()
        post = c.post(
            "/fid",
            json={"run": run, "dataset": "digits", "n_samples": [1024], "sampler": "ddim", "seed": seed},
        ).json()
        fj = post["job_id"]
        while (j := c.get(f"/jobs/{fj}").json())["state"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(2)
        rid = (j.get("result") or {}).get("links", {}).get("result", "")
        res = c.get(rid).json() if rid else {}
        say(
            what="fid job",
            seed=seed,
            wall_s=round(time.monotonic() - f0, 1),
            state=j["state"],
            job=j,
            timings=res.get("timings"),
            throughput=res.get("throughput"),
            fid=res.get("results") or res.get("fid"),
        )
finally:
    os.killpg(serve.pid, 2)
    serve.wait(60)

for inception in ("fast", "eager"):
    say(what="bench start", inception=inception)
    bench = subprocess.run(
        [
            ".venv/bin/ddpm",
            "bench",
            "--fid",
            "--archs",
            "baseline",
            "--width",
            "0.25",
            "--image-size",
            "16",
            "--fid-n",
            "200",
            "--fid-batch",
            "50",
            "--fid-sampler",
            "ddim:50",
            "--pairs",
            "1",
            "--threads",
            "2",
            "--fid-inception",
            inception,
            "--json",
            str(DATA / f"bench_fid_{inception}.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DATA_DIR": str(DATA)},
    )
    say(
        what="bench done",
        inception=inception,
        rc=bench.returncode,
        tail=bench.stdout[-5000:],
        err=bench.stderr[-1500:],
    )
