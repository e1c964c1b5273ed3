// The load client of scripts/report.sh, one ES module for Node (node.js) and the browser page
// (page.html): the user document's §3.8 createTask / getTask, as written there, run by `concurrency`
// loops for `seconds`. Every call is timed; a call the document's code throws from (non-2xx, network
// error) is an error.

// The document's payload. A create run appends a simulator token to the prompt (see report.sh).
export const documentPayload = {
  model: "grok-imagine-1.0-video",
  messages: [{ role: "user", content: "生成一段海边日落视频" }],
  video_config: {
    aspect_ratio: "3:2",
    video_length: 6,
    resolution_name: "480p",
    preset: "normal"
  }
};

// §3.8 node-async-await.js, verbatim but for baseUrl, apiKey and payload coming in as arguments.
// getTask sends no key, as in the document: the gateway runs with auth.public_task_reads.
export function documentClient(baseUrl, apiKey, payload) {
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
    const res = await fetch(`${baseUrl}/v1/video/tasks/${taskId}`);
    if (!res.ok) throw new Error(await res.text());
    return await res.json();
  }

  return { createTask, getTask };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

// mode "poll": each loop first creates one task with the document's payload (a real simulated video)
// and then reads that task's status over and over, as a front end's queue polls its tasks.
// mode "create": each loop creates tasks back to back.
export async function run({ baseUrl, apiKey, mode, seconds, concurrency, prompt }) {
  const payload = structuredClone(documentPayload);
  if (prompt) payload.messages[0].content = prompt;
  const { createTask, getTask } = documentClient(baseUrl, apiKey, payload);
  const tasks = mode === "poll" ? await Promise.all(Array.from({ length: concurrency }, () => createTask())) : [];

  const latencies = [];
  const statuses = {};
  const errorSamples = [];
  let errors = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  async function loop(i) {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        if (mode === "poll") {
          const body = await getTask(tasks[i]);
          statuses[body.data.status] = (statuses[body.data.status] || 0) + 1;
        } else {
          await createTask();
        }
      } catch (err) {
        errors++;
        if (errorSamples.length < 5) errorSamples.push(String(err && err.message ? err.message : err).slice(0, 300));
      }
      latencies.push(performance.now() - t0);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(i)));
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    mode,
    concurrency,
    seconds: elapsed,
    requests: latencies.length,
    errors,
    qps: latencies.length / elapsed,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    max_ms: latencies.length ? latencies[latencies.length - 1] : null,
    error_rate: latencies.length ? errors / latencies.length : null,
    statuses,
    error_samples: errorSamples
  };
}
