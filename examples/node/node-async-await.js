// The user document's §3.8 example (node-async-await.js), with the Authorization header on every
// request. Run against a gateway: GROK2API_BASE_URL=http://localhost:8000 node node-async-await.js
const baseUrl = process.env.GROK2API_BASE_URL || "http://localhost:8000";
const apiKey = process.env.GROK2API_API_KEY;

const payload = {
  model: "grok-imagine-1.0-video",
  messages: [{ role: "user", content: "生成一段海边日落视频" }],
  video_config: {
    aspect_ratio: "3:2",
    video_length: 6,
    resolution_name: "480p",
    preset: "normal"
  }
};

async function createTask() {
  const res = await fetch(`${baseUrl}/v1/video/generations/async`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${apiKey}`,
      "Content-Type": "application/json"
    },
    body: JSON.stringify(payload)
  });
  if (!res.ok) throw new Error(await res.text());
  const data = await res.json();
  return data.data.taskId;
}

async function getTask(taskId) {
  const res = await fetch(`${baseUrl}/v1/video/tasks/${taskId}`, {
    headers: { Authorization: `Bearer ${apiKey}` }
  });
  if (!res.ok) throw new Error(await res.text());
  return await res.json();
}

async function getTaskWithTimeout(taskId, ms = 8000) {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), ms);
  try {
    const res = await fetch(`${baseUrl}/v1/video/tasks/${taskId}`, {
      headers: { Authorization: `Bearer ${apiKey}` },
      signal: controller.signal
    });
    if (!res.ok) throw new Error(await res.text());
    return await res.json();
  } finally {
    clearTimeout(timeout);
  }
}

async function main() {
  try {
    const taskId = await createTask();
    const status = await getTask(taskId);
    console.log("success", JSON.stringify(status));
  } catch (err) {
    console.error("error", err);
  }

  try {
    const taskId = "not-exist";
    await getTask(taskId);
  } catch (err) {
    console.error("exception", err.message);
  }

  try {
    const taskId = await createTask();
    const status = await getTaskWithTimeout(taskId, 1);
    console.log("timeout case", JSON.stringify(status));
  } catch (err) {
    console.error("timeout", err.name);
  }
}

main();
