"""One-command local start: embedded Redis (unless REDIS_URL is set; restarted when it dies), two
workers on the same device, one for trainings and one for interactive jobs (each restarted when it dies:
service/supervisor.py), the API. Ctrl-C or SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

from ddpm.settings import data_dir as resolve_data_dir

WORKER_ROLES = ("train", "interactive")  # DDPM_CONSUME of the two workers `ddpm serve` starts


def worker_env(data_dir: str | None, device: str | None) -> dict[str, str]:
    env = {"DATA_DIR": str(resolve_data_dir(data_dir))}
    if device:
        env["DDPM_DEVICE"] = device
    return env


def worker_command(name: str | None = None, loglevel: str = "INFO") -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "workers.app", "worker",
        "--loglevel", loglevel,
        "--concurrency", "1",  # one job at a time per GPU; run one worker per GPU
        "--hostname", name or f"ddpm-{os.getpid()}@%h",
        "--without-mingle", "--without-gossip",  # our own heartbeat keys replace them; faster start
    ]  # fmt: skip


class _Stop(Exception):
    """SIGTERM, turned into an exception so the cleanup below runs (uvicorn re-raises the signal
    after its own graceful shutdown; the default action would kill us before stopping the worker)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stop


def serve(data_dir: str | None, host: str, port: int, worker: bool = True, device: str | None = None) -> int:
    import uvicorn

    from service.embedded_redis import EmbeddedRedis
    from service.supervisor import WorkerSupervisor

    env = worker_env(data_dir, device)
    root = Path(env["DATA_DIR"])
    signal.signal(signal.SIGTERM, _on_sigterm)
    embedded = None
    if not os.environ.get("REDIS_URL"):
        embedded = EmbeddedRedis(root / "redis")
        env["REDIS_URL"] = embedded.start()
        embedded.supervise()  # a Redis that dies is started again, like the worker
        print(f"embedded Redis at {env['REDIS_URL']} (data in {root / 'redis'})", file=sys.stderr)
    os.environ.update(env)  # the in-process API reads its Settings from the environment

    supervisors: list[WorkerSupervisor] = []
    try:
        if worker:
            # Two consumers on the same device: trainings, and everything a user waits for (grids, FID,
            # analyses), so a grid never waits hours behind a training (jobs/publish.py).
            for consume in WORKER_ROLES:
                name = f"ddpm-{consume}-{os.getpid()}@{socket.gethostname()}"
                supervisor = WorkerSupervisor(
                    worker_command(name),
                    {**os.environ, "DDPM_CONSUME": consume},
                    lambda name=name: _forget_worker(name),  # type: ignore[misc]
                )
                supervisor.start()
                supervisors.append(supervisor)
        print(f"API on http://{host}:{port} (docs at /docs), DATA_DIR={root}", file=sys.stderr)
        uvicorn.run("service.app:app", host=host, port=port, log_level="info")
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        for supervisor in supervisors:
            supervisor.stop()  # warm: a running job stops after its step and keeps a checkpoint
        if embedded is not None:
            embedded.stop()
    return 0


def _forget_worker(name: str) -> None:
    """Remove a dead worker's heartbeat at once, so /readyz stops listing it (it would expire anyway)."""
    from jobs.registry import WorkerRegistry
    from jobs.settings import Settings
    from jobs.store import JobStore

    settings = Settings()
    store = JobStore.from_url(
        settings.redis_url, settings.key_prefix, settings.job_ttl_s, settings.redis_timeout_s
    )
    WorkerRegistry(store.client, store.prefix).forget(name)
