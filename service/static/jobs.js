// Jobs: the job list, newest first, with live progress for queued and running jobs, their errors,
// and a cancel button.
import { json } from "./api.js";
import { clear, formatTime, h, message, progressBar, scrollable } from "./dom.js";
import { TERMINAL, watchJob } from "./jobwatch.js";
import { serviceSummary } from "./metrics.js";

const REFRESH_MS = 3000; // the list itself (new jobs); progress comes from the job streams
const LIMIT = 50;

export function jobsView() {
  const kind = h(
    "select",
    { name: "kind", onchange: () => refresh() },
    h("option", { value: "" }, "all kinds"),
    ["train", "sample", "fid", "fid_reference"].map((name) => h("option", { value: name }, name)),
  );
  const summary = serviceSummary();
  const problems = h("div");
  const body = h("tbody");
  const rows = new Map(); // job id -> {element, update, unwatch}

  const element = h(
    "div",
    {},
    h("div.toolbar", {}, h("label", {}, "Show ", kind), summary.element),
    problems,
    scrollable(
      h(
        "table.jobs",
        {},
        h("thead", {}, h("tr", {}, ["Job", "Progress", "State", "What", "Created", "Details", ""].map((title) => h("th", {}, title)))),
        body,
      ),
      "jobs",
    ),
  );

  function jobRow(job) {
    const bar = progressBar();
    const state = h("span.state");
    const details = h("td.details");
    const cancel = h("button.small.danger", { type: "button", onclick: () => cancelJob(job.id) }, "Cancel");
    // A reference statistics job is about a data set, not a network.
    const what = job.params?.arch ?? job.params?.config?.arch ?? job.params?.dataset ?? "";
    const element = h(
      "tr",
      { dataset: { jobId: job.id } },
      // Progress second: on a phone it is in sight beside the job, ETA and all, before any scrolling.
      h("td", {}, h("code", { title: job.id }, job.id.slice(0, 8)), " ", h("span.kind", {}, job.kind)),
      h("td.progress-cell", {}, bar.element),
      h("td", {}, state),
      h("td", {}, what, job.run_id ? h("div.sub", {}, job.run_id) : null),
      h("td", {}, formatTime(job.created)),
      details,
      h("td", {}, cancel),
    );
    let last = null;
    let unwatch = null;
    // Only running jobs are followed live; queued ones change state rarely, and the list's refresh
    // sees them start (then they are followed too). Fifty queued jobs cost no connections.
    function follow(next) {
      if (unwatch || next.state !== "running") return;
      unwatch = watchJob(next.id, (latest, problem) => {
        if (latest) update(latest);
        if (problem) clear(details, h("span.error", {}, problem.message));
      });
    }
    function update(next) {
      if (last && next.updated && last.updated && next.updated < last.updated) return; // an older copy
      last = next;
      follow(next);
      bar.update(next);
      state.textContent = next.cancel_requested && !TERMINAL.includes(next.state) ? "cancelling" : next.state;
      state.className = `state ${next.state}`;
      cancel.hidden = TERMINAL.includes(next.state);
      clear(details, next.error ? h("span.error", {}, next.error) : next.message ?? "");
    }
    update(job);
    return { element, update, unwatch: () => unwatch?.() };
  }

  async function cancelJob(id) {
    try {
      const job = await json(`/jobs/${id}`, { method: "DELETE" });
      rows.get(id)?.update(job);
    } catch (error) {
      clear(problems, message("error", `Cancel ${id.slice(0, 8)}: ${error.message}`));
    }
  }

  async function refresh() {
    summary.refresh();
    try {
      const params = new URLSearchParams({ limit: String(LIMIT) });
      if (kind.value) params.set("kind", kind.value);
      const { jobs } = await json(`/jobs?${params}`);
      const seen = new Set();
      const ordered = jobs.map((job) => {
        seen.add(job.id);
        let row = rows.get(job.id);
        if (row) row.update(job);
        else rows.set(job.id, (row = jobRow(job)));
        return row.element;
      });
      for (const [id, row] of rows) {
        if (!seen.has(id)) {
          row.unwatch();
          rows.delete(id);
        }
      }
      body.replaceChildren(...ordered);
      if (!jobs.length) body.replaceChildren(h("tr", {}, h("td.empty", { colSpan: 7 }, "No jobs yet.")));
      clear(problems);
    } catch (error) {
      clear(problems, message("error", error.message));
    }
  }

  // Each show() starts one refresh loop; hide() (or the next show()) ends it and lets the job streams
  // go, so a hidden tab holds no connections.
  let generation = 0;

  async function loop(mine) {
    while (mine === generation) {
      await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
      if (mine === generation) await refresh();
    }
  }

  async function show() {
    hide();
    await refresh();
    loop(generation);
  }

  function hide() {
    generation += 1;
    for (const row of rows.values()) row.unwatch();
    rows.clear();
  }

  return { id: "jobs", title: "Jobs", element, show, hide };
}
