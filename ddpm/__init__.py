"""The diffusion engine: noise schedule, samplers, data, training, sampling, checkpoints and the CLI.

Roles are kept apart: `schedule` and `samplers` import no network; `training` and `sampling` run a
model from `models`; `checkpoints` owns the on-disk format; `cli` is the `ddpm` command.
"""
