// A small browser client for grok2api's async task API: create, poll, read the result, follow live
// events, create several at once. No dependencies; an ES module (serve it, file:// cannot load modules).
//
// The key travels only in the Authorization header. EventSource cannot send headers, so live events
// are read with fetch + ReadableStream, which can (and can send Last-Event-ID to resume); putting the
// key in a URL instead would leave it in access logs, proxies and the browser history.

export class GatewayError extends Error {
  constructor(status, body, retryAfter) {
    const detail = body && typeof body === "object" ? body.message || body.error?.message : body;
    super(`HTTP ${status}: ${detail || "no detail"}`);
    this.name = "GatewayError";
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

// Terminal statuses: the last event of a stream, the end of a poll.
const DONE = new Set(["success", "failed"]);

export function connect({ baseUrl, apiKey }) {
  const base = String(baseUrl).replace(/\/+$/, "");
  const auth = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};

  async function call(path, { method = "GET", body, signal, headers = {} } = {}) {
    const init = { method, signal, headers: { ...auth, ...headers } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(base + path, init);
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON: keep the text for the error
    }
    if (!res.ok) throw new GatewayError(res.status, json ?? text, res.headers.get("Retry-After"));
    return { json, headers: res.headers };
  }

  // kind: "video" or "images", as in the task URLs.
  async function createTask(kind, payload, { idempotencyKey, signal } = {}) {
    const path = kind === "video" ? "/v1/video/generations/async" : "/v1/images/generations/async";
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
    const { json } = await call(path, { method: "POST", body: payload, headers, signal });
    return json.data.taskId;
  }

  async function getTask(kind, taskId, { signal } = {}) {
    const { json } = await call(`/v1/${kind}/tasks/${encodeURIComponent(taskId)}`, { signal });
    return json.data;
  }

  // { ready: false, retryAfter, task } while the task runs (409), { ready: true, task } after.
  async function getResult(kind, taskId, { signal } = {}) {
    try {
      const { json } = await call(`/v1/${kind}/tasks/${encodeURIComponent(taskId)}/result`, { signal });
      return { ready: true, task: json.data };
    } catch (err) {
      if (err instanceof GatewayError && err.status === 409) {
        return { ready: false, retryAfter: Number(err.retryAfter) || 1, task: err.body?.data ?? null };
      }
      throw err;
    }
  }

  // Polls the status until the task ends; 429 and 5xx answers wait and try again.
  async function pollTask(kind, taskId, { intervalMs = 1000, onUpdate, signal } = {}) {
    for (let failures = 0; ; ) {
      try {
        const task = await getTask(kind, taskId, { signal });
        failures = 0;
        onUpdate?.(task);
        if (DONE.has(task.status)) return task;
      } catch (err) {
        const transient = err instanceof GatewayError && (err.status === 429 || err.status >= 500);
        if (!transient || ++failures > 5) throw err;
      }
      await sleep(intervalMs, signal);
    }
  }

  // One connection to the task's event stream. Resolves when the stream ends (after the terminal
  // event, or early if the server closes it) with the last event id seen and the terminal task, if
  // one came. Abort `signal` to hang up; that rejects with an AbortError.
  async function followEvents(kind, taskId, { lastEventId, onEvent, signal } = {}) {
    const headers = { Accept: "text/event-stream" };
    if (lastEventId != null) headers["Last-Event-ID"] = String(lastEventId);
    const res = await fetch(`${base}/v1/${kind}/tasks/${encodeURIComponent(taskId)}/events`, {
      headers: { ...auth, ...headers },
      signal,
      cache: "no-store",
    });
    if (!res.ok) {
      const text = await res.text();
      let body = text;
      try {
        body = JSON.parse(text);
      } catch {
        // keep the text
      }
      throw new GatewayError(res.status, body, res.headers.get("Retry-After"));
    }
    let last = lastEventId ?? null;
    let terminal = null;
    for await (const event of sseEvents(res.body)) {
      if (event.id != null) last = event.id;
      const task = JSON.parse(event.data);
      onEvent?.({ ...event, task });
      if (DONE.has(task.status)) terminal = task;
    }
    return { lastEventId: last, terminal };
  }

  // Follows the events to the end, reconnecting with Last-Event-ID when the connection drops (a
  // proxy timing out, a network change): the server then sends only what moved on since.
  async function watchTask(kind, taskId, { onEvent, onReconnect, signal, retryMs = 1000 } = {}) {
    let lastEventId = null;
    const seen = (event) => {
      if (event.id != null) lastEventId = event.id;
      onEvent?.(event);
    };
    for (let attempt = 0; ; attempt++) {
      try {
        const out = await followEvents(kind, taskId, { lastEventId, onEvent: seen, signal });
        if (out.terminal) return out.terminal;
        // Ended without a terminal event: the server closed early, or the task had finished before
        // we resumed (a resume past the end sends nothing). The status says which.
        const task = await getTask(kind, taskId, { signal });
        if (DONE.has(task.status)) return task;
      } catch (err) {
        // fetch rejects with a TypeError when the network fails; anything else is an answer.
        if (err.name === "AbortError" || !(err instanceof TypeError) || attempt >= 10) throw err;
      }
      onReconnect?.(lastEventId);
      await sleep(retryMs, signal);
    }
  }

  return { base, createTask, getTask, getResult, pollTask, followEvents, watchTask };
}

// Runs both of the document's combinators over the same requests: Promise.all (all or nothing: the
// first failure rejects it) and Promise.allSettled (every outcome, failures included).
export async function allAndSettled(promises) {
  const [all, settled] = await Promise.all([
    Promise.all(promises).then(
      (value) => ({ ok: true, value }),
      (error) => ({ ok: false, error }),
    ),
    Promise.allSettled(promises),
  ]);
  return { all, settled };
}

// Server-sent events from a byte stream: yields { event, id, data } per dispatched event
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
export async function* sseEvents(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { event: "message", id: null, data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // A chunk may end between the \r and \n of one line break: keep the \r for the next chunk.
      const cut = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
      const lines = buffer.slice(0, cut).split(/\r\n|\r|\n/);
      buffer = lines.pop() + buffer.slice(cut);
      for (const line of lines) {
        if (line === "") {
          if (event.data.length) yield { event: event.event, id: event.id, data: event.data.join("\n") };
          event = { event: "message", id: event.id, data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "event") event.event = val;
        else if (field === "data") event.data.push(val);
        else if (field === "id" && !val.includes("\0")) event.id = val;
      }
    }
  } finally {
    // Also reached when the caller stops early: hang up rather than leave the response running.
    await reader.cancel().catch(() => {});
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
