"""Bounds on request values, in one place.

They mirror the engine's checks (ddpm.training, ddpm.sampling), which import torch and so cannot be
imported here; tests/service/test_limits.py asserts the two agree. Service-only limits (how many
images one grid may hold, how long a request may wait) live in Settings, since operators tune them.
"""

from __future__ import annotations

MAX_EPOCHS = 10_000  # ddpm.training.MAX_EPOCHS
MAX_BATCH = 4096  # ddpm.training.MAX_BATCH
MAX_WIDTH = 4.0  # ddpm.training.MAX_WIDTH
MAX_TRAIN_STEPS = 10**9  # TrainConfig.max_steps
MAX_SEED = 2**63 - 1  # TrainConfig.seed; sampling seeds go through numpy's SeedSequence (non-negative)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 256  # TrainConfig.image_size
MAX_LR = 1.0  # TrainConfig.lr is in (0, 1]

MAX_SAMPLES = 50_000  # ddpm.sampling.MAX_SAMPLES (per request; FID's largest N)
MAX_SAMPLER_STEPS = 1000  # the schedule's T; DDIM steps are in [1, T]
DDPM_STEPS = 1000  # the ddpm sampler always runs all T steps
DEFAULT_DDIM_STEPS = 50  # ddpm.samplers.sample's default for ddim
MAX_NROW = 1000
SAMPLERS = ("ddpm", "ddim")

MIN_FID_SAMPLES = 2  # a covariance needs at least two feature vectors
MAX_FID_SWEEP = 16  # at most this many N values in one FID-vs-N sweep
DEFAULT_FID_SAMPLES = 4096  # the report's Table 1

BUILTIN_DATASETS = ("cifar10", "digits")  # ddpm.data.BUILTIN_DATASETS
FOLDER_PREFIX = "folder:"  # ddpm.data.FOLDER_PREFIX
