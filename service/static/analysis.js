// Analysis: the classifier study of the report's section 3.3 (docs/analysis.md). Classify N samples of a
// checkpoint (or held-out real images, the baseline) and show the class histogram beside the data set's;
// compare two analyses (two variants, or one run's epochs); train a classifier. #analysis/<id> shows an
// analysis, #analysis/compare/<a>/<b> a comparison, so both can be bookmarked.
import { json, query } from "./api.js";
import { analysisFigure, comparisonFigure, decimal, describeSource } from "./analysischart.js";
import { datasetOptions, selectValue } from "./choices.js";
import { clear, formatEpoch, formatTime, h, message, progressBar, table } from "./dom.js";
import { watchJob } from "./jobwatch.js";
import { fieldErrors } from "./train.js";

const REAL = "real";

/** A labelled control with a slot for the API's 422 message about it (train.js's fieldErrors fills it). */
function field(label, control, help) {
  return h("label.field", { title: help ?? "" }, h("span.label", {}, label), control, h("span.field-error", { dataset: { for: control.name }, "aria-live": "polite" }));
}

function numberInput(name, value, { min, max, step = "1" } = {}) {
  return h("input", { type: "number", name, value: String(value), min, max, step });
}

function clearFieldErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

/** The form's values as a POST /analysis body (empty fields left to the API's defaults). */
function analysisBody(form) {
  const values = Object.fromEntries(new FormData(form));
  const body = {};
  if (values.source === REAL) body.real = true;
  else {
    const [run, step] = values.source.split("@");
    Object.assign(body, { run, checkpoint: Number(step), sampler: values.sampler });
    if (values.steps !== "" && values.sampler !== "ddpm") body.steps = Number(values.steps);
  }
  if (values.classifier) body.classifier = values.classifier;
  for (const name of ["n", "seed", "threshold", "per_class"]) if (values[name] !== "") body[name] = Number(values[name]);
  return body;
}

