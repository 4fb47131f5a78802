"""One-command local start: embedded Redis (unless REDIS_URL is set), one worker, the API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ddpm.settings import data_dir as resolve_data_dir

WORKER_STOP_TIMEOUT_S = 15.0


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

    env = worker_env(data_dir, device)
    root = Path(env["DATA_DIR"])
    signal.signal(signal.SIGTERM, _on_sigterm)
    embedded = None
    if not os.environ.get("REDIS_URL"):
        embedded = EmbeddedRedis(root / "redis")
        env["REDIS_URL"] = embedded.start()
        print(f"embedded Redis at {env['REDIS_URL']} (data in {root / 'redis'})", file=sys.stderr)
    os.environ.update(env)  # the in-process API reads its Settings from the environment

    process = None
    worker_died = threading.Event()
    try:
        if worker:
            # Its own session too: on Ctrl-C we stop it first (warm), then Redis.
            process = subprocess.Popen(worker_command(), env={**os.environ}, start_new_session=True)
            threading.Thread(target=_exit_with_worker, args=(process, worker_died), daemon=True).start()
        print(f"API on http://{host}:{port} (docs at /docs), DATA_DIR={root}", file=sys.stderr)
        uvicorn.run("service.app:app", host=host, port=port, log_level="info")
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        if process is not None:
            _stop_worker(process)
        if embedded is not None:
            embedded.stop()
    return 1 if worker_died.is_set() else 0


def _exit_with_worker(process: subprocess.Popen[bytes], died: threading.Event) -> None:
    """The worker dying is fatal to `ddpm serve` (its jobs would never run): stop the API too."""
    code = process.wait()
    if not _stopping.is_set():
        died.set()
        print(f"the worker exited (code {code}); stopping", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)


_stopping = threading.Event()


def _stop_worker(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (SIGTERM: finish the current task), then, if a job is still running, cold.

    A job interrupted here stays `running` until a live worker sees its heartbeat go stale and marks
    it failed; training keeps its checkpoints and can be resumed.
    """
    _stopping.set()
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
