"""Importing a user's weights for a named torchvision architecture, without unpickling code.

Accepted files: safetensors, or a torch.save file read with torch.load(weights_only=True), which
refuses anything but tensors and plain containers. The file holds a state dict, or a dict with one under
"state_dict" or "model" (training scripts' usual wrappers); a "module." prefix (DataParallel) is dropped.
The classifier's output i is the data set's class i (torchvision's CIFAR10.classes order; digits 0-9;
ImageFolder's sorted subfolders). The result is stored in our classifier format, so analyses load it
like a trained one.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ddpm.classifier.checkpoint import ClassifierFile, build_network, save_classifier_file
from ddpm.classifier.classes import KNOWN_CLASSES
from ddpm.classifier.inference import class_probabilities
from ddpm.classifier.options import check_dataset_spec, check_int
from ddpm.classifier.split import holdout_split, indices_digest
from ddpm.classifier.stats import wilson_interval
from ddpm.classifier.store import ClassifierDir
from ddpm.data import load_dataset
from ddpm.device import resolve_device
from ddpm.errors import DatasetUnavailable, InvalidOption
from ddpm.limits import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from ddpm.runs import SUCCEEDED

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation, its weights' convention
IMAGENET_STD = (0.229, 0.224, 0.225)
STEM_CHOICES = ("auto", "imagenet", "cifar")
WRAPPER_KEYS = ("state_dict", "model")
DEFAULT_HOLDOUT = 0.2


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, loaded without running code from it."""
    path = Path(path)
    if not path.is_file():
        raise InvalidOption(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            loaded: Any = load_file(str(path))
        except Exception as err:  # safetensors' own error type for garbled files
            raise InvalidOption(
                f"{path} is not a readable safetensors file ({type(err).__name__}: {err})"
            ) from err
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as err:
            raise InvalidOption(
                f"refused {path}: torch.load(weights_only=True) cannot read it without running code from it "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Save the state dict "
                "alone (torch.save(model.state_dict(), path)) or as safetensors"
            ) from err
    for key in WRAPPER_KEYS:
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping) or not loaded:
        raise InvalidOption(f"{path} does not hold a state dict (got {type(loaded).__name__})")
    bad = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise InvalidOption(f"{path} is not a state dict of tensors: entries {bad[:5]} are not tensors")
    state = dict(loaded)
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def detect_stem(state: Mapping[str, torch.Tensor]) -> str:
    """cifar when the stem convolution (resnet conv1, densenet features.conv0) is 3x3, else imagenet."""
    for key in ("conv1.weight", "features.conv0.weight"):
        weight = state.get(key)
        if weight is not None and weight.ndim == 4:
            return "cifar" if weight.shape[-1] == 3 else "imagenet"
    return "imagenet"


