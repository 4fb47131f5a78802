// Follows jobs for every view that shows one (job list, sample grids, the training form).
// A browser opens about six connections per host over HTTP/1.1 and an event stream holds one for as
// long as its job runs, so at most MAX_STREAMS jobs are streamed at once; the others are polled until
// a stream is free. Views watching the same job share its stream.
import { ApiError, json } from "./api.js";
import { streamEvents } from "./events.js";

const MAX_STREAMS = 3;
const POLL_MS = 2000;
const RETRY_MS = 3000; // after a network error
export const TERMINAL = ["succeeded", "failed", "cancelled"];

const watches = new Map(); // job id -> {listeners, job, controller, timer}
let streams = 0;

/**
 * listener(job, problem) is called with each new record of the job (at once with the last one known),
 * or with a problem (an ApiError) when the job can no longer be followed. Returns an unwatch function.
 */
export function watchJob(id, listener) {
  let watch = watches.get(id);
  if (!watch) {
    watch = { id, listeners: new Set(), job: null, controller: null, timer: null, ended: false };
    watches.set(id, watch);
    follow(watch);
  } else if (watch.job) {
    listener(watch.job);
  }
  watch.listeners.add(listener);
  return () => {
    watch.listeners.delete(listener);
    if (!watch.listeners.size) stop(watch);
  };
}

function follow(watch) {
  if (streams < MAX_STREAMS) stream(watch);
  else poll(watch);
}

function stream(watch) {
  streams += 1;
  watch.controller = new AbortController();
  const onEvent = (name, data) => {
    if (name === "done") watch.ended = true; // the server closes the stream itself
    if (name === "error") publish(watch, null, new ApiError(410, data.detail));
    else publish(watch, data);
  };
  streamEvents(`/jobs/${watch.id}/events`, onEvent, watch.controller.signal)
    .catch((error) => {
      if (error.name !== "AbortError") handleError(watch, error);
    })
    .finally(() => {
      streams -= 1;
      watch.controller = null;
      // The stream ended without a final record (a proxy or server restart): keep following it.
      if (watches.get(watch.id) === watch && !watch.timer) watch.timer = setTimeout(() => poll(watch), POLL_MS);
      promoteOne();
    });
}

async function poll(watch) {
  watch.timer = null;
  if (watches.get(watch.id) !== watch) return;
  try {
    publish(watch, await json(`/jobs/${watch.id}`));
  } catch (error) {
    handleError(watch, error);
    return;
  }
  if (watches.get(watch.id) !== watch) return;
  if (streams < MAX_STREAMS) stream(watch);
  else watch.timer = setTimeout(() => poll(watch), POLL_MS);
}

/** A polled job takes a stream that has just been freed. */
function promoteOne() {
  for (const watch of watches.values()) {
    if (streams >= MAX_STREAMS) return;
    if (!watch.controller && watch.timer) {
      clearTimeout(watch.timer);
      watch.timer = null;
      stream(watch);
    }
  }
}

function handleError(watch, error) {
  if (error.status === 0) {
    // The API is unreachable for now: say so, and try again shortly.
    publish(watch, null, error);
    if (watches.get(watch.id) === watch && !watch.timer) watch.timer = setTimeout(() => poll(watch), RETRY_MS);
    return;
  }
  publish(watch, null, error);
  stop(watch); // 401, 404 (expired), ...: retrying would not help
}

function publish(watch, job, problem) {
  if (job) watch.job = job;
  for (const listener of [...watch.listeners]) listener(job ?? watch.job, problem);
  if (job && TERMINAL.includes(job.state)) stop(watch);
}

function stop(watch) {
  if (watches.get(watch.id) === watch) watches.delete(watch.id);
  clearTimeout(watch.timer);
  watch.timer = null;
  if (!watch.ended) watch.controller?.abort();
}
