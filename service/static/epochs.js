// Epochs: one run's grids across its kept checkpoints from the same noise (the report's figure of
// one model across epochs).
import { json } from "./api.js";
import { clear, formatEpoch, h, message, plural } from "./dom.js";
import { sampleGrid, samplingFields } from "./grid.js";

export function epochsView() {
  const runSelect = h("select", { name: "run", required: true });
  const sampling = samplingFields();
  const problems = h("div");
  const results = h("div.grids", { id: "epoch-grids" });
  let grids = [];

  const form = h(
    "form",
    { id: "epochs-form", onsubmit: submit },
    h("fieldset.inline", {}, h("legend", {}, "Run"), h("label.wide", {}, "Run", runSelect)),
    sampling.element,
    h("button", { type: "submit" }, "Show checkpoints"),
  );
  const element = h("div", {}, form, problems, results);

  async function submit(event) {
    event.preventDefault();
    grids.forEach((grid) => grid.dispose());
    clear(results);
    clear(problems);
    const runId = runSelect.value;
    if (!runId) return;
    try {
      const run = await json(`/runs/${encodeURIComponent(runId)}?points=2`);
      if (!run.checkpoints.length) {
        clear(problems, message("info", `Run ${runId} has no kept checkpoint yet.`));
        return;
      }
      grids = run.checkpoints.map((checkpoint) =>
        sampleGrid(`epoch ${formatEpoch(checkpoint.epoch)} · step ${checkpoint.step}`, {
          run: runId,
          checkpoint: checkpoint.step,
          ...sampling.values(),
        }),
      );
      clear(results, grids.map((grid) => grid.element));
    } catch (error) {
      clear(problems, message("error", error.message));
    }
  }

  /** show() refreshes the run list; show(runId) also picks that run. Nothing is sampled until the
   * form is sent: a grid can take minutes on a CPU, so a page visit should not queue jobs. */
  async function show(runId) {
    try {
      const { runs } = await json("/runs");
      const keep = runId || runSelect.value;
      const sampled = runs.filter((run) => run.checkpoints > 0);
      clear(
        runSelect,
        sampled.map((run) =>
          h("option", { value: run.run_id, selected: run.run_id === keep }, `${run.run_id} (${run.arch}, ${plural(run.checkpoints, "checkpoint")})`),
        ),
      );
      if (!sampled.length) clear(problems, message("info", "No run has a kept checkpoint yet: start one from Train."));
    } catch (error) {
      clear(problems, message("error", error.message));
    }
  }

  return { id: "epochs", title: "Epochs", element, show };
}
