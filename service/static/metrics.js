// The service at a glance, from GET /metrics (Prometheus' text format): queue depth, live workers,
// jobs by state and current throughput.
import { send } from "./api.js";
import { clear, formatNumber, h, nounFor } from "./dom.js";

/** [{name, labels, value}] from Prometheus text: `name{a="x",b="y"} 1.5` lines; # lines are comments. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const match = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function sum(samples, name, where = () => true) {
  return samples.filter((s) => s.name === name && where(s.labels)).reduce((total, s) => total + s.value, 0);
}

/** A line of figures, redrawn by refresh(). */
export function serviceSummary() {
  const element = h("p.summary", { id: "service-summary" });

  async function refresh() {
    try {
      const response = await send("/metrics");
      if (!response.ok) return; // the job list beside it reports what is wrong with the API
      const samples = parseMetrics(await response.text());
      const jobs = (state) => sum(samples, "ddpm_jobs", (labels) => labels.state === state);
      const figures = [
        ["waiting in the queue", sum(samples, "ddpm_queue_messages")],
        [(n) => nounFor(n, "worker"), sum(samples, "ddpm_workers")],
        ["running", jobs("running")],
        ["queued", jobs("queued")],
        ["failed", jobs("failed")],
        ["training images/s", sum(samples, "ddpm_training_images_per_second")],
        ["sampled images/s", sum(samples, "ddpm_sampling_images_per_second")],
      ];
      clear(
        element,
        figures.map(([label, value]) => {
          const shown = Math.round(value * 10) / 10;
          return h("span.figure", {}, h("strong", {}, formatNumber(shown, 1)), ` ${typeof label === "function" ? label(shown) : label}`);
        }),
      );
    } catch {
      // unreachable API: the job list says so
    }
  }

  return { element, refresh };
}
