// Small DOM helpers shared by the views: element building, formatting, the progress bar.

/** h("div.card", {title: "x"}, child, "text") -> an element; attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const element = document.createElement(name);
  if (classes.length) element.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key in element && typeof value !== "string") element[key] = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  element.append(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

export function clear(element, ...children) {
  element.replaceChildren(...children.flat(Infinity).filter(Boolean));
  return element;
}

/** "1 image", "2 images", "1,000 steps": the count and the noun agreeing; `many` for irregular plurals. */
export function plural(count, noun, many = `${noun}s`) {
  const shown = Number.isInteger(count) ? count.toLocaleString("en") : String(count);
  return `${shown} ${nounFor(count, noun, many)}`;
}

/** The noun alone, agreeing with `count` (for a count shown apart from it, e.g. in bold). */
export function nounFor(count, noun, many = `${noun}s`) {
  return count === 1 ? noun : many;
}

export function formatNumber(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? value.toLocaleString("en") : Number(value).toFixed(digits);
}

export function formatEpoch(epoch) {
  if (epoch === null || epoch === undefined) return "–";
  return Number.isInteger(epoch) ? String(epoch) : epoch.toFixed(2);
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** "2025-01-01T12:00:00.000Z" -> local "12:00:00" today, else the local date and time. */
export function formatTime(iso) {
  if (!iso) return "–";
  const time = new Date(iso);
  const today = new Date().toDateString() === time.toDateString();
  return today ? time.toLocaleTimeString() : time.toLocaleString();
}

/** A progress bar for a job record; update(job) redraws it. */
export function progressBar() {
  const fill = h("div.fill");
  const text = h("span.text");
  const element = h(
    "div.progress",
    { role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0" },
    fill,
    text,
  );
  function update(job) {
    const percent = Math.round((job.progress ?? 0) * 100);
    fill.style.width = `${percent}%`;
    element.setAttribute("aria-valuenow", String(percent));
    element.dataset.state = job.state;
    const parts = [`${percent}%`];
    if (job.step && job.total) parts.push(`step ${job.step}/${job.total}`);
    if (job.loss !== null && job.loss !== undefined) parts.push(`loss ${job.loss.toFixed(4)}`);
    if (job.state === "running" && job.images_per_s) parts.push(`${Math.round(job.images_per_s)} img/s`);
    if (job.state === "running" && job.eta_s) parts.push(`ETA ${formatDuration(job.eta_s)}`);
    if (job.state !== "running") parts.push(job.cancel_requested && job.state !== "cancelled" ? "cancelling" : job.state);
    // The text wraps (style.css) rather than being cut: a line breaks between parts, never inside one,
    // so "ETA 12 min" is read whole however narrow the bar.
    text.textContent = parts.map((part) => part.replaceAll(" ", "\u00a0")).join(" · ");
  }
  return { element, update };
}

/** A table from column specs [{title, cell: (row) => node|string}], scrolling sideways on narrow screens. */
export function table(columns, rows, { rowAttrs } = {}) {
  const head = h("tr", {}, columns.map((column) => h("th", { class: column.className }, column.title)));
  const body = rows.map((row) =>
    h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((column) => h("td", { class: column.className }, column.cell(row)))),
  );
  return scrollable(h("table", {}, h("thead", {}, head), h("tbody", {}, body)));
}

const SCROLL_HINTS = { right: "scroll →", left: "← scroll", both: "← scroll →" };

/**
 * A wide element (a table) in a box that scrolls sideways instead of cutting columns off, with a cue
 * while part of it is out of sight: data-overflow (none, right, left, both) shades the edge that hides
 * columns (style.css) and shows a "scroll →" hint. The box takes keyboard focus, so arrow keys scroll it.
 */
export function scrollable(content, label = "table") {
  const hint = h("span.scroll-hint", { "aria-hidden": "true" });
  const box = h("div.scroll-box", { tabindex: "0", role: "region", "aria-label": `${label}, scrolls sideways` }, content);
  const wrap = h("div.table-wrap", { dataset: { overflow: "none" } }, hint, h("div.scroll-frame", {}, box));
  function update() {
    const hidden = box.scrollWidth - box.clientWidth;
    const left = box.scrollLeft > 1;
    const right = box.scrollLeft < hidden - 1;
    const overflow = hidden <= 1 ? "none" : left && right ? "both" : left ? "left" : "right";
    if (wrap.dataset.overflow === overflow) return;
    wrap.dataset.overflow = overflow;
    hint.textContent = SCROLL_HINTS[overflow] ?? "";
    box.tabIndex = overflow === "none" ? -1 : 0; // nothing to scroll: not a stop for the Tab key
  }
  box.addEventListener("scroll", update, { passive: true });
  // The box resizes with the window; the content as its rows change (the jobs' progress, new rows).
  const observer = new ResizeObserver(update);
  observer.observe(box);
  observer.observe(content);
  return wrap;
}

export function message(kind, text) {
  return h(`p.message.${kind}`, { role: kind === "error" ? "alert" : "status" }, text);
}
