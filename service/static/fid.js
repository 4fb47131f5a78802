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
    // The results table is wide (every metric): it takes the full width, the report's table sits by the plot.
    h("h3", {}, "Our results"),
    results,
    h(
      "div.columns",
      {},
      h("div", {}, h("h3", {}, "FID against the number of samples"), plot),
      h("div", {}, h("h3", {}, "The report's Table 1"), report),
    ),
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

// Every metric of every stored evaluation, one row per N; each row's warnings (and why a metric is
// missing) are numbered notes written out under the table, visible rather than in a tooltip.
function resultsTable(rows) {
  const notes = new Map();
  const marks = (row) => {
    const texts = [...(row.warnings ?? []), ...Object.entries(row.unavailable ?? {}).map(([metric, why]) => `no ${metric}: ${why}`)];
    return texts.map((text) => {
      if (!notes.has(text)) notes.set(text, notes.size + 1);
      return `[${notes.get(text)}]`;
    }).join(" ");
  };
  // Fixed decimals throughout (formatNumber prints an integral value without them).
  const fixed = (value, digits = 2) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
  const interval = (row) => (row.fid_low === null || row.fid_low === undefined ? "" : ` (${fixed(row.fid_low)}–${fixed(row.fid_high)})`);
  const plusMinus = (value, spread, scale = 1) =>
    value === null || value === undefined ? "–" : `${fixed(value * scale)}${spread === null || spread === undefined ? "" : ` ± ${fixed(spread * scale)}`}`;
  const marked = rows.map((row) => ({ ...row, notes: marks(row) }));
  const view = table(
    [
      { title: "Variant", cell: (row) => h("span", { title: row.arch }, row.report_name ?? row.arch) },
      { title: "Run", cell: (row) => h("a", { href: `#runs/${row.run_id}` }, row.run_id) },
      { title: "Step", cell: (row) => String(row.step) },
      { title: "Epoch", cell: (row) => formatEpoch(row.epoch) },
      { title: "Sampler", cell: (row) => (row.sampler === "ddpm" || !row.steps ? row.sampler : `${row.sampler} ${row.steps}`) },
      { title: "Data", cell: (row) => row.dataset ?? "–" },
      { title: "N", cell: (row) => String(row.n), className: "num" },
      { title: "FID (95% interval)", cell: (row) => h("span", {}, h("strong", {}, fixed(row.fid)), interval(row)), className: "num" },
      { title: "FID-inf", cell: (row) => plusMinus(row.fid_inf, row.fid_inf_se), className: "num" },
      { title: "KID ×10³", cell: (row) => plusMinus(row.kid, row.kid_std, 1000), className: "num" },
      { title: "Precision / recall", cell: (row) => (row.precision === null || row.precision === undefined ? "–" : `${fixed(row.precision)} / ${fixed(row.recall)}`), className: "num" },
      { title: "Report (CIFAR-10, N=4096)", cell: (row) => formatNumber(row.report_fid), className: "num" },
      { title: "Notes", cell: (row) => row.notes },
    ],
    marked,
  );
  const list = h("ol.notes", {}, [...notes.keys()].map((text) => h("li", {}, text)));
  return [
    view,
    notes.size ? list : "",
    h(
      "p.note",
      {},
      "FID depends on N (it falls as N grows), so compare FIDs at the same N only. KID is unbiased at any N; " +
        "FID-inf extrapolates FID to infinitely many samples. Two figures whose intervals overlap are not a ranking.",
    ),
  ];
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
