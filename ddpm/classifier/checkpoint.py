"""The classifier file format: one safetensors file, written atomically, loaded without unpickling.

Tensors: `net.*` (the network's state dict), `split.holdout` (the held-out image indices, int64),
and in training states `optim.<param>.<key>` (AdamW) and `rng.*` (generator states). Metadata: a
format tag of its own (a diffusion checkpoint is refused, and the other way round) and JSON `meta`:
name, arch, network, preprocess (mean, std, input_size), dataset, image_size, channels, class_names,
class_counts, split, accuracy, config, epoch, step. So a classifier is rebuilt from its file alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ddpm.checkpoints import _flatten_optimizer, _unflatten_optimizer
from ddpm.classifier.config import ResNetSpec
from ddpm.classifier.model import ClassifierNet, SmallResNet, build_torchvision
from ddpm.errors import CheckpointError
from ddpm.storage import atomic_write

FORMAT = "ddpm-arch-bench/classifier/1"
RESNET = "resnet"  # `arch` of the classifiers our engine trains; others are torchvision names


@dataclass
class ClassifierFile:
    meta: dict[str, Any]
    weights: dict[str, torch.Tensor]
    holdout: torch.Tensor | None = None
    optimizer: dict[str, Any] | None = None
    rng: dict[str, torch.Tensor] = field(default_factory=dict)


def save_classifier_file(path: Path, content: ClassifierFile) -> None:
    tensors = {f"net.{name}": value for name, value in content.weights.items()}
    tensors.update({f"rng.{name}": value for name, value in content.rng.items()})
    if content.holdout is not None:
        tensors["split.holdout"] = content.holdout.to(torch.int64)
    metadata = {"format": FORMAT, "meta": json.dumps(content.meta, sort_keys=True)}
    if content.optimizer is not None:
        optim_tensors, optim_info = _flatten_optimizer(content.optimizer)
        tensors.update(optim_tensors)
        metadata["optimizer"] = json.dumps(optim_info)
    tensors = {name: value.detach().to("cpu").contiguous() for name, value in tensors.items()}
    atomic_write(path, lambda temp: save_file(tensors, str(temp), metadata=metadata))


def read_classifier_meta(path: Path) -> dict[str, Any]:
    return _open(path, lambda handle, meta: meta)


def load_classifier_file(path: Path, training_state: bool = False) -> ClassifierFile:
    def read(handle: Any, meta: dict[str, Any]) -> ClassifierFile:
        groups: dict[str, dict[str, torch.Tensor]] = {"net": {}, "split": {}, "optim": {}, "rng": {}}
        for name in handle.keys():  # noqa: SIM118 (safe_open handles are not iterable)
            prefix, rest = name.split(".", 1)
            if prefix in ("net", "split") or (training_state and prefix in groups):
                groups[prefix][rest] = handle.get_tensor(name)
        optimizer = None
        if training_state and "optimizer" in handle.metadata():
            optimizer = _unflatten_optimizer(groups["optim"], json.loads(handle.metadata()["optimizer"]))
        return ClassifierFile(meta, groups["net"], groups["split"].get("holdout"), optimizer, groups["rng"])

    content = _open(path, read)
    if not content.weights:
        raise CheckpointError(f"classifier file {path} holds no network weights")
    return content


def build_network(meta: dict[str, Any]) -> ClassifierNet:
    """The classifier described by a file's metadata, with fresh weights."""
    preprocess = meta["preprocess"]
    if meta["arch"] == RESNET:
        network = SmallResNet(ResNetSpec.from_dict(meta["network"]))
    else:
        network = build_torchvision(
            meta["arch"], len(meta["class_names"]), meta["network"].get("stem", "imagenet")
        )
    return ClassifierNet(network, preprocess["mean"], preprocess["std"], preprocess.get("input_size"))


def load_classifier(path: Path, device: torch.device | str = "cpu") -> tuple[ClassifierNet, dict[str, Any]]:
    """The classifier in eval mode on `device`, and its metadata."""
    content = load_classifier_file(path)
    try:
        net = build_network(content.meta)
        net.network.load_state_dict(content.weights, strict=True)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"classifier file {path} does not match its own metadata: {err}") from err
    return net.to(device).eval(), content.meta


def _open(path: Path, read: Any) -> Any:
    if not path.is_file():
        raise CheckpointError(f"classifier file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CheckpointError(
                    f"{path} is not a classifier file of this project (format {metadata.get('format')!r}, "
                    f"expected {FORMAT!r})"
                )
            return read(handle, json.loads(metadata["meta"]))
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises its own error type for truncated/garbled files
        raise CheckpointError(
            f"classifier file {path} is corrupt or truncated ({type(err).__name__}: {err}); "
            "train or import the classifier again"
        ) from err
