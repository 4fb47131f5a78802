// The option lists the forms share, from the API: the variants (GET /archs) and the data sets
// (GET /datasets: cifar10, digits, the folders on the volume), so nobody types a name into a blank box.
import { h, plural } from "./dom.js";

/** One <option> per variant: its registry name, labelled with the report's name and its size. */
export function variantOptions(archs) {
  return archs.map((arch) => h("option", { value: arch.name, title: arch.description }, `${arch.name} · ${arch.report_name} · ${(arch.params / 1e6).toFixed(1)}M params`));
}

function datasetLabel(dataset) {
  if (dataset.name === "cifar10") return dataset.available ? "cifar10 · on the volume" : "cifar10 · not downloaded: fetched at the first run";
  if (dataset.name === "digits") return `digits · ${plural(dataset.images, "grey 8x8 digit")}`;
  return dataset.available ? `${dataset.name} · ${plural(dataset.images, "image")}` : `${dataset.name} · no images`;
}

/** One <option> per data set; a folder without images is shown but cannot be picked. */
export function datasetOptions(datasets) {
  return datasets.map((dataset) =>
    h("option", { value: dataset.name, title: dataset.note, disabled: dataset.kind === "folder" && !dataset.available }, datasetLabel(dataset)),
  );
}

/** Sets a select to `value`, adding it as an option when it is not offered (a preset's folder that is
 * not on this volume): the form shows what will be sent, and the API says whether it can run. */
export function selectValue(select, value) {
  if (value && ![...select.options].some((option) => option.value === value)) {
    select.append(h("option", { value }, `${value} · not on this volume`));
  }
  select.value = value;
}
