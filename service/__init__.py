"""The HTTP service: FastAPI routes that validate requests and enqueue jobs for the GPU workers.

Nothing in this package imports torch or the network code; `workers/` runs the models.
"""
