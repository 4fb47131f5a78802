"""Celery workers: one process per GPU runs training, sampling and FID jobs through the engine (ddpm/).

The worker's main process imports no torch (tasks import the engine inside their bodies), so a
prefork child initialises CUDA itself, and `celery -A workers.app` starts in about a second.
"""
