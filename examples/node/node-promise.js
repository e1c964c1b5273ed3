// The user document's §3.8 example (node-promise.js), with the Authorization header on every request.
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

fetch(`${baseUrl}/v1/video/generations/async`, {
  method: "POST",
  headers: {
    Authorization: `Bearer ${apiKey}`,
    "Content-Type": "application/json"
  },
  body: JSON.stringify(payload)
})
  .then(res => res.ok ? res.json() : res.text().then(t => { throw new Error(t); }))
  .then(data => {
    const taskId = data.data.taskId;
    return fetch(`${baseUrl}/v1/video/tasks/${taskId}`, { headers: { Authorization: `Bearer ${apiKey}` } });
  })
  .then(res => res.ok ? res.json() : res.text().then(t => { throw new Error(t); }))
  .then(status => {
    console.log("status", JSON.stringify(status));
  })
  .catch(err => {
    console.error("promise error", err);
    process.exitCode = 1;
  });
