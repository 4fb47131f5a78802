// Compare: the chosen variants' grids side by side, all from the same seeded noise (the report's
// fixed-noise comparison). Each variant samples its newest checkpoint unless another is picked.
import { json } from "./api.js";
import { clear, formatEpoch, h, message } from "./dom.js";
import { sampleGrid, samplingFields } from "./grid.js";

const NEWEST = "";

export function compareView() {
  const variants = h("div.variant-list");
  const sampling = samplingFields();
  const problems = h("div");
  const results = h("div.grids", { id: "compare-grids" });
  const checked = new Set();
  const picked = new Map(); // arch -> "run@step" (absent: the newest checkpoint)
  let grids = [];

  const form = h(
    "form",
    { id: "compare-form", onsubmit: submit },
    h("fieldset", {}, h("legend", {}, "Variants"), variants),
    sampling.element,
    h("button", { type: "submit" }, "Show grids"),
  );
  const element = h("div", {}, form, problems, results);

  function submit(event) {
    event.preventDefault();
    grids.forEach((grid) => grid.dispose());
    const chosen = [...variants.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
    if (!chosen.length) {
      clear(problems, message("error", "Pick at least one variant."));
      return;
    }
    clear(problems);
    grids = chosen.map((arch) => {
      const row = variants.querySelector(`[data-arch="${arch}"]`);
      const choice = picked.get(arch);
      const where = choice ? { run: choice.split("@")[0], checkpoint: choice.split("@")[1] } : { arch };
      return sampleGrid(row.dataset.title, { ...where, ...sampling.values() });
    });
    clear(results, grids.map((grid) => grid.element));
  }

  function variantRow(arch, runs) {
    const newest = arch.newest_checkpoint;
    const ownRuns = runs.filter((run) => run.arch === arch.name && run.checkpoints > 0);
    const box = h("input", { type: "checkbox", value: arch.name, disabled: !newest, checked: checked.has(arch.name) });
    const select = h(
      "select",
      { name: `checkpoint-${arch.name}`, "aria-label": `checkpoint of ${arch.name}`, hidden: !box.checked },
      h("option", { value: NEWEST }, newest ? `newest: ${newest.run_id} · step ${newest.step}` : "no checkpoint"),
    );
    const fillCheckpoints = () => loadCheckpoints(select, ownRuns, picked.get(arch.name));
    box.addEventListener("change", () => {
      if (box.checked) checked.add(arch.name);
      else checked.delete(arch.name);
      select.hidden = !box.checked;
      if (box.checked) fillCheckpoints();
    });
    select.addEventListener("change", () => {
      if (select.value === NEWEST) picked.delete(arch.name);
      else picked.set(arch.name, select.value);
    });
    if (box.checked) fillCheckpoints();
    const fid = arch.report_fid === null ? "" : ` · report FID ${arch.report_fid}`;
    const size = `${(arch.params / 1e6).toFixed(1)}M params${fid}`;
    return h(
      "div.variant",
      { dataset: { arch: arch.name, title: arch.report_name } },
      h("label", { title: arch.description }, box, h("span", {}, h("strong", {}, arch.report_name), ` ${arch.name}`), h("small", {}, newest ? size : `${size} · no checkpoint yet: train one`)),
      select,
    );
  }

  async function show() {
    try {
      const [archs, { runs }] = await Promise.all([json("/archs"), json("/runs")]);
      clear(variants, archs.map((arch) => variantRow(arch, runs)));
      if (!archs.some((arch) => arch.newest_checkpoint)) {
        clear(problems, message("info", "No variant has a checkpoint yet: start a training run first (Train)."));
      }
    } catch (error) {
      clear(problems, message("error", error.message));
    }
  }

  return { id: "compare", title: "Compare", element, show };
}

/** Adds every kept checkpoint of the arch's runs to the select (once), as run@step. */
async function loadCheckpoints(select, runs, selected) {
  if (select.dataset.loaded) return;
  select.dataset.loaded = "yes";
  for (const run of runs) {
    try {
      const detail = await json(`/runs/${encodeURIComponent(run.run_id)}?points=2`);
      const group = h("optgroup", { label: run.run_id });
      for (const checkpoint of detail.checkpoints) {
        const value = `${run.run_id}@${checkpoint.step}`;
        const label = `step ${checkpoint.step} · epoch ${formatEpoch(checkpoint.epoch)}`;
        group.append(h("option", { value, selected: value === selected }, label));
      }
      if (group.children.length) select.append(group);
    } catch {
      // A run deleted meanwhile: it simply is not offered.
    }
  }
}
