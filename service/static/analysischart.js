// The classifier study's figures (docs/analysis.md): one analysis or a comparison of two, drawn from the
// API's records. The histogram and its distance from the data set come first: a classifier is also sure
// of images unlike its data, so the confident share reads as "recognisable" only once the histogram
// shows the classes are covered.
import { apiImage } from "./api.js";
import { formatEpoch, h, plural, table } from "./dom.js";
import { enlargeable } from "./lightbox.js";

const SVG = "http://www.w3.org/2000/svg";
const GRID_PADDING = 2; // pixels between and around the grid's images (torchvision's make_grid)
const CELL_PX = 32; // small images are scaled up (pixelated) to about this many pixels a side
const MIN_SCALE = 0.85; // a chart is shown at least this size of its drawing units

export const CAVEAT =
  "Read the histogram and its distance from the data set first. A classifier is also sure of images that look nothing like its data (an early checkpoint's textures), so the confident share means “recognisable” only when the histogram covers the classes.";

/** "baseline · run x · step 300 · epoch 20", or the held-out real images. */
export function describeSource(row) {
  if (row.kind === "real") return `held-out real images (${row.dataset})`;
  return `${row.arch} · ${row.run_id} · step ${row.step} · epoch ${formatEpoch(row.epoch)}`;
}

function describeSampling(row) {
  if (row.kind === "real") return `N=${row.n}, seed ${row.seed}`;
  const steps = row.steps ? ` ${plural(row.steps, "step")}` : "";
  return `N=${row.n}, seed ${row.seed}, ${row.sampler}${steps}`;
}

