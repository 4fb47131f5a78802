"""Training engine: exact resume, checkpoints that round-trip and never half-load, loss history, cancel."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from ddpm.checkpoints import Checkpoint, load_checkpoint, load_model, save_checkpoint
from ddpm.errors import CheckpointError, InvalidOption
from ddpm.runs import RunDir, list_runs, newest_checkpoint
from ddpm.training import TrainConfig, TrainHooks, train
from models import arch_names, build_model
from tests.conftest import TINY_WIDTH, make_image_folder


def _config(dataset: str = "folder:tiny", **changes) -> TrainConfig:
    """20 images at 16x16, batch 8: 3 steps per epoch, so short runs cross epoch boundaries."""
    options = dict(
        arch="pure_unet",
        dataset=dataset,
        width=TINY_WIDTH,
        batch_size=8,
        image_size=16,
        checkpoint_every=2,
        seed=3,
    )
    options.update(changes)
    return TrainConfig(**options)


@pytest.fixture
def folder_data(data_dir: Path) -> Path:
    make_image_folder(data_dir / "datasets" / "tiny", count=20, size=20)
    return data_dir


def _weights(data_dir: Path, run_id: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(RunDir.of(data_dir, run_id).latest_path, training_state=True).model


def test_interrupted_and_resumed_equals_uninterrupted(folder_data: Path) -> None:
    """8 steps straight vs 4 (mid-epoch 2) + resume to 8, both with EMA: identical weights, EMA, optimizer."""
    straight = train(
        _config(max_steps=8, ema=True, ema_decay=0.9), folder_data, run_id="straight", device="cpu"
    )
    first = train(_config(max_steps=4, ema=True, ema_decay=0.9), folder_data, run_id="split", device="cpu")
    assert first.step == 4
    resumed = train(_config(max_steps=8, ema=True, ema_decay=0.9), folder_data, run_id="split", device="cpu")
    assert straight.step == resumed.step == 8
    a = load_checkpoint(RunDir.of(folder_data, "straight").latest_path, training_state=True)
    b = load_checkpoint(RunDir.of(folder_data, "split").latest_path, training_state=True)
    for part in ("model", "ema", "rng"):
        left, right = getattr(a, part), getattr(b, part)
        assert left.keys() == right.keys() and left
        assert all(torch.equal(left[k], right[k]) for k in left), f"{part} differs after resume"
    assert a.optimizer is not None and b.optimizer is not None
    for index, state in a.optimizer["state"].items():
        assert all(torch.equal(v, b.optimizer["state"][index][k]) for k, v in state.items())
    # loss history: each step exactly once, identical values
    rows = {
        run: list(csv.DictReader(RunDir.of(folder_data, run).loss_path.open()))
        for run in ("straight", "split")
    }
    assert [int(r["step"]) for r in rows["split"]] == list(range(1, 9))
    assert [r["loss"] for r in rows["split"]] == [r["loss"] for r in rows["straight"]]


def test_resume_discards_loss_rows_past_the_checkpoint(folder_data: Path) -> None:
    train(_config(max_steps=3), folder_data, run_id="crash", device="cpu")
    run = RunDir.of(folder_data, "crash")
    with run.loss_path.open("a") as handle:  # rows a crashed process logged after its last checkpoint
        handle.write("4,1,0.5,0.0002,1.0\n5,1,0.5,0.0002,1.0\n")
    train(_config(max_steps=5), folder_data, run_id="crash", device="cpu")
    assert [row["step"] for row in run.loss_history()] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_resume_refuses_a_different_model_or_data(folder_data: Path) -> None:
    train(_config(max_steps=2), folder_data, run_id="r", device="cpu")
    with pytest.raises(InvalidOption, match=r"different \['lr'\]"):
        train(_config(max_steps=4, lr=1e-3), folder_data, run_id="r", device="cpu")


def test_kept_checkpoints_every_n_epochs_plus_final_and_run_record(folder_data: Path) -> None:
    result = train(_config(epochs=5), folder_data, run_id="keep", device="cpu")  # 15 steps, 3 per epoch
    run = RunDir.of(folder_data, "keep")
    assert [step for step, _ in run.kept_checkpoints()] == [6, 12, 15]
    assert [c["step"] for c in result.checkpoints] == [6, 12, 15]
    record = run.read()
    assert record["status"] == "succeeded" and record["step"] == 15 and record["total_steps"] == 15
    assert record["model_config"]["channels"] == [8, 16, 32, 32]
    assert record["effective_epochs"] == 5 and record["limited_by"] == "epochs"
    assert record["checkpoint_every_steps"] == 6 and record["checkpoints_spaced_by"] == "epochs"
    assert [r["run_id"] for r in list_runs(folder_data)] == ["keep"]
    assert newest_checkpoint(folder_data, "pure_unet")[:2] == ("keep", 15)
    assert newest_checkpoint(folder_data, "baseline") is None


def test_a_run_cut_by_max_steps_spaces_its_checkpoints_and_records_its_epochs(folder_data: Path) -> None:
    """13 steps of a 100-epoch config (3 steps an epoch, checkpoint_every=2): the epochs would keep
    steps 6, 12 and 13; spaced by steps it keeps about eight, and its record says what it trained."""
    result = train(_config(max_steps=13), folder_data, run_id="cut", device="cpu")
    kept = [step for step, _ in RunDir.of(folder_data, "cut").kept_checkpoints()]
    assert kept == [c["step"] for c in result.checkpoints] == [2, 4, 6, 8, 10, 12, 13]
    record = RunDir.of(folder_data, "cut").read()
    assert record["train_config"]["epochs"] == 100  # what was asked stays as asked...
    assert record["effective_epochs"] == 4.33 and record["limited_by"] == "max_steps"  # ...beside this
    assert record["checkpoint_every_steps"] == 2 and record["checkpoints_spaced_by"] == "steps"


def test_should_stop_cancels_and_keeps_the_last_step(folder_data: Path) -> None:
    seen: list[int] = []
    hooks = TrainHooks(on_progress=[lambda p: seen.append(p.step)], should_stop=lambda: len(seen) >= 2)
    result = train(_config(epochs=10), folder_data, run_id="stop", device="cpu", hooks=hooks)
    assert result.status == "cancelled" and result.step == 2 and seen == [1, 2]
    run = RunDir.of(folder_data, "stop")
    assert run.read()["status"] == "cancelled"
    assert [step for step, _ in run.kept_checkpoints()] == [2]
    assert load_checkpoint(run.latest_path).step == 2


def test_progress_reports_fraction_loss_and_eta(folder_data: Path) -> None:
    seen = []
    train(
        _config(max_steps=4),
        folder_data,
        run_id="p",
        device="cpu",
        hooks=TrainHooks(on_progress=[seen.append]),
    )
    assert [p.step for p in seen] == [1, 2, 3, 4] and seen[-1].fraction == 1.0 and seen[-1].total_steps == 4
    assert all(p.loss > 0 for p in seen) and seen[-1].eta == 0
    assert seen[0].eta is None, "no rate yet after the (slow) first step"
    assert all(p.eta is not None and p.eta >= 0 for p in seen[1:])


def test_a_run_that_cannot_start_is_recorded_as_failed(data_dir: Path) -> None:
    from ddpm.errors import DatasetUnavailable

    with pytest.raises(DatasetUnavailable):
        train(_config(dataset="folder:absent"), data_dir, run_id="nodata", device="cpu")
    record = RunDir.of(data_dir, "nodata").read()
    assert record["status"] == "failed" and "does not exist" in record["error"]


def test_checkpoint_round_trip_gives_identical_outputs(folder_data: Path) -> None:
    train(_config(max_steps=2), folder_data, run_id="rt", device="cpu")
    path = RunDir.of(folder_data, "rt").kept_checkpoints()[-1][1]
    model, meta = load_model(path)
    assert meta["arch"] == "pure_unet" and meta["step"] == 2 and meta["weights"] == "model"
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 900])
    copy = folder_data / "copy.safetensors"
    save_checkpoint(copy, load_checkpoint(path, training_state=True))
    again, _ = load_model(copy)
    with torch.no_grad():
        assert torch.equal(model(x, t), again(x, t))


def test_a_crash_mid_write_leaves_the_previous_checkpoint_loadable(folder_data: Path, monkeypatch) -> None:
    train(_config(max_steps=2), folder_data, run_id="c", device="cpu")
    latest = RunDir.of(folder_data, "c").latest_path
    before = latest.read_bytes()

    def dies_halfway(tensors, filename, metadata=None):
        Path(filename).write_bytes(before[: len(before) // 2])  # a partial file, then the process "dies"
        raise OSError("killed")

    monkeypatch.setattr("ddpm.checkpoints.save_file", dies_halfway)
    state = load_checkpoint(latest, training_state=True)
    with pytest.raises(OSError, match="killed"):
        save_checkpoint(latest, state)
    assert latest.read_bytes() == before
    assert load_checkpoint(latest).step == 2
    assert not [p for p in latest.parent.iterdir() if p.name.startswith(".")], "no temp file left behind"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "corrupt or truncated"),
        (lambda b: b"\x00" * 64, "corrupt or truncated"),
        (lambda b: b"", "corrupt or truncated"),
    ],
)
def test_corrupt_checkpoints_give_a_clear_error(folder_data: Path, damage, message: str) -> None:
    train(_config(max_steps=1), folder_data, run_id="bad", device="cpu")
    path = RunDir.of(folder_data, "bad").latest_path
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_foreign_safetensors_files_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_model(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")


def test_checkpoint_without_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    save_checkpoint(path, Checkpoint(meta={"step": 0}, model={}, rng={"g": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match="no model weights"):
        load_model(path)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"arch": "unet9"}, "unknown arch"),
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet'; valid: cifar10, digits, folder:<folder>"),
        ({"width": 0}, "width must be in"),
        ({"batch_size": 0}, "batch_size must be an integer"),
        ({"epochs": 0}, "epochs must be an integer"),
        ({"lr": -1.0}, "lr must be in"),
        ({"max_steps": 0}, "max_steps must be an integer"),
        ({"dataset": "cifar10", "image_size": 16}, "cifar10 images are 32x32"),
    ],
)
def test_bad_training_options_are_rejected(changes: dict, message: str) -> None:
    from models import ConfigError

    with pytest.raises((InvalidOption, ConfigError), match=message):
        _config(**changes)


def test_resume_skips_a_corrupt_latest_and_uses_the_newest_loadable_checkpoint(folder_data: Path) -> None:
    """latest.safetensors truncated (say, by a disk fault): resume falls back to the kept step-6 file and
    still ends bit-identical to an uninterrupted run."""
    train(_config(max_steps=9), folder_data, run_id="whole", device="cpu")
    train(_config(max_steps=7), folder_data, run_id="hurt", device="cpu")  # keeps step 6 and step 7
    run = RunDir.of(folder_data, "hurt")
    run.latest_path.write_bytes(run.latest_path.read_bytes()[:1000])
    run.checkpoint_path(7).write_bytes(b"garbage")
    result = train(_config(max_steps=9), folder_data, run_id="hurt", device="cpu")
    assert result.step == 9
    record = run.read()
    assert record["resumed_from"] == "step-00000006.safetensors" and len(record["skipped_checkpoints"]) == 2
    assert all(
        torch.equal(v, _weights(folder_data, "whole")[k]) for k, v in _weights(folder_data, "hurt").items()
    )


def test_resume_with_no_loadable_checkpoint_fails_clearly(folder_data: Path) -> None:
    train(_config(max_steps=2), folder_data, run_id="dead", device="cpu")
    run = RunDir.of(folder_data, "dead")
    for path in [run.latest_path] + [p for _, p in run.kept_checkpoints()]:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no loadable checkpoint to resume from"):
        train(_config(max_steps=4), folder_data, run_id="dead", device="cpu")


def test_resume_is_exact_with_dropout_and_the_cosine_schedule(folder_data: Path) -> None:
    options = dict(dropout=0.2, schedule="cosine")
    train(_config(max_steps=6, **options), folder_data, run_id="d-straight", device="cpu")
    train(_config(max_steps=2, **options), folder_data, run_id="d-split", device="cpu")
    torch.rand(100)  # the caller's own use of the global generator must not leak into the run
    train(_config(max_steps=6, **options), folder_data, run_id="d-split", device="cpu")
    straight, split = _weights(folder_data, "d-straight"), _weights(folder_data, "d-split")
    assert all(torch.equal(straight[k], split[k]) for k in straight)
    assert RunDir.of(folder_data, "d-split").read()["model_config"]["dropout"] == 0.2


@pytest.mark.parametrize("arch", arch_names())
def test_every_variant_round_trips_through_a_checkpoint(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_model(arch, width=TINY_WIDTH).eval()
    meta = {"arch": arch, "model_config": net.config.to_dict(), "step": 0}
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, Checkpoint(meta=meta, model=net.state_dict()))
    again, _ = load_model(path)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.equal(net(x, t), again(x, t))


def test_a_combined_preset_trains_under_a_safe_run_id(folder_data: Path) -> None:
    result = train(_config(arch="pure_unet+anti_aliasing", max_steps=1), folder_data, device="cpu")
    assert result.run_id.startswith("pure_unet.anti_aliasing-") and result.status == "succeeded"
    assert RunDir.of(folder_data, result.run_id).read()["arch"] == "pure_unet+anti_aliasing"


def test_loss_rows_reach_the_disk_while_training(folder_data: Path, monkeypatch) -> None:
    """Readers (the loss plot) see a step's row within LOSS_FLUSH_S, not only at the epoch's end."""
    from ddpm import training

    monkeypatch.setattr(training, "LOSS_FLUSH_S", 0.0)
    seen: list[list[float]] = []
    hooks = TrainHooks(
        on_progress=[
            lambda p: seen.append([r["step"] for r in RunDir.of(folder_data, p.run_id).loss_history()])
        ]
    )
    train(_config(max_steps=3), folder_data, run_id="live-loss", device="cpu", hooks=hooks)
    assert seen == [[], [1.0], [1.0, 2.0]]  # at each step's hook, every earlier step is on disk


def _state(data_dir: Path, run_id: str) -> Checkpoint:
    return load_checkpoint(RunDir.of(data_dir, run_id).latest_path, training_state=True)


def _same_state(a: Checkpoint, b: Checkpoint) -> bool:
    parts = all(
        getattr(a, part).keys() == getattr(b, part).keys()
        and all(torch.equal(v, getattr(b, part)[k]) for k, v in getattr(a, part).items())
        for part in ("model", "ema", "rng")
    )
    assert a.optimizer is not None and b.optimizer is not None
    moments = all(
        torch.equal(v, b.optimizer["state"][index][k])
        if isinstance(v, torch.Tensor)
        else v == b.optimizer["state"][index][k]
        for index, state in a.optimizer["state"].items()
        for k, v in state.items()
    )
    return parts and moments


def test_batches_drawn_ahead_and_losses_read_in_bursts_train_the_same_bits(folder_data: Path) -> None:
    """The GPU loop's two devices kept busy (next batch drawn while a step runs; losses read every 4
    steps), run on CPU: the same weights, EMA, optimizer and generator states, and the same loss rows,
    as drawing each batch just before its step and reading every loss at once. 7 steps cross two
    epoch ends (3 steps an epoch), where checkpoints are written with a batch already drawn."""
    from ddpm.training import Trainer

    config = _config(max_steps=7, ema=True, ema_decay=0.9)
    Trainer(config, folder_data, "plain", device="cpu", prefetch=False, sync_every=1).run_training()
    Trainer(config, folder_data, "ahead", device="cpu", prefetch=True, sync_every=4).run_training()
    assert _same_state(_state(folder_data, "plain"), _state(folder_data, "ahead"))
    rows = {run: RunDir.of(folder_data, run).loss_history() for run in ("plain", "ahead")}
    assert [r["loss"] for r in rows["plain"]] == [r["loss"] for r in rows["ahead"]]
    assert [r["step"] for r in rows["ahead"]] == [1, 2, 3, 4, 5, 6, 7]
    # and a run stopped at step 3 (a checkpoint written after drawing step 4's batch) resumes exactly
    Trainer(
        _config(max_steps=3, ema=True, ema_decay=0.9), folder_data, "resumed", device="cpu"
    ).run_training()
    Trainer(config, folder_data, "resumed", device="cpu", sync_every=4).run_training()
    assert _same_state(_state(folder_data, "plain"), _state(folder_data, "resumed"))


def test_hooks_see_every_step_in_order_when_losses_are_read_in_bursts(folder_data: Path) -> None:
    """sync_every=4 with 3 steps an epoch over 3 epochs (a run max_steps does not cut, so its
    checkpoints follow the epochs): losses are read at steps 3 (epoch end), 4, 6 (epoch end), 8 and 9
    (the last); progress still comes once per step, in order, and should_stop is polled before steps
    0, 3, 4, 6 and 8; a stop answered there ends the run at that step, with a checkpoint."""
    from ddpm.training import Trainer

    seen: list[int] = []
    polls: list[int] = []

    def should_stop() -> bool:
        polls.append(len(seen))
        return False

    hooks = TrainHooks(on_progress=[lambda p: seen.append(p.step)], should_stop=should_stop)
    Trainer(_config(epochs=3), folder_data, "bursts", device="cpu", hooks=hooks, sync_every=4).run_training()
    assert seen == list(range(1, 10)) and polls == [0, 3, 4, 6, 8]

    answers = iter([False, True])  # stop at the second poll, before step 4
    stop = TrainHooks(should_stop=lambda: next(answers))
    result = Trainer(
        _config(epochs=3), folder_data, "stopped", device="cpu", hooks=stop, sync_every=4
    ).run_training()
    assert result.status == "cancelled" and result.step == 3
    assert load_checkpoint(RunDir.of(folder_data, "stopped").latest_path).step == 3


def test_optimizer_state_and_ema_have_the_parameters_layout_after_resume(folder_data: Path) -> None:
    """Checkpoints hold contiguous tensors; training weights are channels-last on CPU. After a resume
    AdamW's moments and the EMA have their parameter's strides, as a fresh run's zeros_like would."""
    from ddpm.training import Trainer

    config = _config(max_steps=2, ema=True, ema_decay=0.9)
    train(config, folder_data, run_id="layout", device="cpu")
    trainer = Trainer(_config(max_steps=4, ema=True, ema_decay=0.9), folder_data, "layout", device="cpu")
    parts = trainer._build()
    assert trainer._restore(parts, resume=True)[0] == 2
    params = list(parts.model.parameters())
    assert any(p.ndim == 4 and not p.is_contiguous() for p in params)  # channels-last weights
    for param in params:
        state = parts.optimizer.state[param]
        for key in ("exp_avg", "exp_avg_sq"):
            assert state[key].stride() == param.stride(), key
        assert state["step"].device.type == "cpu" and state["step"].ndim == 0
    weights = parts.model.state_dict()
    assert all(parts.ema.shadow[k].stride() == weights[k].stride() for k in weights)


