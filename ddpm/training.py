"""The training engine: AdamW on the eps-MSE loss, checkpoints, exact resume, loss history, hooks.

Every random draw of training (batch order, flips, timesteps, noise) comes from CPU generators whose
state is saved in each checkpoint, so an interrupted run resumed from its latest checkpoint ends with
exactly the weights of an uninterrupted one on the CPU (bit for bit, tested). On CUDA it resumes the
same data, noise and optimizer state, but not the same bits: some CUDA backward kernels add in a
different order from run to run, so two uninterrupted CUDA runs differ in their last bits too
(docs/architecture.md, Determinism).

The device is kept busy: each step's batch is drawn on the CPU (and copied from pinned memory
without blocking) while the device runs the previous step, and the loss is read back (a host-device
synchronisation) only every `sync_every` steps (CUDA_SYNC_EVERY on CUDA, every step on CPU).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ddpm.checkpoint_schedule import KeepSchedule, effective_epochs, keep_schedule
from ddpm.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from ddpm.data import check_dataset_name, epoch_order, grey, load_dataset, to_model_range
from ddpm.device import resolve_device
from ddpm.errors import Cancelled, CheckpointError, InvalidOption
from ddpm.fastpath import FastPath, fp32_precision, prepare_for_training, to_layout, training_path
from ddpm.limits import (
    GRAYSCALE_DATASETS,
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_TRAIN_STEPS,
    MAX_WIDTH,
    MIN_IMAGE_SIZE,
    PREDATED_TRAIN_OPTIONS,
    RESUMABLE_CHANGES,
)
from ddpm.runs import (
    CANCELLED,
    FAILED,
    LOSS_HEADER,
    RUNNING,
    SUCCEEDED,
    RunDir,
    new_run_id,
    run_record,
)
from ddpm.schedule import SCHEDULE_KINDS, NoiseSchedule, make_schedule
from ddpm.seeding import STREAM_TRAINING, derive_seed

# loss.csv is read while training runs (GET /runs/{id}/loss.png): its rows reach the disk at least this
# often, besides every epoch end.
LOSS_FLUSH_S = 5.0
# On CUDA the losses are read back, and progress reported and the cancel flag polled, every this many
# steps: reading a loss waits for the device, and the step after it would start from an idle device.
CUDA_SYNC_EVERY = 10


@dataclass(frozen=True)
class TrainConfig:
    """The report's defaults: CIFAR-10, 100 epochs, batch 128, AdamW lr 2e-4, no EMA."""

    arch: str
    dataset: str = "cifar10"
    epochs: int = 100
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 0.01  # AdamW's default decoupled decay; the report names AdamW without a value
    seed: int = 0
    width: float = 1.0
    channels: tuple[int, ...] | None = None
    checkpoint_every: int = 10  # epochs between kept checkpoints (the final one is always kept)
    ema: bool = False
    ema_decay: float = 0.9999
    # The EMA's decay ramps up as min(ema_decay, (1 + step) / (10 + step)), so a short run's average is of
    # trained weights, not mostly the random init (0.9999 keeps 90% of the init after 1,000 steps).
    # Records written before this option had no ramp: `PREDATED` says so.
    ema_warmup: bool = True
    flip: bool | None = None  # None: the dataset's default (on for CIFAR-10 and folders, off for digits)
    image_size: int = 32
    schedule: str = "linear"  # or "cosine" (Nichol & Dhariwal 2021)
    dropout: float | None = None  # None: the arch's own (0 for the report's variants, 0.1 for ddpm_original)
    # bf16 autocast for the network's forward and backward (the loss, weights and AdamW stay fp32). Part
    # of the run's arithmetic: recorded in checkpoints, and a resume may not change it.
    bf16: bool = False
    # One-channel network and data. None: the data set's own (grey for digits, RGB otherwise). A config
    # written before this option existed trained three channels: `PREDATED` says so for old records.
    grayscale: bool | None = None

    def __post_init__(self) -> None:
        from models import resolve_arch

        object.__setattr__(self, "arch", resolve_arch(self.arch))
        check_dataset_name(self.dataset)
        if self.grayscale is None:
            object.__setattr__(self, "grayscale", self.dataset in GRAYSCALE_DATASETS)
        if not isinstance(self.grayscale, bool):
            raise InvalidOption(f"grayscale must be true, false or unset, got {self.grayscale!r}")
        _check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        if self.max_steps is not None:
            _check_int("max_steps", self.max_steps, 1, MAX_TRAIN_STEPS)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        _check_int("checkpoint_every", self.checkpoint_every, 1, MAX_EPOCHS)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        if not (0 < self.lr <= 1):
            raise InvalidOption(f"lr must be in (0, 1], got {self.lr}")
        if not (0 <= self.weight_decay < 1):
            raise InvalidOption(f"weight_decay must be in [0, 1), got {self.weight_decay}")
        if not (0 < self.width <= MAX_WIDTH):
            raise InvalidOption(f"width must be in (0, {MAX_WIDTH}], got {self.width}")
        if not (0 < self.ema_decay < 1):
            raise InvalidOption(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(self.channels))
        if self.schedule not in SCHEDULE_KINDS:
            raise InvalidOption(
                f"schedule {self.schedule!r} is not valid; choose one of {list(SCHEDULE_KINDS)}"
            )
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise InvalidOption(f"dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.bf16, bool):
            raise InvalidOption(f"bf16 must be true or false, got {self.bf16!r}")
        if self.dataset == "cifar10" and self.image_size != 32:
            raise InvalidOption(
                f"cifar10 images are 32x32 (got image_size={self.image_size}); image_size applies to digits "
                f"and folder datasets"
            )

    def model_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"width": self.width}
        if self.channels:
            options["channels"] = self.channels
        if self.dropout is not None:
            options["dropout"] = self.dropout
        if self.grayscale:
            options["in_channels"] = 1
        return options

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config as to_dict wrote it (or as a request sent it); an option it predates had the value
        it had then (PREDATED), else its default."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidOption(f"unknown training options {unknown}; valid: {sorted(known)}")
        return cls(**{**PREDATED, **data})


