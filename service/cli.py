"""`ddpm serve` (API + one worker, embedded Redis when REDIS_URL is unset), `ddpm worker` and
`ddpm jobs rebuild` (job records back into Redis from the data volume).

Heavy imports (uvicorn, celery, the app) happen inside the handlers so `ddpm --help` stays fast.
"""

from __future__ import annotations

import argparse

from ddpm.device import check_device_name
from ddpm.errors import InvalidOption


def _device(value: str) -> str:
    """--device, checked before anything starts (torch-free: the API process never loads torch)."""
    try:
        return check_device_name(value)
    except InvalidOption as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="start the HTTP API and its two workers (with an embedded Redis when REDIS_URL is unset)",
        description="API on http://HOST:PORT (OpenAPI at /docs) plus two Celery workers on one device, one for "
        "trainings and one for grids, FID and analyses; CUDA when present, else CPU. Without REDIS_URL, a private Redis persists job records under DATA_DIR/redis.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address the API listens on")
    serve.add_argument("--port", type=int, default=8000, help="port the API listens on")
    serve.add_argument("--no-worker", action="store_true", help="API only (workers run elsewhere)")
    serve.add_argument(
        "--device",
        type=_device,
        help="worker device: auto (default: CUDA when usable, else the CPU), cpu or cuda[:N] (the worker "
        "exits saying why if it cannot use it) (env DDPM_DEVICE)",
    )
    serve.set_defaults(handler=cmd_serve)

    worker = subparsers.add_parser(
        "worker",
        help="run one Celery worker against REDIS_URL (one per GPU)",
        description="One worker process runs one job at a time. On a multi-GPU host start one per GPU, "
        "e.g. CUDA_VISIBLE_DEVICES=1 ddpm worker.",
    )
    worker.add_argument(
        "--device",
        type=_device,
        help="auto (default: CUDA when usable, else the CPU, logged), cpu or cuda[:N] (exits with status 78 "
        "and the reason, e.g. the NVIDIA driver found and the one needed, if it cannot use it) "
        "(env DDPM_DEVICE)",
    )
    worker.add_argument("--name", help="Celery node name (default ddpm-<pid>@<host>)")
    worker.add_argument("--loglevel", default="INFO", help="Celery's log level")
    worker.add_argument(
        "celery_args",
        nargs=argparse.REMAINDER,
        metavar="-- CELERY_OPTIONS",
        help="further `celery worker` options after --, e.g. -- --max-memory-per-child 64000000",
    )
    worker.set_defaults(handler=cmd_worker)

    jobs = subparsers.add_parser("jobs", help="job records (in Redis, mirrored on the data volume)")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    rebuild = jobs_commands.add_parser(
        "rebuild",
        help="put back the job records Redis lacks from DATA_DIR/jobs (after Redis lost its data)",
        description="Restores every record on the volume that Redis lacks: queued jobs are published "
        "again, running ones are re-queued once their old lease lapses, finished ones come back as they "
        "ended. Workers do this by themselves when they see Redis lost its data; this does it now.",
    )
    rebuild.set_defaults(handler=cmd_jobs_rebuild)


def cmd_serve(args: argparse.Namespace) -> int:
    from service.serve import serve

    return serve(args.data_dir, args.host, args.port, worker=not args.no_worker, device=args.device)


def cmd_worker(args: argparse.Namespace) -> int:
    import os
    import sys

    from service.serve import worker_command, worker_env

    env = worker_env(args.data_dir, args.device)
    extra = args.celery_args[1:] if args.celery_args[:1] == ["--"] else args.celery_args
    command = worker_command(args.name, args.loglevel) + extra
    os.execvpe(sys.executable, command, {**os.environ, **env})  # become the worker: signals reach it directly
    return 0  # not reached


def cmd_jobs_rebuild(args: argparse.Namespace) -> int:
    from jobs.mirror import JobMirror, restore_jobs
    from jobs.publish import JobQueue
    from jobs.settings import Settings
    from jobs.store import JobStore

    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    mirror = JobMirror.of(settings.data_dir)
    store = JobStore.from_url(
        settings.redis_url, settings.key_prefix, settings.job_ttl_s, settings.redis_timeout_s, mirror
    )
    report = restore_jobs(store, JobQueue(settings).enqueue, settings.lease_s)
    store.mark_restored()
    print(f"{report.summary()} (from {mirror.folder})")
    return 0
