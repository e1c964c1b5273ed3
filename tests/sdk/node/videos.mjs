// The official OpenAI Node SDK against a running grok2api (started by tests/binary.rs):
// videos.create, polling with videos.retrieve, videos.downloadContent, list and delete.
// Env: GROK2API_BASE_URL (http://host:port), GROK2API_API_KEY.
import assert from "node:assert/strict";
import OpenAI, { NotFoundError, BadRequestError } from "openai";

const client = new OpenAI({
  baseURL: `${process.env.GROK2API_BASE_URL}/v1`,
  apiKey: process.env.GROK2API_API_KEY,
  maxRetries: 0,
});

async function waitFor(id) {
  for (let i = 0; i < 300; i++) {
    const video = await client.videos.retrieve(id);
    if (video.status === "completed" || video.status === "failed") return video;
    assert.ok(["queued", "in_progress"].includes(video.status), video.status);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`video ${id} never finished`);
}

const created = await client.videos.create({ model: "grok-imagine-video", prompt: "a paper boat on a river", seconds: "4", size: "720x1280" });
assert.match(created.id, /^video_/);
assert.equal(created.object, "video");
const video = await waitFor(created.id);
assert.equal(video.status, "completed", JSON.stringify(video));
assert.equal(video.progress, 100);

const content = await client.videos.downloadContent(video.id);
assert.equal(content.headers.get("content-type"), "video/mp4");
const bytes = Buffer.from(await content.arrayBuffer());
assert.equal(bytes.subarray(4, 8).toString("latin1"), "ftyp");

const ids = [];
for await (const v of client.videos.list({ limit: 10 })) ids.push(v.id);
assert.ok(ids.includes(video.id), ids);

await assert.rejects(client.videos.create({ model: "sora-2", prompt: "x" }), BadRequestError);
const deleted = await client.videos.delete(video.id);
assert.equal(deleted.deleted, true);
await assert.rejects(client.videos.retrieve(video.id), NotFoundError);
console.log("node SDK videos: OK");