def default_import_name(arch: str, dataset: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")
    return re.sub(r"[^a-z0-9_.-]+", "-", f"{arch.lower()}-{slug}")[:128]


def _check_stats(label: str, values: Sequence[float]) -> list[float]:
    values = [float(v) for v in values]
    if len(values) != 3 or (label == "std" and any(v <= 0 for v in values)):
        raise InvalidOption(
            f"{label} must be three numbers (one per RGB channel){', all > 0' if label == 'std' else ''}, got {values}"
        )
    return values


def check_input_size(
    net: torch.nn.Module, arch: str, image_size: int, classes: int, device: torch.device
) -> None:
    """A network whose downsampling outruns the image fails here, with the fix, not mid-analysis."""
    try:
        with torch.inference_mode():
            shape = tuple(
                net(torch.zeros((2, 3, image_size, image_size), dtype=torch.uint8, device=device)).shape
            )
    except RuntimeError as err:
        raise InvalidOption(
            f"torchvision's {arch} cannot classify {image_size}px images as they are ({' '.join(str(err).split())[:200]}); "
            "resize them first with input_size (--input-size), e.g. 32"
        ) from err
    if shape != (2, classes):
        raise InvalidOption(
            f"torchvision's {arch} gives outputs of shape {shape[1:]}, not ({classes},) class scores"
        )


def import_torchvision(
    data_dir: Path,
    arch: str,
    weights: Path,
    dataset: str,
    name: str | None = None,
    image_size: int = 32,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    input_size: int | None = None,
    stem: str = "auto",
    holdout: float = DEFAULT_HOLDOUT,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Check the weights load into `arch`, measure the accuracy on our seeded held-out split when the
    data set is here, and store the classifier as DATA_DIR/classifiers/<name>; returns its record."""
    check_dataset_spec(dataset)
    check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    if input_size is not None:
        check_int("input_size", input_size, MIN_IMAGE_SIZE, 1024)
    if stem not in STEM_CHOICES:
        raise InvalidOption(f"stem {stem!r} is not valid; choose one of {list(STEM_CHOICES)}")
    folder = ClassifierDir.of(data_dir, name or default_import_name(arch, dataset))
    if folder.exists():
        raise InvalidOption(f"classifier {folder.name!r} already exists; choose another name (--name)")
    mean, std = _check_stats("mean", mean), _check_stats("std", std)
    state = read_state_dict(weights)
    stem = detect_stem(state) if stem == "auto" else stem
    torch_device = resolve_device(device)

    notes: list[str] = []
    try:
        data = load_dataset(dataset, Path(data_dir), image_size)
    except DatasetUnavailable as err:
        if dataset not in KNOWN_CLASSES:
            raise
        data = None
        notes.append(f"data set not here, accuracy not measured: {err}")
    if data is not None and (data.labels is None or len(data.class_names) < 2):
        raise DatasetUnavailable(
            f"data set {dataset} has no class labels (one subfolder per class is needed)"
        )
    if data is not None:
        class_names = list(data.class_names)
        class_counts = torch.bincount(data.labels, minlength=len(class_names)).tolist()
    else:
        class_names, class_counts = (list(part) for part in KNOWN_CLASSES[dataset])

    meta: dict[str, Any] = {
        "name": folder.name,
        "arch": arch,
        "network": {"stem": stem, "num_classes": len(class_names)},
        "preprocess": {"mean": mean, "std": std, "input_size": input_size},
        "dataset": dataset,
        "image_size": image_size,
        "channels": 3,
        "class_names": class_names,
        "class_counts": class_counts,
        "source": {
            "file": Path(weights).name,
            "sha256": hashlib.sha256(Path(weights).read_bytes()).hexdigest(),
            "loader": "safetensors"
            if Path(weights).suffix == ".safetensors"
            else "torch.load(weights_only=True)",
        },
    }
    net = build_network(meta)
    try:
        net.network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InvalidOption(
            f"the weights in {weights} do not fit torchvision's {arch} with {len(class_names)} classes "
            f"({stem} stem): {' '.join(str(err).split())[:600]}"
        ) from err
    net = net.to(torch_device).eval()
    check_input_size(net, arch, image_size, len(class_names), torch_device)
    meta["parameters"] = sum(p.numel() for p in net.network.parameters())

    holdout_idx = None
    meta.update(split=None, accuracy=None, accuracy_ci95=None)
    if data is not None:
        _, holdout_np = holdout_split(data.labels.numpy(), holdout, seed)
        holdout_idx = torch.from_numpy(holdout_np)
        probabilities = class_probabilities(net, data.images[holdout_idx], device=torch_device)
        correct = int((probabilities.argmax(dim=1) == data.labels[holdout_idx]).sum())
        meta["split"] = {
            "seed": seed,
            "fraction": holdout,
            "stratified": True,
            "n_train": len(data.labels) - len(holdout_idx),
            "n_holdout": len(holdout_idx),
            "digest": indices_digest(holdout_np),
        }
        meta["accuracy"] = correct / len(holdout_idx)
        meta["accuracy_ci95"] = list(wilson_interval(correct, len(holdout_idx)))
        notes.append(
            "imported: accuracy is on our seeded held-out split, which the weights' own training may have seen"
        )
    meta["notes"] = notes
    save_classifier_file(
        folder.weights_path, ClassifierFile(meta, net.network.state_dict(), holdout=holdout_idx)
    )
    now = time.time()
    record = {
        **meta,
        "status": SUCCEEDED,
        "ready": True,
        "file": folder.weights_path.name,
        "device": str(torch_device),
        "created": now,
        "updated": now,
    }
    folder.write(record)
    return record