def test_bf16_autocast_is_a_recorded_training_option_that_resume_keeps(folder_data: Path) -> None:
    """The network runs in bfloat16, the loss in fp32; the option is in every checkpoint, a resume may
    not change it, and checkpoints written before the option existed resume as fp32 runs."""
    from ddpm.training import Trainer, _Batches

    trainer = Trainer(_config(bf16=True), folder_data, "bf16-step", device="cpu")
    parts = trainer._build()
    outputs: list[torch.dtype] = []
    parts.model.register_forward_hook(lambda module, args, out: outputs.append(out.dtype))
    loss = trainer._step(parts, _Batches(parts, trainer.config).staged(0))
    assert outputs == [torch.bfloat16] and loss.dtype == torch.float32 and torch.isfinite(loss)

    train(_config(max_steps=2, bf16=True), folder_data, run_id="bf16", device="cpu")
    train(_config(max_steps=2), folder_data, run_id="fp32", device="cpu")
    assert _state(folder_data, "bf16").meta["train_config"]["bf16"] is True
    bf16, fp32 = _weights(folder_data, "bf16"), _weights(folder_data, "fp32")
    assert any(not torch.equal(bf16[k], fp32[k]) for k in fp32)  # other arithmetic, other weights
    with pytest.raises(InvalidOption, match=r"different \['bf16'\]"):
        train(_config(max_steps=4), folder_data, run_id="bf16", device="cpu")
    with pytest.raises(InvalidOption, match=r"different \['bf16'\]"):
        train(_config(max_steps=4, bf16=True), folder_data, run_id="fp32", device="cpu")
    # a checkpoint from before the option: no bf16 in its config, so it was an fp32 run
    run = RunDir.of(folder_data, "fp32")
    old = _state(folder_data, "fp32")
    del old.meta["train_config"]["bf16"]
    save_checkpoint(run.latest_path, old)
    assert train(_config(max_steps=3), folder_data, run_id="fp32", device="cpu").step == 3
    with pytest.raises(InvalidOption, match="bf16 must be true or false"):
        _config(bf16="yes")


