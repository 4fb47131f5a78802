"""`ddpm serve`'s worker, kept alive: a worker that dies (killed, out of memory, a crash) is restarted
while the API keeps answering. Restarts are spaced by a doubling delay (1 s, 2 s, 4 s, ... up to 30 s),
back to 1 s once a worker has stayed up for a minute, so a worker that cannot start (no GPU, a bad
setting) is retried at a bounded rate, with a log line each time, instead of spinning or stopping the
service. Only Ctrl-C or SIGTERM to `ddpm serve` stops it.

When the worker dies, whatever is left of it (its pool process, which may still be running a job) is
killed, and its heartbeat key is removed so /readyz says at once that no worker is there. Its jobs are
re-queued by the new worker as it starts (workers/app.py: a worker takes back the jobs its previous
incarnation, of the same name, left running).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
STABLE_AFTER_S = 60.0  # a worker up this long is healthy: the next restart starts from FIRST_DELAY_S
STOP_TIMEOUT_S = 15.0  # warm shutdown (finish the step, keep a checkpoint), then cold


@dataclass
class RestartBackoff:
    """The delay before each restart: doubling from `first_s` up to `max_s`, reset once a worker has
    run for `stable_s`."""

    first_s: float = FIRST_DELAY_S
    max_s: float = MAX_DELAY_S
    stable_s: float = STABLE_AFTER_S
    restarts: int = 0  # since the last stable run

    def next_delay(self, ran_for_s: float) -> float:
        if ran_for_s >= self.stable_s:
            self.restarts = 0
        delay = min(self.max_s, self.first_s * 2**self.restarts)
        self.restarts += 1
        return delay


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def log(message: str) -> None:
    print(f"ddpm serve: {message}", file=sys.stderr, flush=True)


class WorkerSupervisor:
    """Runs `command` as the worker (its own session, so Ctrl-C reaches `ddpm serve` first and the
    worker is stopped warm, then Redis), restarting it whenever it dies until stop() is called.
    `on_death(hostname)` runs after each death, before the restart delay."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        on_death: Callable[[], None] = lambda: None,
        backoff: RestartBackoff | None = None,
    ) -> None:
        self.command, self.env, self.on_death = command, env, on_death
        self.backoff = backoff or RestartBackoff()
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # stop() and a restart never race on self.process
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = subprocess.Popen(self.command, env=self.env, start_new_session=True)
                started = time.monotonic()
            code = self.process.wait()
            if self._stopping.is_set():
                return
            ran_for = time.monotonic() - started
            _kill_group(self.process.pid)  # its pool process may still be running a job
            try:
                self.on_death()
            except Exception as err:  # Redis down: the heartbeat key expires by itself
                log(f"could not clear the dead worker's heartbeat ({err})")
            delay = self.backoff.next_delay(ran_for)
            log(
                f"the worker (pid {self.process.pid}) stopped after {ran_for:.0f}s ({describe_exit(code)}); "
                f"restarting it in {delay:g}s (restart {self.backoff.restarts} in a row); "
                "the API keeps answering, /readyz says no_workers until it is back"
            )
            if self._stopping.wait(delay):
                return

    def stop(self) -> int | None:
        """Stop the worker (warm, then cold) and restart it no more; its exit code, if it ran."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                process.wait()
        self._thread.join(timeout=5)
        return process.returncode


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