PREDATED: dict[str, Any] = dict(PREDATED_TRAIN_OPTIONS)  # ddpm/limits.py says why


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidOption(f"{name} must be an integer in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class TrainProgress:
    run_id: str
    step: int
    total_steps: int
    epoch: int  # epochs completed so far
    loss: float
    lr: float
    elapsed: float  # seconds in this process
    eta: float | None  # seconds left, from this process's step rate

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    status: str  # succeeded or cancelled
    step: int
    total_steps: int
    checkpoints: list[dict[str, Any]]
    final_loss: float | None


@dataclass
class TrainHooks:
    """on_progress runs once for every step, in step order (reporters throttle themselves), but only
    once the step's loss has been read back: every step on CPU; on CUDA, in bursts every
    CUDA_SYNC_EVERY steps and at every epoch end, checkpoint and the last step. should_stop is polled
    between steps at those same points (so a cancel takes effect within CUDA_SYNC_EVERY steps on
    CUDA). on_checkpoint runs after each checkpoint is safely on disk."""

    on_progress: list[Callable[[TrainProgress], None]] = field(default_factory=list)
    on_checkpoint: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    should_stop: Callable[[], bool] = lambda: False


class _Ema:
    """Exponential moving average of the weights (Ho et al. use 0.9999); off by default as in the report.
    With `warmup` the decay of update k (k = 0, 1, ...) is min(decay, (1 + k) / (10 + k)), the ramp of
    TensorFlow's ExponentialMovingAverage(num_updates): early averages forget the random init quickly."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay_at(self, update: int) -> float:
        return min(self.decay, (1 + update) / (10 + update)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, update: int) -> None:
        """Fold in the weights after update number `update` (the step just taken, 0-based)."""
        decay = self.decay_at(update)
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[name].lerp_(value, 1.0 - decay)
            else:
                self.shadow[name].copy_(value)


@dataclass
class _Parts:
    """What one training is made of, built once per process (Trainer._build)."""

    images: torch.Tensor  # uint8 (N, C, H, W), the whole data set in memory
    flip: bool
    steps_per_epoch: int
    total_steps: int
    keep: KeepSchedule  # the steps that keep a checkpoint
    model_config: dict[str, Any]
    model: torch.nn.Module
    fast: FastPath
    device: torch.device
    optimizer: torch.optim.Optimizer
    ema: _Ema | None
    generator: torch.Generator  # every random draw of training: flips, timesteps, noise
    schedule: NoiseSchedule


@dataclass
class _Batch:
    """One step's batch on the device (its copies may still be in flight) and the training generator's
    state before it was drawn: what a checkpoint saved after the previous step must record."""

    step: int
    epoch: int
    x0: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor
    generator_state: torch.Tensor


class _Batches:
    """The batch of each step: one permutation per epoch (a pure function of (seed, epoch)); flips,
    timesteps and noise from the training generator, in that order, so a resumed run draws the same."""

    def __init__(self, parts: _Parts, config: TrainConfig) -> None:
        self.parts, self.seed, self.batch_size = parts, config.seed, config.batch_size
        self.order, self.order_epoch = torch.empty(0, dtype=torch.long), -1

    def staged(self, step: int) -> _Batch:
        """The step's batch, drawn on the CPU and sent to the device: on CUDA from pinned memory
        without blocking, so the CPU goes on while the copy and the step before it run."""
        state = self.parts.generator.get_state()
        epoch, *tensors = self.draw(step)
        x0, t, eps = (_to_device(v, self.parts.device) for v in tensors)
        return _Batch(step, epoch, x0, t, eps, state)

    def draw(self, step: int) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(epoch, x0, t, eps) for the step, on the CPU."""
        parts = self.parts
        epoch, index = divmod(step, parts.steps_per_epoch)
        if self.order_epoch != epoch:
            self.order, self.order_epoch = epoch_order(len(parts.images), self.seed, epoch), epoch
        batch = parts.images[self.order[index * self.batch_size : (index + 1) * self.batch_size]]
        x0 = to_model_range(batch)
        if parts.flip:
            flips = torch.rand(x0.shape[0], generator=parts.generator) < 0.5
            x0 = torch.where(flips[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(0, parts.schedule.timesteps, (x0.shape[0],), generator=parts.generator)
        eps = torch.randn(x0.shape, generator=parts.generator)
        return epoch, x0, t, eps


def _to_device(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type != "cuda":
        return value
    return value.pin_memory().to(device, non_blocking=True)


class _StepClock:
    """Seconds since this process started training, and the ETA from its step rate. The first steps
    read back (allocation, kernel selection) are slow, so the rate is timed from their end."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first_step: int | None = None
        self.first_step_done = 0.0
        self.last_step = 0
        self.elapsed = 0.0

    def tick(self, step: int) -> float:
        """The time at which step `step` (and every step before it) is known to be done."""
        self.elapsed = time.monotonic() - self.started
        self.last_step = step
        if self.first_step is None:
            self.first_step, self.first_step_done = step, self.elapsed
        return self.elapsed

    def eta(self, step: int, total_steps: int) -> float | None:
        timed = self.elapsed - self.first_step_done
        rate = (self.last_step - (self.first_step or 0)) / timed if timed > 0 else 0.0
        return (total_steps - step) / rate if rate > 0 else (0.0 if step == total_steps else None)


class Trainer:
    """One training run in one run directory; `run()` trains until done, cancelled or max_steps."""

    def __init__(
        self,
        config: TrainConfig,
        data_dir: Path,
        run_id: str | None = None,
        device: str = "auto",
        hooks: TrainHooks | None = None,
        prefetch: bool = True,
        sync_every: int | None = None,
    ) -> None:
        """prefetch: draw and send each batch while the previous step runs (False: just before its
        step; the same draws, so the same training). sync_every: steps between loss read-backs
        (None: CUDA_SYNC_EVERY on CUDA, 1 on CPU); the same training whatever it is."""
        self.config = config
        self.data_dir = data_dir
        self.run = RunDir.of(data_dir, run_id or new_run_id(config.arch))
        self.device = resolve_device(device)
        self.hooks = hooks or TrainHooks()
        self.prefetch = prefetch
        if sync_every is not None and sync_every < 1:
            raise InvalidOption(f"sync_every must be a positive number of steps, got {sync_every}")
        self.sync_every = sync_every or (CUDA_SYNC_EVERY if self.device.type == "cuda" else 1)
        self._resume_notes: dict[str, Any] = {}  # which checkpoint a resume used, when it had to skip some

    def run_training(self, resume: bool = True) -> TrainResult:
        """Train; with resume, continue from the run's latest checkpoint when there is one.

        Any failure (missing data included) is recorded in run.json with its message, then re-raised.
        """
        try:
            return self._train(resume)
        except BaseException as err:
            message = str(err) or type(err).__name__
            if self.run.exists():
                self.run.update(status=FAILED, error=message)
            else:
                self.run.write(
                    run_record(
                        self.run.run_id, self.config.arch, self.config.to_dict(), FAILED, error=message
                    )
                )
            raise

    def _train(self, resume: bool) -> TrainResult:
        parts = self._build()
        step, checkpoints = self._restore(parts, resume)
        self._write_record(parts, step, checkpoints, RUNNING)
        self._truncate_loss_history(step)
        batches = _Batches(parts, self.config)
        clock = _StepClock()
        parts.model.train()
        loss_file = self.run.loss_path.open("a", buffering=1 << 16)
        loss_flushed = 0.0
        loss_value: float | None = None
        pending: list[tuple[int, int, torch.Tensor]] = []  # (step, epoch, loss on the device), not read yet
        next_batch: _Batch | None = None  # drawn ahead: the generator has moved past it
        status = SUCCEEDED
        try:
            while step < parts.total_steps:
                if not pending and self.hooks.should_stop():
                    status = CANCELLED
                    break
                batch, next_batch = next_batch or batches.staged(step), None
                pending.append((step + 1, batch.epoch, self._step(parts, batch)))
                step += 1
                if self.prefetch and step < parts.total_steps:
                    next_batch = batches.staged(step)  # on the CPU, while the device runs the step
                epoch_done = step % parts.steps_per_epoch == 0
                keep = parts.keep.keeps(step)
                if not (epoch_done or keep or step % self.sync_every == 0):
                    continue
                elapsed = clock.tick(step)
                done = self._read_back(pending, elapsed, loss_file)
                loss_value = done[-1][1]
                self._report(done, parts, clock, elapsed)
                if epoch_done or keep or elapsed - loss_flushed >= LOSS_FLUSH_S:
                    loss_file.flush()
                    loss_flushed = elapsed
                if epoch_done or keep:
                    self._save(parts, step, checkpoints, keep, next_batch)
        except Cancelled:
            status = CANCELLED
        finally:
            loss_file.close()
        if status == CANCELLED and step > 0 and not self._latest_is_at(step):
            # Keep the last completed step so a cancelled run can be resumed or sampled.
            self._save(parts, step, checkpoints, keep=True, next_batch=next_batch)
        self.run.update(status=status, step=step, checkpoints=checkpoints)
        return TrainResult(self.run.run_id, status, step, parts.total_steps, checkpoints, loss_value)

    def _read_back(
        self, pending: list[tuple[int, int, torch.Tensor]], elapsed: float, loss_file: Any
    ) -> list[tuple[int, float]]:
        """[(step, loss)] of the pending steps, read in one host-device synchronisation, their loss
        rows written (before any hook runs, so a hook that cancels leaves no trained step out of the
        history). Empties `pending`."""
        losses = torch.stack([loss for _, _, loss in pending]).tolist()
        for (step, epoch, _), loss in zip(pending, losses, strict=True):
            loss_file.write(f"{step},{epoch},{loss:.6g},{self.config.lr:.6g},{elapsed:.3f}\n")
        done = [(step, loss) for (step, _, _), loss in zip(pending, losses, strict=True)]
        pending.clear()
        return done

    def _report(
        self, done: list[tuple[int, float]], parts: _Parts, clock: _StepClock, elapsed: float
    ) -> None:
        """on_progress for each step read back, in step order."""
        for step, loss in done:
            progress = TrainProgress(
                run_id=self.run.run_id,
                step=step,
                total_steps=parts.total_steps,
                epoch=step // parts.steps_per_epoch,
                loss=loss,
                lr=self.config.lr,
                elapsed=elapsed,
                eta=clock.eta(step, parts.total_steps),
            )
            for hook in self.hooks.on_progress:
                hook(progress)

    def _build(self) -> _Parts:
        """The data, a seeded network on the device's fast path, its optimiser, EMA, generator, schedule."""
        from models import arch_config, build_from_config

        cfg = self.config
        data = load_dataset(cfg.dataset, self.data_dir, cfg.image_size)
        steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
        total_steps = cfg.epochs * steps_per_epoch
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        model_config = arch_config(cfg.arch, **cfg.model_options())
        with torch.random.fork_rng(devices=[]):  # seeded weight init without touching the caller's RNG
            torch.manual_seed(derive_seed(cfg.seed, STREAM_TRAINING, 0))
            model = build_from_config(model_config).to(self.device)
        # The device's fast path (layout, TF32, the run's bf16): checkpoints stay contiguous.
        fast = training_path(self.device, bf16=cfg.bf16)
        model = prepare_for_training(model, fast)
        return _Parts(
            images=grey(data.images) if cfg.grayscale else data.images,
            flip=data.default_flip if cfg.flip is None else cfg.flip,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            keep=keep_schedule(
                total_steps, steps_per_epoch, cfg.checkpoint_every, total_steps < cfg.epochs * steps_per_epoch
            ),
            model_config=model_config.to_dict(),
            model=model,
            fast=fast,
            device=self.device,
            optimizer=torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
            ema=_Ema(model, cfg.ema_decay, cfg.ema_warmup) if cfg.ema else None,
            generator=torch.Generator().manual_seed(derive_seed(cfg.seed, STREAM_TRAINING, 1)),
            schedule=make_schedule(cfg.schedule),
        )

    def _restore(self, parts: _Parts, resume: bool) -> tuple[int, list[dict[str, Any]]]:
        """(step, kept checkpoints) to start from: the newest loadable checkpoint's state when resuming,
        else a fresh, seeded start."""
        state = self._newest_loadable_state() if resume else None
        if state is None:
            self.run.path.mkdir(parents=True, exist_ok=True)
            # torch's global generators drive dropout: seed them so a fresh run is reproducible too.
            torch.manual_seed(derive_seed(self.config.seed, STREAM_TRAINING, 2))
            return 0, []
        self._check_resumable(state)
        parts.model.load_state_dict(state.model)
        if state.optimizer is None:
            raise CheckpointError(f"checkpoint at step {state.step} has no optimizer state to resume from")
        parts.optimizer.load_state_dict(state.optimizer)
        _match_parameter_layout(parts.optimizer)
        if parts.ema is not None:
            weights = parts.model.state_dict()
            parts.ema.shadow = {k: _like(weights[k], v) for k, v in state.ema.items()}
        parts.generator.set_state(state.rng["generator"])
        _restore_global_rng(state.rng, self.device)
        checkpoints = [c for c in self.run.read().get("checkpoints", []) if c["step"] <= state.step]
        return state.step, checkpoints

    @staticmethod
    def _step(parts: _Parts, batch: _Batch) -> torch.Tensor:
        """One optimiser step, queued on the device; the loss before the step (read back later).

        Under bf16 only the network runs in bfloat16: its output is cast back, and the noise, the
        loss, the gradients' accumulation into fp32 weights and AdamW stay fp32."""
        fast = parts.fast
        x0, eps = to_layout(batch.x0, fast), to_layout(batch.eps, fast)

        def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with torch.autocast(parts.device.type, dtype=torch.bfloat16, enabled=fast.bf16):
                out = parts.model(x, t)
            return out.float()

        with fp32_precision(fast.tf32) if parts.device.type == "cuda" else nullcontext():
            loss = parts.schedule.loss(eps_fn, x0, batch.t, eps)
            parts.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parts.optimizer.step()
        if parts.ema is not None:
            parts.ema.update(parts.model, batch.step)
        return loss.detach()

    def _newest_loadable_state(self) -> Checkpoint | None:
        """The newest checkpoint that loads: latest, else kept ones newest first (a corrupt or truncated
        file is skipped and named in run.json). None when the run has no checkpoint at all."""
        candidates = [self.run.latest_path] + [path for _, path in reversed(self.run.kept_checkpoints())]
        existing = [path for path in candidates if path.exists()]
        skipped: list[str] = []
        for path in existing:
            try:
                state = load_checkpoint(path, training_state=True)
            except CheckpointError as err:
                skipped.append(str(err))
                continue
            if skipped:
                self._resume_notes = {"resumed_from": path.name, "skipped_checkpoints": skipped}
            return state
        if existing:
            raise CheckpointError(
                f"run {self.run.run_id} has no loadable checkpoint to resume from: {skipped}"
            )
        return None

    def _check_resumable(self, state: Checkpoint) -> None:
        stored = state.meta.get("train_config", {})
        mine = self.config.to_dict()
        # Only how long to train and how often to keep checkpoints may change on resume. An option a
        # checkpoint predates (e.g. bf16) had its default value then.
        may_change = set(RESUMABLE_CHANGES)
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)} | PREDATED
        differs = sorted(
            k
            for k in mine
            if k not in may_change and _jsonish(stored.get(k, defaults.get(k))) != _jsonish(mine[k])
        )
        if differs:
            raise InvalidOption(
                f"cannot resume run {self.run.run_id}: its checkpoint was trained with different {differs} "
                f"(only {sorted(may_change)} may change on resume)"
            )

    def _latest_is_at(self, step: int) -> bool:
        from ddpm.checkpoints import read_meta

        return self.run.latest_path.exists() and read_meta(self.run.latest_path).get("step") == step

    def _write_record(self, parts: _Parts, step: int, checkpoints: list[dict[str, Any]], status: str) -> None:
        existing = self.run.read() if self.run.exists() else {}
        self.run.write(
            run_record(
                self.run.run_id,
                self.config.arch,
                self.config.to_dict(),
                status,
                created=existing.get("created"),
                device=str(self.device),
                model_config=parts.model_config,
                total_steps=parts.total_steps,
                steps_per_epoch=parts.steps_per_epoch,
                # What the run trains, beside the `epochs` its config asked for (max_steps may cut it).
                effective_epochs=effective_epochs(parts.total_steps, parts.steps_per_epoch),
                limited_by="max_steps"
                if parts.total_steps < self.config.epochs * parts.steps_per_epoch
                else "epochs",
                **parts.keep.record(),
                step=step,
                checkpoints=checkpoints,
                **self._resume_notes,
            )
        )

    def _truncate_loss_history(self, step: int) -> None:
        """Drop rows past the resumed step: those steps are trained again and logged again."""
        path = self.run.loss_path
        if not path.exists():
            path.write_text(",".join(LOSS_HEADER) + "\n")
            return
        lines = path.read_text().splitlines()
        kept = [lines[0]] + [line for line in lines[1:] if line and int(line.split(",", 1)[0]) <= step]
        path.write_text("\n".join(kept) + "\n")

    def _save(
        self,
        parts: _Parts,
        step: int,
        checkpoints: list[dict[str, Any]],
        keep: bool,
        next_batch: _Batch | None = None,
    ) -> None:
        """Checkpoint the state after `step`. The generator state saved is the one before the next
        batch's draws (`next_batch`, when it was drawn ahead), so a resume draws that batch again."""
        meta = {
            "run_id": self.run.run_id,
            "arch": self.config.arch,
            "model_config": parts.model_config,
            "train_config": self.config.to_dict(),
            "step": step,
            "epoch": step / parts.steps_per_epoch,
            "time": time.time(),
        }
        checkpoint = Checkpoint(
            meta=meta,
            model=parts.model.state_dict(),
            ema=parts.ema.shadow if parts.ema is not None else {},
            optimizer=parts.optimizer.state_dict(),
            rng={
                "generator": next_batch.generator_state if next_batch else parts.generator.get_state(),
                **_global_rng(self.device),
            },
        )
        # Kept checkpoint first, then latest: a crash between the two still resumes from a step <= kept.
        if keep:
            path = self.run.checkpoint_path(step)
            save_checkpoint(path, checkpoint)
            entry = {"file": path.name, "step": step, "epoch": meta["epoch"], "time": meta["time"]}
            checkpoints[:] = [c for c in checkpoints if c["step"] != step] + [entry]
        save_checkpoint(self.run.latest_path, checkpoint)
        self.run.update(step=step, checkpoints=checkpoints)
        if keep:
            for hook in self.hooks.on_checkpoint:
                hook(checkpoints[-1])


def _global_rng(device: torch.device) -> dict[str, torch.Tensor]:
    """Dropout draws from torch's global generators: saved so that resume stays exact with dropout."""
    states = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["torch_cuda"] = torch.cuda.get_rng_state(device)
    return states


def _restore_global_rng(states: dict[str, torch.Tensor], device: torch.device) -> None:
    if "torch_cpu" in states:
        torch.set_rng_state(states["torch_cpu"])
    if device.type == "cuda" and "torch_cuda" in states:
        torch.cuda.set_rng_state(states["torch_cuda"], device)


def _like(reference: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` on `reference`'s device with its memory layout (strides): checkpoints hold contiguous
    tensors, the training weights may be channels-last."""
    if value.shape != reference.shape or value.stride() == reference.stride():
        return value.to(reference.device)
    return torch.empty_like(reference, dtype=value.dtype).copy_(value)


def _match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give restored optimizer state (AdamW's exp_avg, exp_avg_sq) its parameter's layout, as a fresh
    run's zeros_like(param) has: a contiguous moment beside a channels-last weight is converted at
    every step and keeps the update off the fast multi-tensor path."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                # Only the moments: AdamW's step count is a scalar that stays where it is.
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    state[key] = _like(param, value)


def _jsonish(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def train(
    config: TrainConfig,
    data_dir: Path,
    run_id: str | None = None,
    device: str = "auto",
    hooks: TrainHooks | None = None,
    resume: bool = True,
) -> TrainResult:
    """Train `config` in DATA_DIR/runs/<run_id> (a new id when None); the engine's one entry point."""
    return Trainer(config, data_dir, run_id, device, hooks).run_training(resume=resume)
