// FID: the stored results beside the report's Table 1, and the FID-vs-N plot.
import { apiImage, json } from "./api.js";
import { clear, formatEpoch, formatNumber, h, message, table } from "./dom.js";

export function fidView() {
  const results = h("div");
  const report = h("div");
  const plot = h("div.plot");
  const element = h(
    "div",
    {},
    h("div.columns", {}, h("div", {}, h("h3", {}, "Our results"), results), h("div", {}, h("h3", {}, "The report's Table 1"), report)),
    h("h3", {}, "FID against the number of samples"),
    plot,
  );

  async function show() {
    // Drawn afresh on every visit: new results may have been stored meanwhile.
    clear(plot, apiImage("/fid/plot.png", "FID against N"));
    try {
      const data = await json("/fid");
      clear(results, data.rows.length ? resultsTable(data.rows) : message("info", "No FID results yet: POST /fid scores a checkpoint."));
      clear(report, reportTable(data.report));
    } catch (error) {
      clear(results, message("error", error.message));
    }
  }

  return { id: "fid", title: "FID", element, show };
}

function resultsTable(rows) {
  return table(
    [
      { title: "Variant", cell: (row) => h("span", { title: row.arch }, row.report_name ?? row.arch) },
      { title: "Run", cell: (row) => h("a", { href: `#runs/${row.run_id}` }, row.run_id) },
      { title: "Step", cell: (row) => String(row.step) },
      { title: "Epoch", cell: (row) => formatEpoch(row.epoch) },
      { title: "Sampler", cell: (row) => (row.steps ? `${row.sampler} ${row.steps}` : row.sampler) },
      { title: "Data", cell: (row) => row.dataset ?? "–" },
      { title: "N", cell: (row) => String(row.n), className: "num" },
      { title: "FID", cell: (row) => h("strong", { title: (row.warnings ?? []).join("\n") }, formatNumber(row.fid)), className: "num" },
      { title: "Report", cell: (row) => formatNumber(row.report_fid), className: "num" },
    ],
    rows,
  );
}

function reportTable(report) {
  const scored = report.filter((row) => row.report_fid !== null).sort((a, b) => a.report_fid - b.report_fid);
  return [
    table(
      [
        { title: "Model", cell: (row) => h("span", { title: row.arch }, row.report_name) },
        { title: "FID", cell: (row) => formatNumber(row.report_fid), className: "num" },
      ],
      scored,
    ),
    h("p.note", {}, "CIFAR-10, 100 epochs, 4096 samples; README lists the two figures from outside the table (an ablation and Ho et al.'s own)."),
  ];
}
