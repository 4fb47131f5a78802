// Every request of the page goes through here, so the API key (when the server sets API_KEY) rides on
// all of them: JSON calls, event streams and images alike (an <img src> or an EventSource cannot send
// headers, so images are fetched and shown from blob URLs, and events are read from a fetch stream).

const KEY_STORAGE = "ddpm.apiKey";

export class ApiError extends Error {
  constructor(status, detail) {
    super(describe(status, detail));
    this.status = status;
    this.detail = detail;
  }
}

function describe(status, detail) {
  if (status === 0) return String(detail);
  if (typeof detail === "string") return `${status}: ${detail}`;
  if (Array.isArray(detail)) return `${status}: ${detail.map((item) => item.msg ?? JSON.stringify(item)).join("; ")}`;
  return `${status}: ${JSON.stringify(detail)}`;
}

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) ?? "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** fetch() with the API key; a 401 is announced to the page (app.js shows it by the key field). */
export async function send(path, { method = "GET", body, signal, accept } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (accept) headers.Accept = accept;
  let response;
  try {
    response = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "the API did not answer: is the service running?");
  }
  if (response.status === 401) {
    const detail = (await readJson(response.clone()))?.detail;
    window.dispatchEvent(new CustomEvent("api:unauthorized", { detail: detail ?? "missing or wrong API key" }));
  } else if (response.ok) {
    window.dispatchEvent(new CustomEvent("api:authorized"));
  }
  return response;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** The JSON body of a 2xx answer; otherwise an ApiError carrying the API's detail. */
export async function json(path, options) {
  const response = await send(path, options);
  const data = await readJson(response);
  if (!response.ok) throw new ApiError(response.status, data?.detail ?? response.statusText);
  return data;
}

/** An error's answer as an ApiError (for callers that looked at the status themselves). */
export async function errorOf(response) {
  const data = await readJson(response);
  return new ApiError(response.status, data?.detail ?? response.statusText);
}

/** A blob: URL for an image the API serves (the key cannot ride on <img src>). */
export async function imageUrl(path, signal) {
  const response = await send(path, { signal, accept: "image/png" });
  if (!response.ok) throw await errorOf(response);
  return URL.createObjectURL(await response.blob());
}

/** An <img> for an API image, with a message in its place when it cannot be loaded. */
export function apiImage(path, alt) {
  const img = document.createElement("img");
  img.alt = alt;
  img.className = "api-image";
  img.dataset.state = "loading";
  imageUrl(path)
    .then((url) => {
      img.addEventListener(
        "load",
        () => {
          URL.revokeObjectURL(url);
          img.dataset.state = "ready";
        },
        { once: true },
      );
      img.src = url;
    })
    .catch((error) => {
      const note = document.createElement("p");
      note.className = "message error";
      note.dataset.state = "error";
      note.textContent = `${alt}: ${error.message}`;
      img.replaceWith(note);
    });
  return img;
}

/** ?a=1&b=2 from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  return search.toString();
}
