// Studies: start one from a preset (with a few fields of it changed), watch each member's training,
// grid and FID, cancel or retry, and open the report. The API plans and validates everything: its
// 422s are shown as it words them, naming the field.
import { ApiError, errorOf, json, send } from "./api.js";
import { clear, formatNumber, formatTime, h, message, plural, progressBar, table } from "./dom.js";
import { sampleGrid } from "./grid.js";

const POLL_MS = 2000;
const STAGES = ["train", "grid", "fid"];
const FINISHED = ["done", "failed", "cancelled"];
const QUICK_PRESET = "digits-smoke";

export function studiesView() {
  const presetSelect = h("select", { id: "study-preset", name: "preset" });
  const nameInput = h("input", { id: "study-name", name: "name", placeholder: "default: the preset's name" });
  const variantsInput = h("input", { id: "study-variants", name: "variants", placeholder: "default: the preset's, e.g. baseline, biggan" });
  const stepsInput = h("input", { id: "study-max-steps", name: "max_steps", type: "number", min: "1", placeholder: "default: the preset's" });
  const presetNote = h("p.note", { id: "study-preset-note" });
  const formError = h("div", { id: "study-form-error" });
  const form = h(
    "form",
    { id: "study-form", novalidate: true, onsubmit: submit },
    h(
      "fieldset",
      {},
      h("legend", {}, "New study"),
      h(
        "div.form-grid",
        {},
        h("label", {}, "Preset", presetSelect),
        h("label", {}, "Name", nameInput),
        h("label", {}, "Variants (comma-separated)", variantsInput),
        h("label", {}, "Max training steps", stepsInput),
      ),
      presetNote,
    ),
    formError,
    h("button", { type: "submit" }, "Start study"),
  );
  const list = h("div", { id: "study-list" });
  const detail = h("div", { id: "study-detail" });
  // The members' grids, shown on request; outside `detail`, which is redrawn at every poll.
  const grids = h("div.grids", { id: "study-grids" });
  const element = h("div", {}, form, h("h3", {}, "Studies"), list, detail, grids);
  let gridCards = [];
  let presets = [];
  let timer = null;
  let shownId = null;

  async function show(studyId) {
    stop();
    if ((studyId ?? null) !== shownId) showGrids(null);
    shownId = studyId ?? null;
    if (!presets.length) await loadPresets();
    await refresh();
  }

  function hide() {
    stop();
  }

  /** Each member's grid (from the sample cache: its grid stage wrote it), each opening at full size. */
  function showGrids(study) {
    gridCards.forEach((card) => card.dispose());
    gridCards = (study?.member_states ?? [])
      .filter((member) => member.stages.grid?.state === "succeeded" && member.stages.grid.links.image)
      .map((member) => {
        const params = Object.fromEntries(new URL(member.stages.grid.links.image, location.origin).searchParams);
        return sampleGrid(member.key, params); // the card adds its run and step
      });
    clear(grids, gridCards.map((card) => card.element));
  }

  function stop() {
    if (timer) clearTimeout(timer);
    timer = null;
  }

  async function loadPresets() {
    try {
      presets = (await json("/studies/presets")).presets;
      clear(presetSelect, presets.map((preset) => h("option", { value: preset.name }, `${preset.name} (${plural(preset.members, "member")})`)));
      // The quick one first: report-table1 is GPU-hours (weeks on a CPU), not something to start by a stray click.
      if (presets.some((preset) => preset.name === QUICK_PRESET)) presetSelect.value = QUICK_PRESET;
      describePreset();
      presetSelect.addEventListener("change", describePreset);
    } catch (error) {
      clear(formError, message("error", error.message));
    }
  }

  function describePreset() {
    const preset = presets.find((candidate) => candidate.name === presetSelect.value);
    if (!preset) return;
    const { variants, train, evaluation } = preset.spec;
    const length = train.max_steps ? plural(train.max_steps, "step") : plural(train.epochs, "epoch");
    presetNote.textContent = `${variants.join(", ")}: ${train.dataset}, ${length}, batch ${train.batch_size}; FID at N = ${evaluation.fid_n.join(", ")} with ${evaluation.sampler.sampler}.`;
  }

  async function submit(event) {
    event.preventDefault();
    const body = { preset: presetSelect.value };
    if (nameInput.value.trim()) body.name = nameInput.value.trim();
    const variants = variantsInput.value.split(",").map((name) => name.trim()).filter(Boolean);
    if (variants.length) body.variants = variants;
    if (stepsInput.value) body.train = { max_steps: Number(stepsInput.value) };
    clear(formError);
    try {
      const study = await json("/studies", { method: "POST", body });
      location.hash = `#studies/${study.id}`;
    } catch (error) {
      clear(formError, message("error", error instanceof ApiError ? fieldMessage(error) : error.message));
    }
  }

  async function refresh() {
    stop();
    try {
      const studies = (await json("/studies")).studies;
      clear(list, studies.length ? studyList(studies, shownId) : message("info", "No studies yet: start one above."));
      if (shownId) {
        const study = await json(`/studies/${shownId}`);
        clear(detail, studyDetail(study, refresh, showGrids));
        if (!FINISHED.includes(study.state)) timer = setTimeout(refresh, POLL_MS);
      } else {
        clear(detail);
        if (studies.some((study) => !FINISHED.includes(study.state))) timer = setTimeout(refresh, POLL_MS);
      }
    } catch (error) {
      clear(detail, message("error", error.message));
    }
  }

  return { id: "studies", title: "Studies", element, show, hide };
}

