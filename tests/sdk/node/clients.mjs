// The official OpenAI Node SDK on the places where stock clients broke (issue 21): image edit streams
// (the SDK types their events as image_edit.*), size "auto", and a multipart input_reference[file_id]
// on videos. Run by tests/clients.rs. Env: GROK2API_BASE_URL (http://host:port), GROK2API_API_KEY.
import assert from "node:assert/strict";
import OpenAI, { BadRequestError, toFile } from "openai";

const client = new OpenAI({
  baseURL: `${process.env.GROK2API_BASE_URL}/v1`,
  apiKey: process.env.GROK2API_API_KEY,
  maxRetries: 0,
});

const auto = await client.images.generate({ model: "grok-imagine-1.0", prompt: "a lighthouse", size: "auto" });
const png = Buffer.from(auto.data[0].b64_json, "base64");
assert.equal(png.subarray(1, 4).toString(), "PNG");
assert.equal(auto.size, `${png.readUInt32BE(16)}x${png.readUInt32BE(20)}`);
assert.equal(auto.output_format, "png");

const stream = await client.images.edit({
  model: "grok-imagine-1.0-edit",
  image: await toFile(png, "in.png", { type: "image/png" }),
  prompt: "make it snow",
  stream: true,
});
const kinds = [];
let completed;
for await (const event of stream) {
  kinds.push(event.type);
  if (event.type === "image_edit.completed") completed = event;
}
assert.ok(kinds.every((k) => k.startsWith("image_edit.")), kinds.join());
assert.ok(completed && Buffer.from(completed.b64_json, "base64").subarray(1, 4).toString() === "PNG", kinds.join());

// The SDK sends videos.create as multipart, an object as bracketed fields: input_reference[file_id].
await assert.rejects(
  client.videos.create({ model: "grok-imagine-1.0-video", prompt: "x", input_reference: { file_id: "file-abc" } }),
  (e) => e instanceof BadRequestError && /file store/.test(e.message),
);

console.log("node SDK clients: OK");
