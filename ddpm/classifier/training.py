"""Training a classifier: a seeded small ResNet on a labelled data set, held-out accuracy, exact resume.

Every random draw (weight init, batch order, crops, flips) comes from seeded CPU generators whose state
is saved at each epoch end in checkpoints/latest.safetensors, so an interrupted run resumed from it
ends with exactly the weights of an uninterrupted one (same device and software). The learning rate
is a pure function of the step. The finished classifier is written to classifier.safetensors with
its held-out accuracy, the split and the class names (ddpm/classifier/checkpoint.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ddpm.classifier.checkpoint import (
    RESNET,
    ClassifierFile,
    load_classifier_file,
    read_classifier_meta,
    save_classifier_file,
)
from ddpm.classifier.config import ClassifierConfig, ResNetSpec
from ddpm.classifier.inference import accuracy, class_probabilities
from ddpm.classifier.model import MODEL_RANGE, build_resnet_classifier
from ddpm.classifier.split import holdout_split, indices_digest
from ddpm.classifier.stats import wilson_interval
from ddpm.classifier.store import ClassifierDir
from ddpm.data import ImageSet, epoch_order, load_dataset
from ddpm.device import resolve_device
from ddpm.errors import Cancelled, CheckpointError, DatasetUnavailable, InvalidOption
from ddpm.runs import CANCELLED, FAILED, RUNNING, SUCCEEDED
from ddpm.seeding import STREAM_CLASSIFIER_TRAINING, derive_seed


@dataclass(frozen=True)
class ClassifierProgress:
    name: str
    step: int
    total_steps: int
    epoch: int  # epochs completed
    loss: float
    elapsed: float  # seconds in this process
    eta: float | None
    holdout_accuracy: float | None  # the last epoch end's, None before the first

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps


@dataclass
class ClassifierHooks:
    """on_progress runs after every step (it may raise Cancelled); should_stop is polled between steps."""

    on_progress: list[Callable[[ClassifierProgress], None]] = field(default_factory=list)
    should_stop: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class ClassifierTrainResult:
    name: str
    status: str  # succeeded or cancelled
    epoch: int
    step: int
    total_steps: int
    accuracy: float | None  # held-out accuracy of the finished classifier
    path: Path  # the classifier file (succeeded) or the latest training state (cancelled)


def labelled(data: ImageSet) -> tuple[torch.Tensor, tuple[str, ...]]:
    if data.labels is None or len(data.class_names) < 2:
        raise DatasetUnavailable(
            f"data set {data.name} has no class labels: a folder data set needs one subfolder per class "
            "(torchvision's ImageFolder layout), with at least two classes"
        )
    return data.labels, data.class_names


def cosine_lr(base: float, step: int, total_steps: int) -> float:
    """The learning rate of `step` (0-based): cosine decay from base to zero over the run."""
    return base * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def random_crops(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to `padding` pixels each way (zero padding), offsets drawn from generator."""
    if padding == 0:
        return images
    size = images.shape[-1]
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (images.shape[0], 2), generator=generator).tolist()
    return torch.stack([padded[i, :, y : y + size, x : x + size] for i, (y, x) in enumerate(offsets)])


@dataclass
class _Session:
    """One training process's state: the data and split, the network and its optimiser, the step."""

    images: torch.Tensor
    labels: torch.Tensor
    train_idx: torch.Tensor
    holdout_idx: torch.Tensor
    flip: bool
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    meta: dict[str, Any]  # what every file and the record say of this classifier
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    _order: tuple[int, torch.Tensor] | None = None  # (epoch, permutation of train_idx positions)

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self.step // self.steps_per_epoch

    def order(self, epoch: int, seed: int) -> torch.Tensor:
        """The batch order of `epoch`: a pure function of (seed, epoch), so resume needs no state."""
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.train_idx), seed, epoch))
        return self._order[1]


