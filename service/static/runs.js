// Runs: every training run; one run's configuration, checkpoints and loss curve, and a form that
// continues it (resume) for more steps or epochs.
import { imageUrl, json } from "./api.js";
import { clear, formatEpoch, formatTime, h, message, progressBar, table } from "./dom.js";
import { TERMINAL, watchJob } from "./jobwatch.js";
import { fieldErrors } from "./train.js";

const DEFAULT_SMOOTHING = 0.6;
const LIVE_LOSS_MS = 10000; // while a run trains, its loss figure is redrawn this often (loss.csv is flushed every 5 s)

export function runsView() {
  const list = h("div");
  const detail = h("section.run-detail", { id: "run-detail" });
  const element = h("div.runs", {}, list, detail);
  let unwatch = () => {};

  async function showList(selected) {
    try {
      const { runs } = await json("/runs");
      if (!runs.length) {
        clear(list, message("info", "No runs yet: start one from Train."));
        return;
      }
      const columns = [
        { title: "Run", cell: (run) => h("a", { href: `#runs/${run.run_id}` }, run.run_id) },
        { title: "Arch", cell: (run) => run.arch },
        { title: "Status", cell: (run) => h(`span.state.${run.status}`, {}, run.status) },
        { title: "Step", cell: (run) => `${run.step ?? 0}${run.total_steps ? ` / ${run.total_steps}` : ""}` },
        { title: "Dataset", cell: (run) => run.dataset ?? "–" },
        { title: "Width", cell: (run) => String(run.width ?? "–") },
        { title: "Checkpoints", cell: (run) => String(run.checkpoints) },
        { title: "Updated", cell: (run) => formatTime(run.updated) },
      ];
      const rowAttrs = (run) => ({ class: run.run_id === selected ? "selected" : undefined });
      clear(list, table(columns, runs, { rowAttrs }));
    } catch (error) {
      clear(list, message("error", error.message));
    }
  }

  async function showRun(runId) {
    unwatch();
    if (!runId) {
      clear(detail);
      return;
    }
    try {
      const run = await json(`/runs/${encodeURIComponent(runId)}?points=2`);
      clear(detail, runDetail(run));
    } catch (error) {
      clear(detail, message("error", error.message));
    }
  }

  function runDetail(run) {
    const active = h("div.active-job");
    const resume = resumeForm(run);
    const loss = lossCurve(run.run_id);
    let lossDrawn = Date.now();
    if (run.job_id) {
      // The run's latest job: followed live while it runs; a run can be resumed once it has ended.
      const bar = progressBar();
      const heading = h("h3", {}, "Training");
      active.append(heading, bar.element);
      resume.hidden = true;
      let sawActive = false;
      unwatch = watchJob(run.job_id, (job, problem) => {
        if (problem) active.append(message("error", problem.message));
        if (!job) return;
        bar.update(job);
        const ended = TERMINAL.includes(job.state);
        heading.textContent = ended ? "Last training job" : "Training";
        resume.hidden = !ended;
        if (!ended) sawActive = true;
        else if (sawActive) show(run.run_id); // it just finished: new checkpoints, a new loss curve
        if (job.state === "running" && Date.now() - lossDrawn > LIVE_LOSS_MS) {
          lossDrawn = Date.now();
          loss.draw();
        }
      });
    }
    const config = run.train_config ?? {};
    return [
      h("h2", {}, run.run_id),
      h("p.sub", {}, `${run.arch} · ${run.status} · step ${run.step ?? 0}${run.total_steps ? ` of ${run.total_steps}` : ""} · ${run.device ?? "no device yet"}`),
      active,
      h(
        "div.columns",
        {},
        loss.element,
        h(
          "div",
          {},
          h("h3", {}, "Configuration"),
          h("dl.config", {}, Object.entries(config).map(([key, value]) => [h("dt", {}, key), h("dd", {}, JSON.stringify(value))])),
          run.model_config ? h("details", {}, h("summary", {}, "model configuration"), h("pre", {}, JSON.stringify(run.model_config, null, 2))) : null,
        ),
      ),
      h("h3", {}, "Checkpoints"),
      run.checkpoints.length
        ? [
            table(
              [
                { title: "Step", cell: (c) => String(c.step) },
                { title: "Epoch", cell: (c) => formatEpoch(c.epoch) },
                { title: "Written", cell: (c) => formatTime(c.time) },
              ],
              run.checkpoints,
            ),
            h("p", {}, h("a.button", { href: `#epochs/${run.run_id}` }, "Grids across these checkpoints")),
          ]
        : message("info", "No kept checkpoint yet."),
      resume,
    ];
  }

  /**
   * The API's loss figure (raw and smoothed) with TensorBoard's smoothing slider; draw() fetches it
   * again, keeping the current one on screen until the new one is in (no flicker while a run trains).
   */
  function lossCurve(runId) {
    const img = h("img.api-image", { alt: `loss curve of ${runId}`, dataset: { state: "loading" } });
    const problem = h("div");
    const value = h("output", {}, String(DEFAULT_SMOOTHING));
    const slider = h("input", { type: "range", name: "smooth", min: "0", max: "0.99", step: "0.01", value: String(DEFAULT_SMOOTHING) });
    img.addEventListener("load", () => (img.dataset.state = "ready"));
    async function draw() {
      try {
        const url = await imageUrl(`/runs/${encodeURIComponent(runId)}/loss.png?smooth=${slider.value}`);
        const previous = img.src;
        img.src = url;
        if (previous) URL.revokeObjectURL(previous);
        clear(problem);
      } catch (error) {
        clear(problem, message("error", `loss curve: ${error.message}`));
      }
    }
    slider.addEventListener("input", () => (value.textContent = slider.value));
    slider.addEventListener("change", draw); // on release: one figure, not one per pixel dragged
    draw();
    const element = h("div", {}, h("h3", {}, "Loss"), h("label.slider", {}, "Smoothing ", slider, value), problem, img);
    return { element, draw };
  }

  function resumeForm(run) {
    const result = h("div");
    const form = h(
      "form.resume",
      { onsubmit: submit },
      h(
        "fieldset.inline",
        {},
        h("legend", {}, "Continue this run from its latest checkpoint"),
        h("label", {}, "Max steps", h("input", { type: "number", name: "max_steps", min: "1", step: "1" }), h("span.field-error", { dataset: { for: "max_steps" } })),
        h("label", {}, "Epochs", h("input", { type: "number", name: "epochs", min: "1", step: "1" }), h("span.field-error", { dataset: { for: "epochs" } })),
      ),
      h("button", { type: "submit" }, "Resume"),
      result,
    );
    async function submit(event) {
      event.preventDefault();
      const body = { run_id: run.run_id, resume: true };
      for (const input of form.querySelectorAll("input")) if (input.value) body[input.name] = Number(input.value);
      try {
        const accepted = await json("/train", { method: "POST", body });
        clear(result, message("info", `Queued job ${accepted.job_id.slice(0, 8)}.`));
        showRun(run.run_id);
      } catch (error) {
        clear(result, fieldErrors(form, error));
      }
    }
    return form;
  }

  /** show(runId?): the list, and that run's detail when given. */
  async function show(runId) {
    await Promise.all([showList(runId), showRun(runId)]);
  }

  function hide() {
    unwatch();
  }

  return { id: "runs", title: "Runs", element, show, hide };
}
