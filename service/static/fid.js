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
  return [view, notes.size ? list : "", fidFootnote()];
}

/** What the numbers mean, on the page (not a pointer elsewhere): read before comparing any two rows. */
function fidFootnote() {
  const points = [
    ["Lower is better.", " FID is the distance between Inception features of the generated images and of the data set's training images (pytorch-fid's own number); 0 would be indistinguishable."],
    ["N is the number of generated images", " scored against the data set's statistics. FID falls as N grows, so FIDs at different N are not comparable: compare rows of the same N (and the same data set)."],
    ["Sampler:", " the images come from the named sampler and step count, from one seed; another sampler, step count or seed gives other images and another FID."],
    ["The 95% interval", " is a bootstrap over those N images: how much FID moves with which images were drawn. It leaves out what another training run, or another seed of it, would change. Two rows whose intervals overlap are not a ranking."],
    ["KID ×10³", " is unbiased at any N (± its spread over subsets); FID-inf extrapolates FID to infinitely many images (± the fit's error); precision / recall: the share of generated images that look like data, and of the data the images cover, each between 0 and 1, higher is better, comparable only at the same N."],
    ["The report's column", " is Table 1: CIFAR-10 after 100 epochs, N = 4096, DDPM's 1000-step sampler; it compares only with a row of that setup."],
  ];
  return h("ul.note.fid-footnote", { id: "fid-footnote" }, points.map(([lead, rest]) => h("li", {}, h("strong", {}, lead), rest)));
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
    h("p.note", {}, "The report's FIDs: CIFAR-10, 100 epochs, N = 4096 samples from DDPM's 1000 steps; lower is better."),
  ];
}
