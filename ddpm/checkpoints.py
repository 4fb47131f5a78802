"""The checkpoint format: one safetensors file per checkpoint, written atomically.

Tensors: `model.*` (weights), `ema.*` (EMA weights, when the run keeps them), `optim.<param>.<key>`
(AdamW state) and `rng.*` (generator states). The safetensors metadata holds JSON: the run's
metadata (arch, model config, training config, step, epoch) and the optimizer's hyper-parameters.
Loading parses only tensors and JSON: nothing is unpickled, so a checkpoint cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ddpm.errors import CheckpointError
from ddpm.storage import atomic_write

FORMAT = "ddpm-arch-bench/checkpoint/1"


@dataclass
class Checkpoint:
    meta: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    rng: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in info.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write atomically: a crash mid-write leaves the previous file at `path` intact."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, part in (("model", checkpoint.model), ("ema", checkpoint.ema), ("rng", checkpoint.rng)):
        tensors.update({f"{prefix}.{name}": value for name, value in part.items()})
    metadata = {"format": FORMAT, "meta": json.dumps(checkpoint.meta, sort_keys=True)}
    if checkpoint.optimizer is not None:
        optim_tensors, optim_info = flatten_optimizer(checkpoint.optimizer)
        tensors.update(optim_tensors)
        metadata["optimizer"] = json.dumps(optim_info)
    tensors = {name: value.detach().to("cpu").contiguous() for name, value in tensors.items()}
    atomic_write(path, lambda temp: save_file(tensors, str(temp), metadata=metadata))


def read_meta(path: Path) -> dict[str, Any]:
    """Only the JSON metadata (cheap: reads the header, not the tensors)."""
    return _open(path, lambda f, meta: meta)


def load_checkpoint(path: Path, training_state: bool = False) -> Checkpoint:
    """Load weights (and with training_state, the optimizer and RNG states) onto the CPU."""

    def read(handle: Any, meta: dict[str, Any]) -> Checkpoint:
        groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "ema": {}, "optim": {}, "rng": {}}
        for name in handle.keys():  # noqa: SIM118 (safe_open handles are not iterable)
            prefix, rest = name.split(".", 1)
            if prefix in ("model", "ema") or training_state:
                groups[prefix][rest] = handle.get_tensor(name)
        optimizer = None
        if training_state and "optimizer" in handle.metadata():
            optimizer = unflatten_optimizer(groups["optim"], json.loads(handle.metadata()["optimizer"]))
        return Checkpoint(meta, groups["model"], groups["ema"], optimizer, groups["rng"])

    checkpoint = _open(path, read)
    if not checkpoint.model:
        raise CheckpointError(f"checkpoint {path} holds no model weights")
    return checkpoint


def _open(path: Path, read: Any) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CheckpointError(
                    f"{path} is not a checkpoint of this project (format {metadata.get('format')!r}, "
                    f"expected {FORMAT!r})"
                )
            return read(handle, json.loads(metadata["meta"]))
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises its own error type for truncated/garbled files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}); "
            f"use an earlier checkpoint of the run or retrain"
        ) from err


def load_model(
    path: Path, device: torch.device | str = "cpu", prefer_ema: bool = True
) -> tuple[torch.nn.Module, dict]:
    """Rebuild the network from the checkpoint's own config and load its weights (EMA when present)."""
    from models import build_from_config

    checkpoint = load_checkpoint(path)
    meta = checkpoint.meta
    try:
        model = build_from_config(meta["model_config"])
        weights = checkpoint.ema if prefer_ema and checkpoint.ema else checkpoint.model
        model.load_state_dict(weights, strict=True)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} does not match its own model config: {err}") from err
    meta = {**meta, "weights": "ema" if prefer_ema and checkpoint.ema else "model"}
    return model.to(device).eval(), meta
