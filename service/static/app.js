// The page: tabs routed by the URL's hash (#view or #view/argument, so a run's page can be bookmarked),
// the API key field, and the service's readiness in the header.
import { analysisView } from "./analysis.js";
import { apiKey, send, setApiKey } from "./api.js";
import { compareView } from "./compare.js";
import { h, plural } from "./dom.js";
import { epochsView } from "./epochs.js";
import { fidView } from "./fid.js";
import { jobsView } from "./jobs.js";
import { runsView } from "./runs.js";
import { studiesView } from "./studies.js";
import { trainView } from "./train.js";

const views = [compareView(), epochsView(), jobsView(), runsView(), fidView(), studiesView(), analysisView(), trainView()];
const nav = document.getElementById("tabs");
const main = document.getElementById("views");
const sections = new Map();
let current = null;

for (const view of views) {
  nav.append(h("a", { href: `#${view.id}`, id: `tab-${view.id}` }, view.title));
  const section = h("section.view", { id: `view-${view.id}`, hidden: true }, h("h2.view-title", {}, view.title), view.element);
  sections.set(view.id, section);
  main.append(section);
}

function route() {
  const [name, ...rest] = decodeURIComponent(location.hash.slice(1)).split("/");
  const view = views.find((candidate) => candidate.id === name) ?? views[0];
  if (current && current !== view) current.hide?.();
  current = view;
  for (const [id, section] of sections) section.hidden = id !== view.id;
  for (const link of nav.children) link.toggleAttribute("aria-current", link.id === `tab-${view.id}`);
  view.show(rest.join("/") || undefined);
}

// The API key: kept in localStorage, sent by api.js with every request.
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");
const authBanner = document.getElementById("auth-banner");
keyInput.value = apiKey();
keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey(keyInput.value.trim());
  authBanner.hidden = true;
  route(); // reload what the key may have been refused
});
window.addEventListener("api:unauthorized", (event) => {
  authBanner.textContent = `The API refused the request (401): ${event.detail}. ${apiKey() ? "The key saved here is wrong" : "This server needs an API key"}: enter it above and press Save.`;
  authBanner.hidden = false;
  keyInput.setAttribute("aria-invalid", "true");
});
window.addEventListener("api:authorized", () => {
  authBanner.hidden = true;
  keyInput.removeAttribute("aria-invalid");
});

/** "worker: cpu", "2 workers: cpu, cuda:0": where jobs run, from /readyz (without the API key, when
 * the server has one, it says only "ok": then just "ready"). */
function workersLine(body) {
  if (!body.workers) return "ready";
  const devices = body.devices ?? [...new Set(body.workers.map((w) => w.device))];
  const count = body.workers.length;
  return `${count === 1 ? "worker" : plural(count, "worker")}: ${devices.join(", ")}`;
}

async function showReadiness() {
  const badge = document.getElementById("readiness");
  try {
    const response = await send("/readyz");
    const body = await response.json();
    badge.textContent = body.status === "ok" ? workersLine(body) : body.status.replaceAll("_", " ");
    badge.title = body.detail ?? (body.workers ?? []).map((w) => `${w.hostname}: ${w.device}${w.device_name ? ` (${w.device_name})` : ""}`).join("\n");
    badge.dataset.state = body.status === "ok" ? "ok" : "down";
  } catch (error) {
    badge.textContent = "API unreachable";
    badge.title = error.message;
    badge.dataset.state = "down";
  }
}

window.addEventListener("hashchange", route);
route();
showReadiness();
setInterval(showReadiness, 15000);
