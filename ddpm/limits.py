"""The engine's limits and defaults, in one torch-free place.

The engine's checks (ddpm.training, ddpm.sampling, ddpm.samplers, ddpm.data, ddpm.runs) and the API's
request schemas both import these, so a bound is written once. Service-only limits that operators tune
(how many images one grid may hold, how long a request may wait) live in the service's Settings.
"""

from __future__ import annotations

# Training (TrainConfig)
MAX_EPOCHS = 10_000
MAX_BATCH = 4096
MAX_WIDTH = 4.0  # channel multiplier; 1.0 = the report's sizes
MAX_TRAIN_STEPS = 10**9
MAX_SEED = 2**63 - 1  # training seeds; sampling seeds go through numpy's SeedSequence (non-negative)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 256
MAX_LR = 1.0  # lr is in (0, MAX_LR]
# What a resume may change: everything else is part of the run's identity (model, data, optimiser,
# and arithmetic: TrainConfig.bf16 is not here on purpose).
RESUMABLE_CHANGES = ("epochs", "max_steps", "checkpoint_every")

# Sampling
MAX_SAMPLES = 50_000  # per request; FID's largest N, CIFAR-10's training-set size
SCHEDULE_STEPS = 1000  # the schedule's T
MAX_SAMPLER_STEPS = SCHEDULE_STEPS  # DDIM steps are in [1, T]
DDPM_STEPS = SCHEDULE_STEPS  # the ddpm sampler always runs all T steps
DEFAULT_DDIM_STEPS = 50
SAMPLERS = ("ddpm", "ddim")
MAX_NROW = 1000

# FID
MIN_FID_SAMPLES = 2  # a covariance needs at least two feature vectors
MAX_FID_SWEEP = 16  # at most this many N values in one FID-vs-N sweep
DEFAULT_FID_SAMPLES = 4096  # the report's Table 1

# Data and runs
BUILTIN_DATASETS = ("cifar10", "digits")
FOLDER_PREFIX = "folder:"
RUN_ID_REGEX = r"^[a-z0-9][a-z0-9_.-]{0,127}$"  # URL- and path-safe