/** "422: variants[1]: unknown arch ..." with the field each complaint names. */
function fieldMessage(error) {
  if (!Array.isArray(error.detail)) return error.message;
  return `${error.status}: ` + error.detail.map((item) => `${(item.loc ?? []).filter((part) => part !== "body").join(".")}: ${item.msg}`).join("; ");
}

function studyList(studies, shownId) {
  return table(
    [
      { title: "Study", cell: (study) => h("a", { href: `#studies/${study.id}` }, study.name) },
      { title: "State", cell: (study) => h("span.badge", { dataset: { state: study.state } }, study.state) },
      { title: "Members done", cell: (study) => `${study.done} / ${study.members}`, className: "num" },
      { title: "Variants", cell: (study) => study.variants.join(", ") },
      { title: "Started", cell: (study) => formatTime(study.created) },
    ],
    studies,
    { rowAttrs: (study) => ({ "aria-current": study.id === shownId ? "true" : undefined, dataset: { study: study.id } }) },
  );
}

function studyDetail(study, refresh, showGrids) {
  const gridsDone = study.member_states.filter((member) => member.stages.grid?.state === "succeeded").length;
  const actions = h(
    "div.actions",
    {},
    gridsDone ? h("button.small", { type: "button", id: "study-grids-show", onclick: () => showGrids(study) }, `Show ${plural(gridsDone, "grid")}`) : "",
    h("button.small", { type: "button", id: "study-report", onclick: () => openReport(study.id) }, "Open report"),
    h("button.small", { type: "button", onclick: () => download(study.links.report_zip, `study-${study.id.slice(0, 8)}.zip`) }, "Markdown + figures (zip)"),
    h("button.small", { type: "button", onclick: () => download(study.links.report_csv, `study-${study.id.slice(0, 8)}.csv`) }, "Table (CSV)"),
    FINISHED.includes(study.state) ? "" : h("button.small", { type: "button", id: "study-cancel", onclick: () => act("DELETE", study.links.self) }, "Cancel"),
    ["failed", "cancelled"].includes(study.state) ? h("button.small", { type: "button", id: "study-retry", onclick: () => act("POST", study.links.retry) }, "Retry failed members") : "",
  );
  const problem = h("div");

  async function act(method, path) {
    try {
      await json(path, { method });
      refresh();
    } catch (error) {
      clear(problem, message("error", error.message));
    }
  }

  return h(
    "article.study",
    { id: `study-${study.id}`, dataset: { state: study.state } },
    h("h3", {}, `${study.name} `, h("span.badge", { dataset: { state: study.state } }, study.state)),
    actions,
    problem,
    table(
      [
        { title: "Member", cell: (member) => member.key },
        { title: "Run", cell: (member) => h("a", { href: `#runs/${member.run_id}` }, member.run_id) },
        { title: "State", cell: (member) => h("span.badge", { dataset: { state: member.state } }, member.state) },
        ...STAGES.map((stage) => ({ title: stage === "grid" ? "Grid" : stage === "fid" ? "FID" : "Training", cell: (member) => stageCell(member.stages[stage]) })),
        { title: "Error", cell: (member) => member.error ?? "" },
      ],
      study.member_states,
      { rowAttrs: (member) => ({ dataset: { member: member.key, state: member.state } }) },
    ),
    h("h4", {}, "The table so far"),
    resultTable(study.table),
  );
}

function stageCell(stage) {
  if (stage.state === "attached") return "attached run";
  if (!stage.state) return "–";
  const bar = progressBar();
  bar.update({ state: stage.state, progress: stage.progress });
  return stage.links.job ? h("a", { href: `#jobs/${stage.job_id}`, title: stage.message ?? "" }, bar.element) : bar.element;
}

// The engine's rows (ddpm/study/report.py table()): the columns a reader compares by (FID at every N;
// the report and the CSV have every metric), numbers formatted.
const SHOWN = ["member", "report_name", "state", "parameters", "train_seconds", "final_loss_smoothed"];
function resultTable(rows) {
  if (!rows?.length) return message("info", "No rows yet.");
  const keys = [...SHOWN, ...Object.keys(rows[0]).filter((key) => /^fid_\d+$/.test(key)), "tier"];
  const columns = keys.map((key) => ({
    title: key.replaceAll("_", " "),
    cell: (row) => (typeof row[key] === "number" ? formatNumber(row[key]) : row[key] === null || row[key] === undefined ? "–" : String(row[key])),
    className: typeof rows[0][key] === "number" ? "num" : undefined,
  }));
  return table(columns, rows);
}

/** The report is fetched with the key and opened from a blob: URL (a plain link could not carry the key). */
async function openReport(studyId) {
  const opened = window.open("", "_blank");
  const response = await send(`/studies/${studyId}/report?format=html`, { accept: "text/html" });
  if (!response.ok) {
    opened?.close();
    throw await errorOf(response);
  }
  const url = URL.createObjectURL(new Blob([await response.text()], { type: "text/html" }));
  if (opened) opened.location = url;
  else location.assign(url);
}

async function download(path, filename) {
  const response = await send(path);
  if (!response.ok) throw await errorOf(response);
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