/** A fraction or statistic with fixed decimals (0 shows as 0.000, not as the integer 0). */
export const decimal = (value, digits = 3) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
const percent = (value) => (value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)}%`);
const interval = (ci) => (ci ? `${percent(ci[0])}–${percent(ci[1])}` : "");
const pValue = (p) => (p === null || p === undefined ? "–" : p >= 1e-3 ? p.toFixed(3) : p.toExponential(1));

function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
  element.append(...children);
  return element;
}

/**
 * Grouped bars of class shares: one group per class, one bar per series ({label, className, shares,
 * intervals?}), whiskers at the 95% Wilson intervals. Scales to its container's width.
 */
export function shareChart(classNames, series) {
  const groupWidth = 16 + 14 * series.length;
  const left = 40;
  const plotHeight = 170;
  const rotate = classNames.some((name) => name.length > 3);
  const bottom = rotate ? 64 : 26;
  const width = left + classNames.length * groupWidth + 8;
  const height = 10 + plotHeight + bottom;
  const highest = Math.max(
    0.1,
    ...series.flatMap((s) => s.shares.map((share, i) => Math.max(share ?? 0, s.intervals?.[i]?.[1] ?? 0))),
  );
  const top = Math.min(1, Math.ceil(highest * 10) / 10);
  const y = (value) => 10 + plotHeight * (1 - value / top);
  const chart = svg("svg", {
    class: "share-chart",
    viewBox: `0 0 ${width} ${height}`,
    // Never drawn below MIN_SCALE (its text would be unreadable): a phone scrolls the chart sideways.
    style: `min-width: ${Math.round(width * MIN_SCALE)}px`,
    role: "img",
    "aria-label": `class shares: ${series.map((s) => s.label).join(", ")}`,
    "data-classes": classNames.length,
  });
  for (let tick = 0; tick <= 5; tick += 1) {
    const value = (top * tick) / 5;
    chart.append(
      svg("line", { class: "gridline", x1: left, x2: width - 8, y1: y(value), y2: y(value) }),
      svg("text", { class: "tick", x: left - 4, y: y(value) + 3, "text-anchor": "end" }, `${Math.round(value * 100)}%`),
    );
  }
  classNames.forEach((name, c) => {
    const x0 = left + c * groupWidth + 8;
    series.forEach((s, k) => {
      const share = s.shares[c] ?? 0;
      const x = x0 + k * 14;
      const ci = s.intervals?.[c];
      const bar = svg("rect", { class: `bar ${s.className}`, x, y: y(share), width: 12, height: Math.max(0, y(0) - y(share)) });
      bar.append(svg("title", {}, `${name}: ${s.label} ${percent(share)}${ci ? ` (95% CI ${interval(ci)})` : ""}`));
      chart.append(bar);
      if (ci) {
        const mid = x + 6;
        chart.append(
          svg("line", { class: "whisker", x1: mid, x2: mid, y1: y(ci[0]), y2: y(ci[1]) }),
          svg("line", { class: "whisker", x1: mid - 3, x2: mid + 3, y1: y(ci[1]), y2: y(ci[1]) }),
          svg("line", { class: "whisker", x1: mid - 3, x2: mid + 3, y1: y(ci[0]), y2: y(ci[0]) }),
        );
      }
    });
    const cx = x0 + (series.length * 14 - 2) / 2;
    const label = rotate
      ? svg("text", { class: "label", x: cx, y: y(0) + 10, "text-anchor": "end", transform: `rotate(-40 ${cx} ${y(0) + 10})` }, name)
      : svg("text", { class: "label", x: cx, y: y(0) + 16, "text-anchor": "middle" }, name);
    chart.append(label);
  });
  chart.append(svg("line", { class: "axis", x1: left, x2: width - 8, y1: y(0), y2: y(0) }));
  const legend = h(
    "ul.legend",
    {},
    series.map((s) => h("li", {}, h(`span.swatch.${s.className}`), s.label)),
    series.some((s) => s.intervals) ? h("li", {}, h("span.whisker-key"), "95% Wilson interval") : null,
  );
  return h("figure.chart", {}, h("div.chart-scroll", {}, chart), legend);
}

/** The grid of the most confident images of each class (one row per class), scaled up pixelated,
 * with the class names beside their rows. */
export function classGrid(resultId, classNames, imageSize, rows) {
  const image = apiImage(`/analysis/${resultId}/grid.png`, "the most confident images of each class");
  const scale = Math.max(1, Math.round(CELL_PX / imageSize));
  image.classList.add("class-grid-image");
  image.addEventListener("load", () => {
    image.style.width = `${image.naturalWidth * scale}px`;
  });
  // Rows of the label column in the image's own proportions (padding, image, padding, ...), so the
  // labels stay beside their rows whatever width the image is shown at.
  const template = [`${GRID_PADDING}fr`, ...classNames.map(() => [`${imageSize}fr`, `${GRID_PADDING}fr`])].flat().join(" ");
  const labels = h(
    "div.class-grid-labels",
    { style: `grid-template-rows: ${template}` },
    classNames.map((name, c) => {
      const cells = rows?.[c] ?? [];
      const title = cells.length ? cells.map((cell) => `image ${cell.index}: ${percent(cell.confidence)}`).join("\n") : "no image predicted as this class";
      return h("span", { style: `grid-row: ${2 * c + 2}`, title }, name);
    }),
  );
  return h("div.class-grid", {}, labels, enlargeable(image, "the most confident images of each class"));
}

function verdict(row) {
  return row.measurably_different
    ? h("span.verdict.different", {}, "measurably different from the data set")
    : h("span.verdict.same", {}, "within sampling noise of the data set");
}

/** One analysis: what it is, the histogram beside the data set's, its numbers, per class, the grid. */
export function analysisFigure(record) {
  const classes = record.classes;
  const names = classes.map((c) => c.name);
  const entropy = record.entropy;
  const divergence = record.divergence;
  const accuracy = record.classifier_info?.accuracy;
  const facts = [
    ["Classes drawn", `${entropy.classes_present} of ${names.length}`],
    ["Entropy / log K", `${decimal(entropy.normalised)} (data set ${decimal(entropy.dataset_normalised)}; 1 = every class equally)`],
    [
      "Total variation from the data set",
      h("span", {}, `${decimal(divergence.total_variation)} (sampling noise alone at N=${record.n}: mean ${decimal(divergence.null_total_variation_mean)}, 95th percentile ${decimal(divergence.null_total_variation_p95)}) `, verdict(record)),
    ],
    ["Chi-square fit", `${decimal(divergence.chi_square, 1)} on ${divergence.dof} dof, p = ${pValue(divergence.p_value)}`],
    [`Confident share (≥ ${record.threshold})`, `${percent(record.confident_share)} (95% CI ${interval(record.confident_share_ci95)}); mean confidence ${decimal(record.mean_confidence)}`],
  ];
  if (record.kind === "real") facts.push(["Accuracy against the true labels", percent(record.label_accuracy)]);
  return h(
    "article.analysis",
    { dataset: { id: record.id, kind: record.kind } },
    h("h3", {}, describeSource(record)),
    h(
      "p.sub",
      {},
      `${describeSampling(record)} · classifier ${record.classifier}${accuracy === null || accuracy === undefined ? " (accuracy not measured)" : ` (held-out accuracy ${percent(accuracy)})`} · ${record.id}`,
    ),
    h("p.note.caveat", {}, CAVEAT),
    h(
      "div.analysis-top",
      {},
      shareChart(names, [
        { label: record.kind === "real" ? "held-out images" : "samples", className: "first", shares: classes.map((c) => c.share), intervals: classes.map((c) => c.share_ci95) },
        { label: "data set", className: "dataset", shares: classes.map((c) => c.dataset_share) },
      ]),
      h("dl.config.figures", {}, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    ),
    (record.warnings ?? []).map((warning) => h("p.message.info", {}, warning)),
    h("h4", {}, "Per class"),
    table(
      [
        { title: "Class", cell: (c) => c.name },
        { title: "Count", cell: (c) => String(c.count), className: "num" },
        { title: "Share (95% CI)", cell: (c) => `${percent(c.share)} (${interval(c.share_ci95)})`, className: "num" },
        { title: "Data set", cell: (c) => percent(c.dataset_share), className: "num" },
        { title: "Mean confidence", cell: (c) => decimal(c.mean_confidence), className: "num" },
        { title: `Confident (≥ ${record.threshold})`, cell: (c) => (c.count ? `${c.confident} of ${c.count} (${percent(c.confident_share)})` : "–"), className: "num" },
      ],
      classes,
    ),
    h("h4", {}, record.grid.per_class === 1 ? "The most confident image of each class" : `The ${record.grid.per_class} most confident images of each class`),
    classGrid(record.id, names, record.image_size, record.grid.rows),
  );
}

/** Two analyses side by side: their histograms with the data set's, how they differ, both grids. */
export function comparisonFigure(compared) {
  const { first, second, comparison, classes } = compared;
  const names = classes.map((c) => c.name);
  const difference = compared.different
    ? h("span.verdict.different", {}, `different (p < ${compared.significance})`)
    : h("span.verdict.same", {}, `not shown different (p ≥ ${compared.significance})`);
  const column = (title, row) => ({
    title,
    cell: (metric) => metric.cell(row),
    className: "num",
  });
  const metrics = [
    { name: "Source", cell: (row) => describeSource(row) },
    { name: "Sampling", cell: (row) => describeSampling(row) },
    { name: "Classes drawn", cell: (row) => `${row.classes_present} of ${row.classes}` },
    { name: "Entropy / log K", cell: (row) => decimal(row.entropy_normalised) },
    { name: "TV from the data set (noise p95)", cell: (row) => `${decimal(row.total_variation)} (${decimal(row.null_total_variation_p95)})` },
    { name: "Measurably different from the data set", cell: (row) => (row.measurably_different ? "yes" : "no") },
    { name: "Confident share", cell: (row) => percent(row.confident_share) },
  ];
  return h(
    "article.comparison",
    { dataset: { first: first.id, second: second.id } },
    h("h3", {}, "A: ", describeSource(first), h("br"), "B: ", describeSource(second)),
    h(
      "p.summary-line",
      {},
      `Between A and B: total variation ${decimal(comparison.total_variation)}; chi-square test of homogeneity ${decimal(comparison.chi_square, 1)} on ${comparison.dof} dof, p = ${pValue(comparison.p_value)}: `,
      difference,
    ),
    h("p.note.caveat", {}, CAVEAT),
    h(
      "div.analysis-top",
      {},
      shareChart(names, [
        { label: "A", className: "first", shares: classes.map((c) => c.first_share), intervals: classes.map((c) => c.first_share_ci95) },
        { label: "B", className: "second", shares: classes.map((c) => c.second_share), intervals: classes.map((c) => c.second_share_ci95) },
        { label: "data set", className: "dataset", shares: classes.map((c) => c.dataset_share) },
      ]),
      table([{ title: "", cell: (metric) => metric.name }, column("A", first), column("B", second)], metrics),
    ),
    h("h4", {}, "Per class"),
    table(
      [
        { title: "Class", cell: (c) => c.name },
        { title: "A share (95% CI)", cell: (c) => `${percent(c.first_share)} (${interval(c.first_share_ci95)})`, className: "num" },
        { title: "B share (95% CI)", cell: (c) => `${percent(c.second_share)} (${interval(c.second_share_ci95)})`, className: "num" },
        { title: "Data set", cell: (c) => percent(c.dataset_share), className: "num" },
        { title: "A confident", cell: (c) => percent(c.first_confident_share), className: "num" },
        { title: "B confident", cell: (c) => percent(c.second_confident_share), className: "num" },
      ],
      classes,
    ),
    h(
      "div.columns",
      {},
      [["A", first], ["B", second]].map(([label, row]) =>
        h("figure.grid-figure", {}, h("figcaption", {}, `${label}: the most confident images of each class`), classGrid(row.id, names, row.image_size)),
      ),
    ),
  );
}