def test_grey_data_trains_a_one_channel_network_and_old_runs_stay_rgb(folder_data: Path) -> None:
    """digits are grey by default (one channel in, one out); any data set may ask for it; a run
    recorded before the option existed was a three-channel run and resumes as one."""
    assert _config("digits").grayscale is True and _config().grayscale is False
    assert _config("digits", grayscale=False).model_options().get("in_channels", 3) == 3

    train(_config(max_steps=2, grayscale=True), folder_data, run_id="grey", device="cpu")
    state = _state(folder_data, "grey")
    assert state.meta["model_config"]["in_channels"] == 1 and state.meta["train_config"]["grayscale"] is True
    model, _ = load_model(RunDir.of(folder_data, "grey").latest_path)
    assert model(torch.randn(2, 1, 16, 16), torch.tensor([5, 900])).shape == (2, 1, 16, 16)

    train(_config(max_steps=2), folder_data, run_id="old", device="cpu")
    run = RunDir.of(folder_data, "old")
    old = _state(folder_data, "old")
    del old.meta["train_config"]["grayscale"]
    save_checkpoint(run.latest_path, old)
    stored = {k: v for k, v in run.read()["train_config"].items() if k != "grayscale"}
    resumed = TrainConfig.from_dict({**stored, "max_steps": 3})
    assert resumed.grayscale is False
    assert train(resumed, folder_data, run_id="old", device="cpu").step == 3
    with pytest.raises(InvalidOption, match=r"different \['grayscale'\]"):
        train(_config(max_steps=4, grayscale=True), folder_data, run_id="old", device="cpu")
    with pytest.raises(InvalidOption, match="grayscale must be true, false or unset"):
        _config(grayscale="yes")


def test_ema_warmup_ramps_the_decay_and_old_records_keep_none() -> None:
    """With warm-up, update k uses min(decay, (1 + k) / (10 + k)): the first average is mostly the
    trained weights, not the init. A record written before the option existed resumes without a ramp."""
    from ddpm.training import _Ema

    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = _Ema(model, decay=0.999, warmup=True)
    expected = 0.0
    for k in range(50):
        with torch.no_grad():
            model.weight.fill_(float(k + 1))
        ema.update(model, k)
        decay = min(0.999, (1 + k) / (10 + k))
        expected = decay * expected + (1 - decay) * (k + 1)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10**6) == 0.999
    assert ema.shadow["weight"].item() == pytest.approx(expected, rel=1e-5)
    assert expected > 25  # the plain 0.999 average would still be ~1.3: 95% init
    assert not _Ema(model, decay=0.999, warmup=False).decay_at(0) < 0.999

    old = _config(ema=True).to_dict()
    del old["ema_warmup"]
    assert TrainConfig.from_dict(old).ema_warmup is False
    assert _config(ema=True).ema_warmup is True