export function analysisView() {
  const source = h("select", { name: "source", required: true });
  const classifier = h("select", { name: "classifier" });
  const sampler = h("select", { name: "sampler" });
  const steps = numberInput("steps", "", { min: "1", max: "1000" });
  steps.placeholder = "the sampler's default";
  const samplingFields = h("div.sampling-fields", {}, field("Sampler", sampler), field("Steps", steps, "network calls (ddim, dpmpp_2m) or noise levels (heun); empty: the sampler's default"));
  const formError = h("div");
  const jobArea = h("div", { id: "analysis-job" });
  const form = h(
    "form",
    { id: "analysis-form", novalidate: true, onsubmit: submit },
    h(
      "fieldset",
      {},
      h("legend", {}, "New analysis"),
      h(
        "div.form-grid",
        {},
        field("Checkpoint or real images", source),
        field("Classifier", classifier, "one trained on the checkpoint's data set at its image size"),
        field("Images (N)", numberInput("n", 1000, { min: "10", max: "50000" })),
        field("Seed", numberInput("seed", 0, { min: "0" }), "image i is image i of the grids with this seed"),
        field("Confidence threshold", numberInput("threshold", 0.9, { min: "0", max: "1", step: "any" }), "a sample is confident (recognisable) when its top class probability is at least this"),
        field("Images per class in the grid", numberInput("per_class", 8, { min: "1", max: "32" })),
        samplingFields,
      ),
    ),
    formError,
    h("button", { type: "submit" }, "Analyse"),
  );
  const classifierList = h("div", { id: "classifier-list" });
  const classifierForm = trainClassifierForm(() => refreshClassifiers());
  const classifierDataset = classifierForm.querySelector('select[name="dataset"]');
  const analysesList = h("div", { id: "analysis-list" });
  const compareButton = h("button.small", { id: "analysis-compare", type: "button", disabled: true, onclick: compareSelected }, "Compare the two selected");
  const result = h("section.analysis-result", { id: "analysis-result", dataset: { state: "empty" } });
  const element = h(
    "div",
    {},
    form,
    jobArea,
    result,
    h("h3", {}, "Stored analyses"),
    h("div.toolbar", {}, h("span.sub", {}, "Pick two to compare (two variants, or one run's epochs)."), compareButton),
    analysesList,
    h("details.classifiers", {}, h("summary", {}, "Classifiers"), classifierList, classifierForm),
  );
  let built = false;
  let shown = null; // what the result area shows: an id or "compare/a/b"
  let unwatch = () => {};

  function syncSampling() {
    samplingFields.hidden = source.value === REAL;
    steps.closest("label").hidden = sampler.value === "ddpm";
  }
  source.addEventListener("change", syncSampling);
  sampler.addEventListener("change", syncSampling);

  async function build() {
    const schema = await json("/openapi.json");
    const property = schema.components.schemas.AnalysisRequest.properties.sampler;
    // The page starts at DDIM (its default steps): seconds on the quick-start model where the API's own
    // default, the report's DDPM-1000, takes about 20x the network calls. The label says which is which.
    const label = (name) => (name === property.default ? `${name} (the report's; the API's default)` : name);
    clear(sampler, (property.enum ?? []).map((name) => h("option", { value: name, selected: name === "ddim" }, label(name))));
    built = true;
  }

  async function refreshSources() {
    const { runs } = await json("/runs");
    const keep = source.value;
    const groups = [];
    for (const run of runs.filter((r) => r.checkpoints > 0)) {
      try {
        const detail = await json(`/runs/${encodeURIComponent(run.run_id)}?points=2`);
        groups.push(
          h(
            "optgroup",
            { label: `${run.run_id} (${run.arch}, ${run.dataset})` },
            detail.checkpoints.map((c) => h("option", { value: `${run.run_id}@${c.step}` }, `${run.arch} · step ${c.step} · epoch ${formatEpoch(c.epoch)}`)),
          ),
        );
      } catch {
        // A run removed meanwhile is simply not offered.
      }
    }
    clear(source, h("option", { value: REAL }, "Held-out real images (the baseline)"), groups);
    if ([...source.options].some((option) => option.value === keep)) source.value = keep;
    syncSampling();
  }

  async function refreshClassifiers() {
    const { classifiers } = await json("/classifiers");
    const keep = classifier.value;
    clear(
      classifier,
      h("option", { value: "" }, "automatic: the only one that fits"),
      classifiers
        .filter((c) => c.ready)
        .map((c) => h("option", { value: c.name }, `${c.name} · ${c.dataset} ${c.image_size}px · accuracy ${decimal(c.accuracy)}`)),
    );
    if ([...classifier.options].some((option) => option.value === keep)) classifier.value = keep;
    clear(classifierList, classifiers.length ? classifierTable(classifiers) : message("info", "No classifier yet: train one below (digits take minutes on a CPU; CIFAR-10 wants a GPU worker)."));
  }

  async function refreshDatasets() {
    const { datasets } = await json("/datasets");
    const keep = classifierDataset.value || "digits";
    clear(classifierDataset, datasetOptions(datasets));
    selectValue(classifierDataset, keep);
  }

  async function refreshAnalyses() {
    const { analyses } = await json("/analysis");
    if (!analyses.length) {
      clear(analysesList, message("info", "No analysis yet: start one above."));
      compareButton.disabled = true;
      return;
    }
    const pick = (row) => h("input", { type: "checkbox", name: "pick", value: row.id, "aria-label": `compare ${row.id}`, onchange: syncCompare });
    clear(
      analysesList,
      table(
        [
          { title: "", cell: pick },
          { title: "Created", cell: (row) => formatTime(row.created) },
          { title: "Source", cell: (row) => h("a", { href: `#analysis/${row.id}` }, describeSource(row)) },
          { title: "Classifier", cell: (row) => row.classifier },
          { title: "N", cell: (row) => String(row.n), className: "num" },
          { title: "Classes", cell: (row) => `${row.classes_present}/${row.classes}`, className: "num" },
          { title: "Entropy / log K", cell: (row) => decimal(row.entropy_normalised), className: "num" },
          { title: "TV (noise p95)", cell: (row) => `${decimal(row.total_variation)} (${decimal(row.null_total_variation_p95)})`, className: "num" },
          { title: "Differs from data", cell: (row) => (row.measurably_different ? "yes" : "no") },
          { title: "Confident", cell: (row) => decimal(row.confident_share), className: "num" },
        ],
        analyses,
        { rowAttrs: (row) => ({ dataset: { id: row.id }, class: shown === row.id ? "selected" : undefined }) },
      ),
    );
    syncCompare();
  }

  function picked() {
    return [...analysesList.querySelectorAll("input[name=pick]:checked")].map((box) => box.value);
  }

  function syncCompare() {
    compareButton.disabled = picked().length !== 2;
  }

  function compareSelected() {
    const [a, b] = picked();
    if (a && b) location.hash = `analysis/compare/${a}/${b}`;
  }

  async function showResult(target) {
    if (!target) return;
    result.dataset.state = "loading";
    clear(result, h("p.status", {}, "loading…"));
    try {
      if (target.startsWith("compare/")) {
        const [, a, b] = target.split("/");
        clear(result, comparisonFigure(await json(`/analysis/compare?${query({ a, b })}`)));
      } else {
        clear(result, analysisFigure(await json(`/analysis/${encodeURIComponent(target)}`)));
      }
      result.dataset.state = "ready";
      result.dataset.shows = target;
    } catch (error) {
      result.dataset.state = "error";
      clear(result, message("error", error.message));
    }
  }

  async function submit(event) {
    event.preventDefault();
    clearFieldErrors(form);
    clear(formError);
    try {
      const accepted = await json("/analysis", { method: "POST", body: analysisBody(form) });
      follow(accepted);
    } catch (error) {
      clear(formError, fieldErrors(form, error));
    }
  }

  function follow(accepted) {
    unwatch();
    const bar = progressBar();
    const status = h("p.status", {}, accepted.message ?? "queued");
    clear(jobArea, h("div.accepted", { dataset: { jobId: accepted.job_id } }, status, bar.element));
    unwatch = watchJob(accepted.job_id, (job, problem) => {
      if (problem) {
        status.textContent = problem.message;
        return;
      }
      bar.update(job);
      if (job.state === "running" && job.message) status.textContent = job.message;
      if (job.state === "failed") status.textContent = job.error ?? "the analysis failed";
      if (job.state === "cancelled") status.textContent = "cancelled";
      if (job.state === "succeeded") {
        status.textContent = job.message;
        location.hash = `analysis/${job.result.analysis_id}`;
      }
    });
  }

  async function show(target) {
    shown = target ?? null; // the list marks the analysis shown
    try {
      if (!built) await build();
      await Promise.all([refreshSources(), refreshClassifiers(), refreshAnalyses(), refreshDatasets()]);
    } catch (error) {
      clear(formError, message("error", error.message));
    }
    await showResult(target);
  }

  return { id: "analysis", title: "Analysis", element, show };
}

