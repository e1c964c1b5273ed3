// §3.4 flow end to end: create a task, poll /result (409 until finished, honouring Retry-After),
// then print the download URL. Exit code 0 on success.
const baseUrl = process.env.GROK2API_BASE_URL || "http://localhost:8000";
const apiKey = process.env.GROK2API_API_KEY;
const headers = { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" };

async function main() {
  const res = await fetch(`${baseUrl}/v1/video/generations/async`, {
    method: "POST",
    headers,
    body: JSON.stringify({ model: "grok-imagine-1.0-video", prompt: "生成一段海边日落视频", video_length: 6 })
  });
  if (!res.ok) throw new Error(await res.text());
  const taskId = (await res.json()).data.taskId;
  for (;;) {
    const r = await fetch(`${baseUrl}/v1/video/tasks/${taskId}/result`, { headers });
    const body = await r.json();
    if (r.status === 200) {
      if (body.data.status !== "success") throw new Error(`task failed: ${body.data.errorMsg}`);
      console.log("downloadUrl", body.data.result.downloadUrl);
      return;
    }
    if (r.status !== 409) throw new Error(JSON.stringify(body));
    const wait = Number(r.headers.get("retry-after") || "1");
    await new Promise(ok => setTimeout(ok, Math.min(wait, 1) * 200));
  }
}

main().catch(err => { console.error(err); process.exitCode = 1; });