@dataclass
class _EpochTotals:
    """Loss and accuracy of the training batches of one epoch (those run by this process)."""

    loss: float = 0.0
    correct: int = 0
    seen: int = 0

    def add(self, loss: float, correct: int, seen: int) -> None:
        self.loss += loss * seen
        self.correct += correct
        self.seen += seen

    def row(self) -> dict[str, float | None]:
        if not self.seen:
            return {"loss": None, "train_accuracy": None}
        return {"loss": self.loss / self.seen, "train_accuracy": self.correct / self.seen}


class ClassifierTrainer:
    def __init__(
        self,
        config: ClassifierConfig,
        data_dir: Path,
        name: str | None = None,
        device: str = "auto",
        hooks: ClassifierHooks | None = None,
    ) -> None:
        self.config = config
        self.folder = ClassifierDir.of(data_dir, name or config.default_name())
        self.data_dir = Path(data_dir)
        self.device = resolve_device(device)
        self.hooks = hooks or ClassifierHooks()

    def run(self, resume: bool = True) -> ClassifierTrainResult:
        """Train (continuing from the latest state when resume and there is one); a failure is recorded
        in classifier.json with its message, then re-raised."""
        try:
            return self._train(resume)
        except BaseException as err:
            message = str(err) or type(err).__name__
            if self.folder.exists():
                self.folder.update(status=FAILED, error=message, ready=False)
            else:
                now = time.time()
                self.folder.write(
                    {
                        "name": self.folder.name,
                        "arch": RESNET,
                        "dataset": self.config.dataset,
                        "image_size": self.config.image_size,
                        "config": self.config.to_dict(),
                        "status": FAILED,
                        "error": message,
                        "ready": False,
                        "created": now,
                        "updated": now,
                    }
                )
            raise

    def _prepare(self, resume: bool) -> _Session:
        """Data, split, seeded network, optimiser and generator; restored from the latest state if any."""
        cfg = self.config
        data = load_dataset(cfg.dataset, self.data_dir, cfg.image_size)
        labels, class_names = labelled(data)
        train_idx, holdout_idx = (
            torch.from_numpy(a) for a in holdout_split(labels.numpy(), cfg.holdout, cfg.seed)
        )
        spec = cfg.network(len(class_names), data.images.shape[1])
        steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
        total_steps = cfg.epochs * steps_per_epoch
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's generator
            torch.manual_seed(derive_seed(cfg.seed, STREAM_CLASSIFIER_TRAINING, 0))
            net = build_resnet_classifier(spec).to(self.device)
        session = _Session(
            images=data.images,
            labels=labels,
            train_idx=train_idx,
            holdout_idx=holdout_idx,
            flip=data.default_flip if cfg.flip is None else cfg.flip,
            net=net,
            optimizer=torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
            generator=torch.Generator().manual_seed(derive_seed(cfg.seed, STREAM_CLASSIFIER_TRAINING, 1)),
            meta=self._meta(
                spec, data, labels, class_names, train_idx, holdout_idx, steps_per_epoch, total_steps
            ),
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
        )
        state = self._resume_state() if resume else None
        if state is not None:
            self._restore(session, state)
        return session

    def _restore(self, session: _Session, state: ClassifierFile) -> None:
        self._check_resumable(state.meta, session.meta)
        session.net.network.load_state_dict(state.weights)
        if state.optimizer is None:
            raise CheckpointError(f"classifier {self.folder.name}'s latest state has no optimizer state")
        session.optimizer.load_state_dict(state.optimizer)
        session.generator.set_state(state.rng["generator"])
        step = int(state.meta["step"])
        if step > session.total_steps:
            raise InvalidOption(
                f"classifier {self.folder.name} has trained {step} steps ({step // session.steps_per_epoch} "
                f"epochs); {self.config.epochs} epochs are {session.total_steps} steps: resume with more epochs"
            )
        session.step = step
        session.history = [row for row in state.meta.get("history", []) if row["step"] <= step]

    def _train(self, resume: bool) -> ClassifierTrainResult:
        session = self._prepare(resume)
        existing = self.folder.read() if self.folder.exists() else {}
        self.folder.write(
            {
                **session.meta,
                "status": RUNNING,
                "ready": False,
                "device": str(self.device),
                "step": session.step,
                "epoch": session.epoch,
                "history": session.history,
                "created": existing.get("created", time.time()),
                "updated": time.time(),
            }
        )
        holdout_images = session.images[session.holdout_idx]
        holdout_labels = session.labels[session.holdout_idx]
        session.net.train()
        started = time.monotonic()
        start_step = session.step
        status = SUCCEEDED
        totals = _EpochTotals()
        last_accuracy = session.history[-1]["holdout_accuracy"] if session.history else None
        try:
            while session.step < session.total_steps:
                if self.hooks.should_stop():
                    status = CANCELLED
                    break
                loss = self._step(session, totals)
                if session.step % session.steps_per_epoch == 0 or session.step == session.total_steps:
                    last_accuracy = self._evaluate(session.net, holdout_images, holdout_labels)
                    session.history.append(
                        {
                            "epoch": session.epoch,
                            "step": session.step,
                            **totals.row(),
                            "holdout_accuracy": last_accuracy,
                            "seconds": time.monotonic() - started,
                        }
                    )
                    totals = _EpochTotals()
                    self._save_state(session)
                elapsed = time.monotonic() - started
                rate = (session.step - start_step) / elapsed if elapsed > 0 else 0.0
                progress = ClassifierProgress(
                    name=self.folder.name,
                    step=session.step,
                    total_steps=session.total_steps,
                    epoch=session.epoch,
                    loss=loss,
                    elapsed=elapsed,
                    eta=(session.total_steps - session.step) / rate if rate > 0 else None,
                    holdout_accuracy=last_accuracy,
                )
                for hook in self.hooks.on_progress:
                    hook(progress)
        except Cancelled:
            status = CANCELLED
        if status == CANCELLED:
            return self._cancel(session)
        return self._finish(session, holdout_images, holdout_labels)

    def _step(self, session: _Session, totals: _EpochTotals) -> float:
        """One optimizer step on the batch of session.step: order from (seed, epoch), crops then flips
        from the session's generator, learning rate from the step. Returns the batch loss."""
        cfg = self.config
        epoch, index = divmod(session.step, session.steps_per_epoch)
        order = session.order(epoch, cfg.seed)
        chosen = session.train_idx[order[index * cfg.batch_size : (index + 1) * cfg.batch_size]]
        batch = random_crops(session.images[chosen], cfg.crop_padding, session.generator)
        if session.flip:
            flips = torch.rand(batch.shape[0], generator=session.generator) < 0.5
            batch = torch.where(flips[:, None, None, None], batch.flip(-1), batch)
        target = session.labels[chosen].to(self.device)
        for group in session.optimizer.param_groups:
            group["lr"] = cosine_lr(cfg.lr, session.step, session.total_steps)
        logits = session.net(batch.to(self.device))
        loss = F.cross_entropy(logits, target)
        session.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        session.optimizer.step()
        session.step += 1
        totals.add(loss.item(), int((logits.argmax(dim=1) == target).sum()), len(chosen))
        return loss.item()

    def _cancel(self, session: _Session) -> ClassifierTrainResult:
        """Keep the last completed step, so a cancelled classifier can be resumed exactly."""
        if session.step > 0 and not self._latest_at(session.step):
            self._save_state(session)
        self.folder.update(status=CANCELLED, step=session.step, epoch=session.epoch, history=session.history)
        return ClassifierTrainResult(
            self.folder.name,
            CANCELLED,
            session.epoch,
            session.step,
            session.total_steps,
            None,
            self.folder.latest_path,
        )

    def _meta(
        self,
        spec: ResNetSpec,
        data: ImageSet,
        labels: torch.Tensor,
        class_names: tuple[str, ...],
        train_idx: torch.Tensor,
        holdout_idx: torch.Tensor,
        steps_per_epoch: int,
        total_steps: int,
    ) -> dict[str, Any]:
        """What the record and every file of this classifier say about it (step-dependent parts aside)."""
        channels = data.images.shape[1]
        return {
            "name": self.folder.name,
            "arch": RESNET,
            "network": spec.to_dict(),
            "parameters": sum(p.numel() for p in build_resnet_classifier(spec).parameters()),
            "preprocess": {
                "mean": list(MODEL_RANGE[:channels]),
                "std": list(MODEL_RANGE[:channels]),
                "input_size": None,
            },
            "dataset": self.config.dataset,
            "image_size": self.config.image_size,
            "channels": channels,
            "class_names": list(class_names),
            "class_counts": torch.bincount(labels, minlength=len(class_names)).tolist(),
            "split": {
                "seed": self.config.seed,
                "fraction": self.config.holdout,
                "stratified": True,
                "n_train": len(train_idx),
                "n_holdout": len(holdout_idx),
                "digest": indices_digest(holdout_idx.numpy()),
            },
            "config": self.config.to_dict(),
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
        }

    def _resume_state(self) -> ClassifierFile | None:
        if not self.folder.latest_path.exists():
            return None
        return load_classifier_file(self.folder.latest_path, training_state=True)

    def _check_resumable(self, stored: dict[str, Any], mine: dict[str, Any]) -> None:
        differs = self.config.resume_conflicts(stored.get("config", {}))
        if differs:
            raise InvalidOption(
                f"cannot resume classifier {self.folder.name}: it was trained with different {differs} "
                "(only epochs may change on resume)"
            )
        if stored.get("split") != mine["split"] or stored.get("class_names") != mine["class_names"]:
            raise InvalidOption(
                f"cannot resume classifier {self.folder.name}: its data set's images or classes changed "
                f"(held-out split {stored.get('split')} then, {mine['split']} now)"
            )

    def _evaluate(self, net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
        value = accuracy(class_probabilities(net, images, device=self.device), labels)
        net.train()
        return value

    def _latest_at(self, step: int) -> bool:
        path = self.folder.latest_path
        return path.exists() and read_classifier_meta(path).get("step") == step

    def _save_state(self, session: _Session) -> None:
        state_meta = {
            **session.meta,
            "step": session.step,
            "epoch": session.epoch,
            "history": session.history,
        }
        content = ClassifierFile(
            meta=state_meta,
            weights=session.net.network.state_dict(),
            optimizer=session.optimizer.state_dict(),
            rng={"generator": session.generator.get_state()},
        )
        save_classifier_file(self.folder.latest_path, content)
        self.folder.update(step=session.step, epoch=session.epoch, history=session.history)

    def _finish(
        self, session: _Session, holdout_images: torch.Tensor, holdout_labels: torch.Tensor
    ) -> ClassifierTrainResult:
        probabilities = class_probabilities(session.net, holdout_images, device=self.device)
        correct = int((probabilities.argmax(dim=1) == holdout_labels).sum())
        final = {
            **session.meta,
            "step": session.step,
            "epoch": session.epoch,
            "accuracy": correct / len(holdout_labels),
            "accuracy_ci95": list(wilson_interval(correct, len(holdout_labels))),
            "history": session.history,
        }
        content = ClassifierFile(final, session.net.network.state_dict(), holdout=session.holdout_idx)
        save_classifier_file(self.folder.weights_path, content)
        self.folder.update(
            **final, status=SUCCEEDED, ready=True, file=self.folder.weights_path.name, error=None
        )
        return ClassifierTrainResult(
            self.folder.name,
            SUCCEEDED,
            session.epoch,
            session.step,
            session.total_steps,
            final["accuracy"],
            self.folder.weights_path,
        )


def train_classifier(
    config: ClassifierConfig,
    data_dir: Path,
    name: str | None = None,
    device: str = "auto",
    hooks: ClassifierHooks | None = None,
    resume: bool = True,
) -> ClassifierTrainResult:
    """Train `config` into DATA_DIR/classifiers/<name> (default resnet-<dataset>-<size>px), resuming from
    its latest state when there is one; the engine's one entry point for classifier training."""
    return ClassifierTrainer(config, data_dir, name, device, hooks).run(resume=resume)