function classifierTable(classifiers) {
  return table(
    [
      { title: "Name", cell: (c) => c.name },
      { title: "Data set", cell: (c) => `${c.dataset} ${c.image_size}px` },
      { title: "Held-out accuracy (95% CI)", cell: (c) => `${decimal(c.accuracy)}${c.accuracy_ci95 ? ` (${c.accuracy_ci95.map((v) => decimal(v)).join("–")})` : ""}`, className: "num" },
      { title: "Held out", cell: (c) => String(c.split?.n_holdout ?? "–"), className: "num" },
      { title: "Epochs", cell: (c) => String(c.epoch ?? "–"), className: "num" },
      { title: "Status", cell: (c) => h(`span.state.${c.status}`, { title: c.error ?? "" }, c.status) },
    ],
    classifiers,
    { rowAttrs: (c) => ({ dataset: { name: c.name } }) },
  );
}

/** POST /classifiers: the data set, its image size, epochs and a name; the rest at the recipe's defaults. */
function trainClassifierForm(onDone) {
  const result = h("div");
  const formError = h("div");
  const form = h(
    "form",
    { id: "classifier-form", novalidate: true, onsubmit: submit },
    h(
      "fieldset",
      {},
      h("legend", {}, "Train a classifier (a small seeded ResNet; docs/analysis.md)"),
      h(
        "div.form-grid",
        {},
        field("Data set", h("select", { name: "dataset" }, h("option", { value: "digits" }, "digits")), "GET /datasets: cifar10, digits, the folders under DATA_DIR/datasets"),
        field("Image size", numberInput("image_size", 32, { min: "8", max: "256" }), "digits and folders (cifar10 is 32)"),
        field("Epochs", numberInput("epochs", 30, { min: "1", max: "1000" })),
        field("Name (optional)", h("input", { type: "text", name: "name", placeholder: "resnet-<dataset>-<size>px", autocomplete: "off" })),
      ),
    ),
    formError,
    h("button", { type: "submit" }, "Train classifier"),
    result,
  );

  async function submit(event) {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    const body = { dataset: values.dataset, image_size: Number(values.image_size), epochs: Number(values.epochs) };
    if (values.name.trim()) body.name = values.name.trim();
    clear(formError);
    try {
      const accepted = await json("/classifiers", { method: "POST", body });
      clearFieldErrors(form);
      const bar = progressBar();
      const status = h("p.status", {}, accepted.message);
      clear(result, h("div.accepted", { dataset: { jobId: accepted.job_id } }, status, bar.element));
      watchJob(accepted.job_id, (job, problem) => {
        if (problem) status.textContent = problem.message;
        if (!job) return;
        bar.update(job);
        status.textContent = job.error ?? job.message ?? status.textContent;
        if (job.state === "succeeded") onDone();
      });
    } catch (error) {
      clear(formError, fieldErrors(form, error));
    }
  }

  return form;
}
