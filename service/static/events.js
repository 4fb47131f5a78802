// Server-sent events read from a fetch() stream rather than an EventSource, because EventSource
// cannot send the X-API-Key header that GET /jobs/{id}/events needs when the server has a key.
import { errorOf, send } from "./api.js";

/**
 * Calls onEvent(name, data) for each event of the stream at `path` until the server ends it (resolves)
 * or `signal` aborts it. Rejects with an ApiError when the stream cannot be opened.
 */
export async function streamEvents(path, onEvent, signal) {
  const response = await send(path, { signal, accept: "text/event-stream" });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, end), onEvent);
      buffer = buffer.slice(end + 2);
    }
  }
}

/** One event block: `event:` names it, `data:` lines carry JSON, `:` lines are keep-alive comments. */
function dispatch(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (data.length) onEvent(name, JSON.parse(data.join("\n")));
}
