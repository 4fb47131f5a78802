"""`ddpm serve` (API + one worker, embedded Redis when REDIS_URL is unset) and `ddpm worker`.

Heavy imports (uvicorn, celery, the app) happen inside the handlers so `ddpm --help` stays fast.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="start the HTTP API and one worker (with an embedded Redis when REDIS_URL is unset)",
        description="API on http://HOST:PORT (OpenAPI at /docs) plus one Celery worker; CUDA when present, "
        "else CPU. Without REDIS_URL, a private Redis persists job records under DATA_DIR/redis.",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="API only (workers run elsewhere)")
    serve.add_argument("--device", help="worker device: auto (default), cpu or cuda[:N] (env DDPM_DEVICE)")
    serve.set_defaults(handler=cmd_serve)

    worker = subparsers.add_parser(
        "worker",
        help="run one Celery worker against REDIS_URL (one per GPU)",
        description="One worker process runs one job at a time. On a multi-GPU host start one per GPU, "
        "e.g. CUDA_VISIBLE_DEVICES=1 ddpm worker.",
    )
    worker.add_argument("--device", help="auto (default), cpu or cuda[:N] (env DDPM_DEVICE)")
    worker.add_argument("--name", help="Celery node name (default ddpm-<pid>@<host>)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=cmd_worker)


def cmd_serve(args: argparse.Namespace) -> int:
    from service.serve import serve

    return serve(args.data_dir, args.host, args.port, worker=not args.no_worker, device=args.device)


def cmd_worker(args: argparse.Namespace) -> int:
    import os
    import sys

    from service.serve import worker_command, worker_env

    env = worker_env(args.data_dir, args.device)
    command = worker_command(args.name, args.loglevel)
    os.execvpe(sys.executable, command, {**os.environ, **env})  # become the worker: signals reach it directly
    return 0  # not reached
