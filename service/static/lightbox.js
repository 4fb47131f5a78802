// A grid at full size: click (or Enter on) a grid and it opens in a modal dialog, drawn at a whole
// multiple of its pixels with `image-rendering: pixelated`, so a 16x16 or 32x32 sample is seen as
// sharp squares rather than a blur. Escape, a click anywhere or the Close button end it, and the focus
// goes back to the grid it came from.
import { h } from "./dom.js";

const MARGIN_PX = 48; // room around the image for the dialog's padding and caption

let dialog = null;
let opener = null;

function lightbox() {
  if (dialog) return dialog;
  dialog = h("dialog.lightbox", { id: "lightbox", "aria-label": "grid at full size" });
  dialog.addEventListener("click", () => dialog.close()); // the image, the caption or the backdrop
  dialog.addEventListener("close", () => {
    opener?.focus();
    opener = null;
  });
  document.body.append(dialog);
  return dialog;
}

/** The largest whole scale at which a width x height image fits the window (1 when it does not). */
export function fittingScale(width, height) {
  const across = (window.innerWidth - MARGIN_PX) / width;
  const down = (window.innerHeight - 2 * MARGIN_PX) / height;
  return Math.max(1, Math.floor(Math.min(across, down)));
}

/** Opens `img` (loaded) at full size; `label` names it for the caption and screen readers. */
export function openFullSize(img, label) {
  if (!img.complete || !img.naturalWidth) return;
  const { naturalWidth: width, naturalHeight: height } = img;
  const scale = fittingScale(width, height);
  // A canvas copy: the <img>'s blob: URL may already be revoked, its decoded pixels are not.
  const canvas = h("canvas", { width, height, role: "img", "aria-label": label });
  canvas.getContext("2d").drawImage(img, 0, 0);
  canvas.style.width = `${width * scale}px`;
  canvas.style.height = `${height * scale}px`;
  const close = h("button.small", { type: "button", autofocus: true }, "Close");
  const box = lightbox();
  box.replaceChildren(
    h("div.lightbox-bar", {}, h("span", {}, `${label} · ${width}×${height} px, shown ×${scale}`), close),
    canvas,
  );
  opener = document.activeElement;
  box.showModal();
  close.focus();
}

/** `img` inside a button that opens it at full size (a button: Tab reaches it, Enter and Space open it). */
export function enlargeable(img, label) {
  return h(
    "button.enlarge",
    { type: "button", title: "open at full size", "aria-label": `${label}: open at full size`, onclick: () => openFullSize(img, label) },
    img,
  );
}
