// The page's wiring: reads the settings, runs the flows of grok2api.js and shows what happens.
import { GatewayError, allAndSettled, connect, sseEvents } from "./grok2api.js";

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;

// ---------- settings: the base URL and, only if asked, the key stay for this tab ----------

$("base-url").value = store.getItem("grok2api.baseUrl") || $("base-url").value;
const savedKey = store.getItem("grok2api.apiKey");
if (savedKey) {
  $("api-key").value = savedKey;
  $("remember-key").checked = true;
}
$("base-url").addEventListener("change", () => store.setItem("grok2api.baseUrl", $("base-url").value.trim()));
function rememberKey() {
  if ($("remember-key").checked) store.setItem("grok2api.apiKey", $("api-key").value);
  else store.removeItem("grok2api.apiKey");
}
$("remember-key").addEventListener("change", rememberKey);
$("api-key").addEventListener("change", rememberKey);

function client() {
  return connect({ baseUrl: $("base-url").value.trim(), apiKey: $("api-key").value.trim() });
}

// ---------- output ----------

function log(text, isError = false) {
  const line = document.createElement("div");
  line.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  if (isError) line.className = "error";
  $("log").append(line);
  $("log").scrollTop = $("log").scrollHeight;
}

function explain(err) {
  if (err instanceof GatewayError) return err.message;
  if (err instanceof TypeError) {
    // The browser hides why on purpose (a CORS refusal looks like a network failure).
    return `${err.message}: gateway unreachable, or it refused this origin (configure an API key, or start it with --cors-allowed-origin ${location.origin})`;
  }
  return String(err);
}

function videoPayload(prompt) {
  return {
    model: "grok-imagine-1.0-video",
    messages: [{ role: "user", content: prompt }],
    video_config: {
      aspect_ratio: $("video-ratio").value,
      video_length: Number($("video-length").value),
      resolution_name: "480p",
      preset: "normal",
    },
  };
}

function showTask(task) {
  $("task-status").textContent = task.status;
  $("task-status").dataset.status = task.status;
  $("task-progress").value = task.progress ?? 0;
}

function addEvent(list, event) {
  const li = document.createElement("li");
  li.dataset.eventId = event.id ?? "";
  li.dataset.event = event.event;
  li.textContent = `id ${event.id}  ${event.event}  ${event.task.progress ?? ""}%`;
  list.append(li);
}

// ---------- one video task ----------

async function runVideo() {
  const c = client();
  $("create-video").disabled = true;
  $("events").replaceChildren();
  $("task-result").textContent = "–";
  $("task-result").classList.remove("error");
  $("result-video").hidden = true;
  $("result-video").removeAttribute("src");
  $("task-status").textContent = "creating…";
  delete $("task-status").dataset.status;
  try {
    const taskId = await c.createTask("video", videoPayload($("video-prompt").value));
    $("task-id").textContent = taskId;
    log(`created video task ${taskId}`);
    let task;
    if ($("follow-mode").value === "events") {
      task = await c.watchTask("video", taskId, {
        onEvent: (e) => {
          addEvent($("events"), e);
          showTask(e.task);
        },
        onReconnect: (last) => log(`event stream dropped; resuming after id ${last}`),
      });
    } else {
      let polls = 0;
      task = await c.pollTask("video", taskId, {
        intervalMs: 1000,
        onUpdate: (t) => {
          $("task-status").dataset.polls = String(++polls);
          showTask(t);
        },
      });
    }
    // The result endpoint answers 200 now (409 with Retry-After while the task ran).
    const result = await c.getResult("video", taskId);
    task = result.task ?? task;
    showTask(task);
    if (task.status !== "success") throw new Error(`task failed: ${task.errorCode} ${task.errorMsg}`);
    $("task-result").textContent = task.result.downloadUrl;
    const video = $("result-video");
    if (task.result.thumbnailUrl) video.poster = task.result.thumbnailUrl;
    video.src = task.result.downloadUrl;
    video.hidden = false;
    log(`video ready: ${task.result.downloadUrl}`);
  } catch (err) {
    $("task-result").textContent = explain(err);
    $("task-result").classList.add("error");
    log(explain(err), true);
  } finally {
    $("create-video").disabled = false;
  }
}

// ---------- one image task ----------

async function runImage() {
  const c = client();
  $("create-image").disabled = true;
  $("result-image").hidden = true;
  $("image-status").textContent = "creating…";
  delete $("image-status").dataset.status;
  try {
    const taskId = await c.createTask("images", {
      model: "grok-imagine-1.0",
      prompt: $("image-prompt").value,
      n: 1,
      size: $("image-size").value,
    });
    $("image-task-id").textContent = taskId;
    log(`created image task ${taskId}`);
    const task = await c.watchTask("images", taskId, {
      onEvent: (e) => ($("image-status").textContent = `${e.task.status} ${e.task.progress ?? 0}%`),
    });
    $("image-status").textContent = task.status;
    $("image-status").dataset.status = task.status;
    if (task.status !== "success") throw new Error(`task failed: ${task.errorCode} ${task.errorMsg}`);
    $("result-image").src = task.result.images[0];
    $("result-image").hidden = false;
    log(`image ready: ${task.result.images[0]}`);
  } catch (err) {
    $("image-status").textContent = explain(err);
    $("image-status").dataset.status = "error";
    log(explain(err), true);
  } finally {
    $("create-image").disabled = false;
  }
}

// ---------- five at once ----------

async function runFive() {
  const c = client();
  $("create-five").disabled = true;
  $("five-body").replaceChildren();
  $("five-all").textContent = "…";
  delete $("five-all").dataset.outcome;
  try {
    const prompt = $("video-prompt").value;
    const payloads = [1, 2, 3, 4, 5].map((i) => videoPayload(`${prompt} (${i}/5)`));
    if ($("five-one-invalid").checked) payloads[2].model = "no-such-model";
    const creates = payloads.map((p) => c.createTask("video", p));
    const { all, settled } = await allAndSettled(creates);
    $("five-all").dataset.outcome = all.ok ? "fulfilled" : "rejected";
    $("five-all").textContent = all.ok
      ? `fulfilled: ${all.value.length} tasks accepted`
      : `rejected: ${explain(all.error)}`;
    const follows = settled.map((s, i) => {
      const tr = document.createElement("tr");
      tr.dataset.outcome = s.status;
      const cells = [String(i + 1), s.status, s.status === "fulfilled" ? s.value : explain(s.reason), ""];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      const final = tr.lastChild;
      final.dataset.col = "final";
      $("five-body").append(tr);
      if (s.status !== "fulfilled") return null;
      tr.dataset.taskId = s.value;
      return c.watchTask("video", s.value, {
        onEvent: (e) => (final.textContent = `${e.task.status} ${e.task.progress ?? 0}%`),
      }).then(
        (task) => {
          final.textContent = task.status;
          final.dataset.status = task.status;
        },
        (err) => {
          final.textContent = explain(err);
          final.dataset.status = "error";
        },
      );
    });
    await Promise.all(follows);
    log(`five creates: ${settled.filter((s) => s.status === "fulfilled").length} accepted`);
  } catch (err) {
    log(explain(err), true);
  } finally {
    $("create-five").disabled = false;
  }
}

$("create-video").addEventListener("click", runVideo);
$("create-image").addEventListener("click", runImage);
$("create-five").addEventListener("click", runFive);

// For the devtools console (and the suite's browser test): grok2api.client().getTask("video", id) …
window.grok2api = { client, connect, allAndSettled, sseEvents, GatewayError };
document.documentElement.dataset.ready = "true";
