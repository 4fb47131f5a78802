"""The classifier study's jobs (docs/analysis.md): an analysis (a checkpoint's samples or held-out real
images, classified and stored) and a classifier's training. workers/tasks.py registers them; they end
through workers/outcomes.py like every job (a DdpmError's message on the record, Cancelled as cancelled).

The engine (and so torch) is imported inside the handlers, in the pool process that runs them.
"""

from __future__ import annotations

import time
from typing import Any

from ddpm.storage import relative_to_volume
from jobs.records import ANALYSIS, CANCELLED, SUCCEEDED
from jobs.specs import CheckpointRef, sampler_from_params
from workers.app import settings
from workers.outcomes import Outcome
from workers.progress import JobReporter
from workers.throughput import SAMPLE_PHASE, SamplingMeter, Throughput

# Each phase's share of the whole job in `progress`: a checkpoint's samples cost far more than their
# classification; held-out real images are loaded (the data set, at once) then classified.
SAMPLE_PHASES = {"sampling": (0.0, 0.9), "classifying": (0.9, 1.0)}
REAL_PHASES = {"loading": (0.0, 0.2), "classifying": (0.2, 1.0)}


def run_analysis(job: dict[str, Any], report: JobReporter) -> Outcome:
    from ddpm.classifier import analyse_checkpoint, analyse_real, save_analysis

    params = job["params"]
    real = bool(params.get("real"))
    phases = REAL_PHASES if real else SAMPLE_PHASES
    sampling = SamplingMeter(
        Throughput.of(report.store, ANALYSIS, SAMPLE_PHASE), params["n"], params["batch_size"]
    )
    phase_started: dict[str, float] = {}
    last_report = [time.monotonic()]

    def progress(phase: str, done: int, total: int) -> None:
        report.raise_if_cancelled()
        low, high = phases.get(phase, (0.0, 1.0))
        now = time.monotonic()
        # A phase starts when the previous one last reported, not at its own first report.
        elapsed = now - phase_started.setdefault(phase, last_report[0])
        last_report[0] = now
        report(
            force=done == total,
            progress=low + (high - low) * done / max(total, 1),
            step=done,
            total=total,
            eta_s=elapsed / done * (total - done) if done else None,  # of this phase
            message=f"{phase}: {done}/{total}",
            # Throughput is the sampler's; the other phases say which they are, so /metrics skips them.
            **(sampling.update(done, total) if phase == "sampling" else {"rate_phase": phase}),
        )

    options = {key: params[key] for key in ("threshold", "per_class", "batch_size")}
    common = {"data_dir": settings.data_dir, "device": settings.device, "progress": progress, **options}
    if real:
        result = analyse_real(params["classifier"], params["n"], params["seed"], **common)
    else:
        ref = CheckpointRef.from_dict(params["checkpoint"])
        result = analyse_checkpoint(
            ref.path(settings.data_dir),
            params["classifier"],
            params["n"],
            params["seed"],
            sampler_from_params(params),
            **common,
        )
    record = {**result.to_record(), "job_id": job["id"]}
    if isinstance(record.get("checkpoint"), str):  # a client never sees the server's own paths
        record["checkpoint"] = relative_to_volume(record["checkpoint"], settings.data_dir)
    result_id = save_analysis(settings.data_dir, record, result.grid_png)
    divergence, entropy = record["divergence"], record["entropy"]
    return {
        "state": SUCCEEDED,
        "message": (
            f"{record['n']} images: {entropy['classes_present']} of {len(record['class_names'])} classes, "
            f"total variation {divergence['total_variation']:.3f} from the data set (noise alone: "
            f"{divergence['null_total_variation_p95']:.3f} at p95), confident share {record['confident_share']:.3f}"
        ),
        "progress": 1.0,
        "result": {
            "analysis_id": result_id,
            "links": {"analysis": f"/analysis/{result_id}", "grid": f"/analysis/{result_id}/grid.png"},
        },
    }


def run_classifier_training(job: dict[str, Any], report: JobReporter) -> Outcome:
    from ddpm.classifier.config import ClassifierConfig
    from ddpm.classifier.training import ClassifierHooks, ClassifierProgress, train_classifier

    params = job["params"]
    name = params["name"]
    config = ClassifierConfig.from_dict(params["config"])

    def on_progress(p: ClassifierProgress) -> None:
        accuracy = "" if p.holdout_accuracy is None else f", held-out accuracy {p.holdout_accuracy:.3f}"
        report(
            force=p.step == p.total_steps,
            progress=p.fraction,
            step=p.step,
            total=p.total_steps,
            loss=p.loss,
            eta_s=p.eta,
            message=f"training classifier {name}: epoch {p.epoch}, step {p.step}/{p.total_steps}{accuracy}",
        )

    hooks = ClassifierHooks(on_progress=[on_progress], should_stop=report.cancel_requested)
    # A job re-queued after its worker died continues from the latest epoch end, as a resume does.
    result = train_classifier(config, settings.data_dir, name, settings.device, hooks, resume=True)
    done = result.status == SUCCEEDED
    accuracy = "" if result.accuracy is None else f"; held-out accuracy {result.accuracy:.4f}"
    return {
        "state": SUCCEEDED if done else CANCELLED,
        "message": f"classifier {name} {'finished' if done else 'cancelled'} at epoch {result.epoch}"
        f" (step {result.step}/{result.total_steps}){accuracy}",
        "progress": result.step / result.total_steps,
        "step": result.step,
        "total": result.total_steps,
        "result": {
            "classifier": name,
            "status": result.status,
            "epoch": result.epoch,
            "step": result.step,
            "total_steps": result.total_steps,
            "accuracy": result.accuracy,
            "links": {"classifiers": "/classifiers"},
        },
    }
