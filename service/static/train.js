// Train: a form for POST /train. Its controls and client-side bounds come from the API's own OpenAPI
// schema (TrainRequest), the variants and data sets it offers from GET /archs and GET /datasets, and
// the API's 422 answers are shown beside the fields they name: the API, not this page, decides what is
// valid.
import { ApiError, json } from "./api.js";
import { datasetOptions, selectValue, variantOptions } from "./choices.js";
import { clear, h, message, progressBar } from "./dom.js";
import { watchJob } from "./jobwatch.js";

// The fields the form shows, in order, with their labels; `resume` lives on a run's page (Runs).
const FIELDS = [
  ["arch", "Variant"],
  ["dataset", "Dataset"],
  ["image_size", "Image size (digits, folders)"],
  ["epochs", "Epochs"],
  ["max_steps", "Max steps (optional cap)"],
  ["batch_size", "Batch size"],
  ["lr", "Learning rate"],
  ["width", "Width (channel multiplier)"],
  ["seed", "Seed"],
  ["checkpoint_every", "Checkpoint every (epochs)"],
  ["schedule", "Noise schedule"],
  ["dropout", "Dropout (optional)"],
  ["ema", "EMA weights"],
  ["run_id", "Run id (optional)"],
];

export function trainView() {
  const fields = h("div.form-grid");
  const formError = h("div");
  const result = h("div", { id: "train-result" });
  const form = h(
    "form",
    { id: "train-form", novalidate: true, onsubmit: submit },
    h("fieldset", {}, h("legend", {}, "New training run"), fields),
    formError,
    h("button", { type: "submit" }, "Start training"),
  );
  const element = h("div", {}, form, result);
  let built = false;

  async function build() {
    const [schema, archs, recipes, { datasets }] = await Promise.all([
      json("/openapi.json"),
      json("/archs"),
      json("/train/presets"),
      json("/datasets"),
    ]);
    const properties = schema.components.schemas.TrainRequest.properties;
    // The variant has no default (a recipe names one): until then the select asks for it.
    const choices = {
      arch: [h("option", { value: "" }, "choose a variant"), variantOptions(archs)],
      dataset: datasetOptions(datasets),
    };
    clear(
      fields,
      presetField(recipes, properties),
      FIELDS.map(([name, label]) => field(name, label, properties[name] ?? {}, choices[name])),
    );
    applyPreset(form, recipes.presets[recipes.default], properties);
    built = true;
  }

  async function submit(event) {
    event.preventDefault();
    const { body, problems } = formValues(form);
    showErrors(form, formError, problems.length ? problems : []);
    if (problems.length) return;
    try {
      const accepted = await json("/train", { method: "POST", body });
      clear(formError);
      showAccepted(result, accepted);
    } catch (error) {
      clear(formError, fieldErrors(form, error));
    }
  }

  async function show() {
    if (built) return;
    try {
      await build();
    } catch (error) {
      clear(formError, message("error", `Could not load the form: ${error.message}`));
    }
  }

  return { id: "train", title: "Train", element, show };
}

/** The recipe select: a named preset (GET /train/presets; the default first) or the report's setup. */
function presetField(recipes, properties) {
  const names = [recipes.default, ...Object.keys(recipes.presets).filter((name) => name !== recipes.default)];
  const control = h(
    "select",
    { name: "preset" },
    names.map((name) => h("option", { value: name, selected: name === recipes.default }, name)),
    h("option", { value: "" }, "none: the report's setup (CIFAR-10, 100 epochs)"),
  );
  control.dataset.kind = "string";
  control.dataset.optional = "yes";
  control.addEventListener("change", () => applyPreset(control.form, recipes.presets[control.value], properties));
  return h(
    "label.field",
    { title: properties.preset?.description ?? "" },
    h("span.label", {}, "Recipe"),
    control,
    h("span.field-error", { dataset: { for: "preset" }, "aria-live": "polite" }),
  );
}

/** Shows a preset's values in the form (the API's defaults for what it leaves out, or for no preset). */
function applyPreset(form, preset, properties) {
  for (const [name] of FIELDS) {
    const control = form.querySelector(`[name="${name}"]`);
    if (!control) continue;
    const value = preset && name in preset ? preset[name] : properties[name]?.default;
    if (control.type === "checkbox") control.checked = value === true;
    else if (control.tagName === "SELECT") selectValue(control, value === null || value === undefined ? "" : String(value));
    else control.value = value === null || value === undefined ? "" : String(value);
  }
}

