"""Importing torchvision weights: state dicts and safetensors load, pickled code is refused unrun."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from ddpm.classifier.analysis import analyse_checkpoint
from ddpm.classifier.checkpoint import load_classifier
from ddpm.classifier.options import check_real_analysis
from ddpm.classifier.store import ClassifierDir
from ddpm.classifier.torchvision_import import IMAGENET_MEAN, IMAGENET_STD, import_torchvision
from ddpm.data import load_digits
from ddpm.errors import InvalidOption
from tests.classifier.conftest import IMAGE_SIZE

HOLDOUT = 0.05  # about 90 held-out digits: enough to measure, quick for a DenseNet on the CPU


def _resnet18(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(num_classes=10).eval()


def test_a_state_dict_imports_and_classifies_as_torchvision_does(data_dir: Path, tmp_path: Path) -> None:
    model = _resnet18()
    weights = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), weights)
    record = import_torchvision(
        data_dir, "resnet18", weights, "digits", image_size=IMAGE_SIZE, holdout=HOLDOUT
    )
    assert record["name"] == "resnet18-digits" and record["network"] == {
        "stem": "imagenet",
        "num_classes": 10,
    }
    assert (
        record["source"]["loader"] == "torch.load(weights_only=True)"
        and len(record["source"]["sha256"]) == 64
    )
    assert record["split"]["n_holdout"] == 90 and 0.0 <= record["accuracy"] <= 1.0
    assert record["class_counts"][0] == 178 and record["status"] == "succeeded"

    net, meta = load_classifier(ClassifierDir.of(data_dir, "resnet18-digits").weights_path)
    images = load_digits(IMAGE_SIZE).images[:16]
    mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    with torch.no_grad():
        expected = model((images.float() / 255 - mean) / std)
        assert torch.allclose(net(images), expected, atol=1e-5)
    assert meta["preprocess"] == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "input_size": None}


def test_the_reports_densenet121_layout_is_detected_from_safetensors(data_dir: Path, tmp_path: Path) -> None:
    """The report's classifier [20] is torchvision's DenseNet-121 with a 3x3 stride-1 first conv."""
    torch.manual_seed(0)
    model = torchvision.models.densenet121(num_classes=10)
    model.features.conv0 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    weights = tmp_path / "densenet121.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    record = import_torchvision(
        data_dir, "densenet121", weights, "digits", name="dn", image_size=IMAGE_SIZE, holdout=HOLDOUT,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616), input_size=16,
    )  # fmt: skip
    assert record["network"]["stem"] == "cifar" and record["source"]["loader"] == "safetensors"
    assert record["preprocess"]["input_size"] == 16
    with pytest.raises(InvalidOption, match=r"cannot classify 8px images as they are .*\(--input-size\)"):
        import_torchvision(data_dir, "densenet121", weights, "digits", name="dn8", image_size=IMAGE_SIZE)
    net, _ = load_classifier(ClassifierDir.of(data_dir, "dn").weights_path)
    assert net.network.features.conv0.kernel_size == (3, 3) and net.network.features.conv0.stride == (1, 1)


def test_wrapped_state_dicts_are_unwrapped(data_dir: Path, tmp_path: Path) -> None:
    weights = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "state_dict": _resnet18().state_dict()}, weights)
    record = import_torchvision(
        data_dir, "resnet18", weights, "digits", name="w", image_size=IMAGE_SIZE, holdout=HOLDOUT
    )
    assert record["name"] == "w"


class _Payload:
    """A pickle that runs code when loaded: what weights_only=True exists to refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_and_whole_modules_are_refused_without_running(data_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    with evil.open("wb") as handle:
        pickle.dump({"conv1.weight": _Payload(marker)}, handle, protocol=2)
    with pytest.raises(InvalidOption, match="cannot read it without running code from it"):
        import_torchvision(data_dir, "resnet18", evil, "digits", image_size=IMAGE_SIZE)
    assert not marker.exists(), "the payload ran"
    whole = tmp_path / "module.pth"
    torch.save(_resnet18(), whole)
    with pytest.raises(
        InvalidOption, match=r"Save the state dict alone \(torch.save\(model.state_dict\(\), path\)\)"
    ):
        import_torchvision(data_dir, "resnet18", whole, "digits", image_size=IMAGE_SIZE)
    assert not (data_dir / "classifiers").exists() or not any((data_dir / "classifiers").iterdir())


def test_weights_that_do_not_fit_and_unknown_archs_are_refused(data_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "five.pth"
    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), weights)
    with pytest.raises(InvalidOption, match="do not fit torchvision's resnet18 with 10 classes"):
        import_torchvision(data_dir, "resnet18", weights, "digits", image_size=IMAGE_SIZE)
    with pytest.raises(InvalidOption) as caught:
        import_torchvision(data_dir, "densenet_121", weights, "digits", image_size=IMAGE_SIZE)
    assert "unknown torchvision architecture 'densenet_121'; valid: " in str(caught.value)
    assert "densenet121" in str(caught.value) and "resnet18" in str(caught.value)
    with pytest.raises(InvalidOption, match="weights file .*missing.pth does not exist"):
        import_torchvision(data_dir, "resnet18", tmp_path / "missing.pth", "digits")


def test_a_cifar10_classifier_imports_where_cifar10_is_absent(data_dir: Path, tmp_path: Path) -> None:
    weights = tmp_path / "resnet18.pth"
    torch.save(_resnet18().state_dict(), weights)
    record = import_torchvision(data_dir, "resnet18", weights, "cifar10")
    assert (
        record["class_names"][:3] == ["airplane", "automobile", "bird"]
        and record["class_counts"] == [5000] * 10
    )
    assert record["accuracy"] is None and record["split"] is None
    assert "accuracy not measured" in record["notes"][0]
    with pytest.raises(InvalidOption, match="has no held-out split recorded"):
        check_real_analysis(data_dir, "resnet18-cifar10", 100)
    with pytest.raises(InvalidOption, match="classifier 'resnet18-cifar10' already exists"):
        import_torchvision(data_dir, "resnet18", weights, "cifar10")


def test_an_imported_classifier_analyses_samples(
    study_root: Path, run_checkpoint: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "resnet18.pth"
    torch.save(_resnet18(1).state_dict(), weights)
    root = tmp_path / "data"
    (root / "runs").mkdir(parents=True)
    import_torchvision(root, "resnet18", weights, "digits", name="tv", image_size=IMAGE_SIZE, holdout=HOLDOUT)
    result = analyse_checkpoint(
        run_checkpoint, None, n=16, data_dir=root, sampler="ddim", steps=2, device="cpu"
    )
    record = result.to_record()
    assert record["classifier"] == "tv" and sum(record["counts"]) == 16
    assert record["classifier_info"]["arch"] == "resnet18"
