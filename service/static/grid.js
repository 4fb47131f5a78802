// Sample grids: the sampling options both grid views share, and one labelled card per grid that asks
// GET /samples, follows the sampling job it queued (or joined), and shows the PNG when it is written.
import { errorOf, json, query, send } from "./api.js";
import { h, progressBar } from "./dom.js";
import { watchJob } from "./jobwatch.js";
import { enlargeable } from "./lightbox.js";

/** Seed, n, nrow, sampler and steps; values() gives them as /samples parameters. */
export function samplingFields() {
  const seed = h("input", { type: "number", name: "seed", min: "0", step: "1", value: "0", required: true });
  const n = h("input", { type: "number", name: "n", min: "1", max: "1000", step: "1", value: "20", required: true });
  const nrow = h("input", { type: "number", name: "nrow", min: "1", max: "1000", step: "1", value: "10" });
  // Each sampler's step count is its own (network calls for ddim and dpmpp_2m, noise levels for heun);
  // ddpm always runs the report's 1000. The first is the default, as for GET /samples and `ddpm sample`.
  const samplers = [
    ["ddim", "DDIM", 50, "DDIM steps"],
    ["dpmpp_2m", "DPM-Solver++(2M)", 20, "DPM-Solver++ steps"],
    ["heun", "Heun (Karras)", 18, "Heun noise levels"],
    ["ddpm", "DDPM, 1000 steps (the report's)", null, ""],
  ];
  const sampler = h(
    "select",
    { name: "sampler" },
    ...samplers.map(([value, label], i) => h("option", { value, selected: i === 0 }, label)),
  );
  const steps = h("input", { type: "number", name: "steps", min: "1", max: "1000", step: "1", value: "50" });
  const stepsText = h("span", {}, "DDIM steps");
  const stepsLabel = h("label", {}, stepsText, steps);
  sampler.addEventListener("change", () => {
    const [, , defaultSteps, text] = samplers.find(([value]) => value === sampler.value);
    stepsLabel.hidden = defaultSteps === null;
    steps.max = sampler.value === "ddim" ? "1000" : "500";
    if (defaultSteps !== null) steps.value = String(defaultSteps);
    stepsText.textContent = text;
  });
  const element = h(
    "fieldset.inline",
    {},
    h("legend", {}, "Sampling (the same seed gives the same noise for every grid)"),
    h("label", {}, "Seed", seed),
    h("label", {}, "Images", n),
    h("label", {}, "Per row", nrow),
    h("label", {}, "Sampler", sampler),
    stepsLabel,
  );
  const values = () => ({
    seed: seed.value,
    n: n.value,
    nrow: nrow.value,
    sampler: sampler.value,
    steps: sampler.value === "ddpm" ? undefined : steps.value,
  });
  return { element, values };
}

/**
 * A card titled `title` showing the grid GET /samples?{params} answers with; data-state on the card is
 * loading, ready or error (styling and the browser tests read it). dispose() stops following its job.
 */
export function sampleGrid(title, params) {
  const detail = h("span.detail");
  const frame = h("div.frame", {}, h("p.status", {}, "asking for the grid…"));
  const element = h(
    "figure.grid-card",
    { dataset: { state: "loading" } },
    h("figcaption", {}, h("strong", {}, title), detail),
    frame,
  );
  let unwatch = () => {};
  let disposed = false;

  function fail(text) {
    element.dataset.state = "error";
    frame.replaceChildren(h("p.message.error", { role: "alert" }, text));
  }

  async function show(response) {
    const url = URL.createObjectURL(await response.blob());
    const run = response.headers.get("X-Run-Id");
    const step = response.headers.get("X-Checkpoint-Step");
    if (run) detail.textContent = `${run} · step ${step}`;
    const img = h("img", { alt: `${title}: samples`, src: url });
    img.addEventListener("load", () => {
      URL.revokeObjectURL(url);
      element.dataset.state = "ready";
    });
    frame.replaceChildren(enlargeable(img, `${title}: samples`));
  }

  function follow(accepted) {
    const bar = progressBar();
    const status = h("p.status", {}, accepted.joined ? "joined a sampling job already under way" : "sampling job queued");
    const cancel = h(
      "button.small.danger",
      {
        type: "button",
        // On success the job's own record says "cancelled", through the watch below.
        onclick: () =>
          json(`/jobs/${accepted.job_id}`, { method: "DELETE" }).catch((error) => {
            status.textContent = `cancel: ${error.message}`;
          }),
      },
      "Cancel",
    );
    frame.replaceChildren(status, bar.element, cancel);
    if (accepted.run_id) detail.textContent = accepted.run_id;
    unwatch = watchJob(accepted.job_id, async (job, problem) => {
      if (problem) {
        status.textContent = problem.message;
        if (problem.status !== 0) fail(problem.message);
        return;
      }
      bar.update(job);
      if (job.state === "running") status.textContent = "sampling…";
      if (job.state === "failed") fail(job.error ?? "the sampling job failed");
      if (job.state === "cancelled") fail("the sampling job was cancelled");
      if (job.state === "succeeded" && !disposed) await load(accepted.links.result);
    });
  }

  async function load(path) {
    try {
      const response = await send(path);
      if (disposed) return;
      if (response.status === 200) await show(response);
      else if (response.status === 202) follow(await response.json());
      else fail((await errorOf(response)).message);
    } catch (error) {
      fail(error.message);
    }
  }

  load(`/samples?${query(params)}`);
  const dispose = () => {
    disposed = true;
    unwatch();
  };
  return { element, dispose };
}