/** A labelled control for one TrainRequest property: its type, bounds, default and help; a select of
 * `options` when the API lists the valid values elsewhere (variants, data sets). */
function field(name, label, property, options) {
  const spec = property.anyOf?.find((option) => option.type !== "null") ?? property;
  const optional = Boolean(property.anyOf?.some((option) => option.type === "null"));
  const help = property.description ?? spec.description ?? "";
  let control;
  if (options) {
    control = h("select", { name }, options);
    selectValue(control, property.default ?? "");
  } else if (spec.type === "boolean") {
    control = h("input", { type: "checkbox", name, checked: property.default === true });
  } else if (spec.enum) {
    control = h("select", { name }, spec.enum.map((value) => h("option", { value, selected: value === property.default }, value)));
  } else if (spec.type === "integer" || spec.type === "number") {
    control = h("input", {
      type: "number",
      name,
      step: spec.type === "integer" ? "1" : "any",
      min: String(spec.minimum ?? spec.exclusiveMinimum ?? ""),
      max: String(spec.maximum ?? spec.exclusiveMaximum ?? ""),
      value: property.default === null || property.default === undefined ? "" : String(property.default),
    });
  } else {
    control = h("input", {
      type: "text",
      name,
      value: property.default ?? "",
      maxlength: spec.maxLength ? String(spec.maxLength) : undefined,
      autocomplete: "off",
    });
  }
  control.dataset.kind = spec.type ?? "string";
  control.dataset.optional = optional ? "yes" : "no";
  return h(
    `label.field${spec.type === "boolean" ? ".check" : ""}${options ? ".choice" : ""}`,
    { title: help },
    h("span.label", {}, label),
    control,
    h("span.field-error", { dataset: { for: name }, "aria-live": "polite" }),
  );
}

/** The JSON body (empty optional fields left out) and the values the browser itself could not read. */
function formValues(form) {
  const body = {};
  const problems = [];
  for (const control of form.querySelectorAll("[name]")) {
    const { name } = control;
    if (control.type === "checkbox") body[name] = control.checked;
    else if (control.validity.badInput) problems.push({ loc: ["body", name], msg: "not a number" });
    else if (control.value === "") continue; // the API's default (or none, for optional fields)
    else if (control.type === "number") body[name] = Number(control.value);
    else body[name] = control.value.trim();
  }
  return { body, problems };
}

/**
 * Puts a 422's messages beside the fields they name (loc ["body", field]) and returns what belongs to
 * no one field (checks across fields, 409s, 503s...) as a message for the whole form.
 */
export function fieldErrors(form, error) {
  const detail = error instanceof ApiError ? error.detail : error.message;
  const general = showErrors(form, null, Array.isArray(detail) ? detail : []);
  if (!Array.isArray(detail)) return message("error", error.message);
  return general.length ? message("error", general.join("; ")) : null;
}

function showErrors(form, target, items) {
  for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
  for (const control of form.querySelectorAll("[name]")) control.removeAttribute("aria-invalid");
  const general = [];
  for (const item of items) {
    const name = item.loc?.[0] === "body" && item.loc.length > 1 ? item.loc[1] : null;
    const slot = name === null ? null : form.querySelector(`.field-error[data-for="${name}"]`);
    if (!slot) {
      general.push(item.msg.replace(/^Value error, /, ""));
      continue;
    }
    slot.textContent = item.msg.replace(/^Value error, /, "");
    form.querySelector(`[name="${name}"]`)?.setAttribute("aria-invalid", "true");
  }
  if (target) clear(target, general.length ? message("error", general.join("; ")) : null);
  return general;
}

function showAccepted(target, accepted) {
  const bar = progressBar();
  const state = h("p.status", {}, `Queued job ${accepted.job_id.slice(0, 8)} for run ${accepted.run_id}.`);
  clear(
    target,
    h(
      "div.accepted",
      { dataset: { jobId: accepted.job_id, runId: accepted.run_id } },
      state,
      bar.element,
      h("p", {}, h("a", { href: `#runs/${accepted.run_id}` }, "The run"), " · ", h("a", { href: "#jobs" }, "All jobs")),
    ),
  );
  watchJob(accepted.job_id, (job, problem) => {
    if (job) bar.update(job);
    if (job?.error) state.textContent = job.error;
    if (problem) state.textContent = problem.message;
  });
}
