// The Vercel AI SDK (`ai` with @ai-sdk/openai, @ai-sdk/xai and @ai-sdk/openai-compatible), called the
// way its documentation shows, against a running grok2api. Run by tests/clients.rs.
// Env: GROK2API_BASE_URL (http://host:port), GROK2API_API_KEY.
import assert from "node:assert/strict";
import { APICallError, generateImage, generateText, streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createXai } from "@ai-sdk/xai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";

const base = `${process.env.GROK2API_BASE_URL}/v1`;
const apiKey = process.env.GROK2API_API_KEY;
const openai = createOpenAI({ baseURL: base, apiKey });
const xai = createXai({ baseURL: base, apiKey });
const compatible = createOpenAICompatible({ name: "grok2api", baseURL: base, apiKey });

const PNG = [0x89, 0x50, 0x4e, 0x47];
const JPEG = [0xff, 0xd8, 0xff];
const RIFF = [0x52, 0x49, 0x46, 0x46];

function isImage(bytes) {
  return [PNG, JPEG, RIFF].some((magic) => magic.every((b, i) => bytes[i] === b));
}

// Width and height from a PNG's IHDR (the simulator makes PNGs).
function pngSize(bytes) {
  assert.deepEqual([...bytes.slice(0, 4)], PNG, "a PNG");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return [view.getUint32(16), view.getUint32(20)];
}

const steps = [];
async function step(name, body) {
  await body();
  steps.push(name);
  console.log(`ok ${name}`);
}

const videoLink = /\/v1\/files\/video\/[0-9a-f]+\.mp4/;
const imageLink = /\/v1\/files\/image\/[0-9a-f]+\.(png|jpg|jpeg|webp)/;

let source;
await step("openai.image generates (b64_json asked for)", async () => {
  const { images } = await generateImage({ model: openai.image("grok-imagine-1.0"), prompt: "a red fox", n: 2, size: "1024x1024" });
  assert.equal(images.length, 2);
  for (const image of images) assert.ok(isImage(image.uint8Array));
  source = images[0].uint8Array;
});

// Its edits never ask for b64_json and read nothing else: the gateway answers this provider inline.
await step("openai.image edits (multipart, no response_format)", async () => {
  const { images } = await generateImage({
    model: openai.image("grok-imagine-1.0-edit"),
    prompt: { text: "make it snow", images: [source] },
  });
  assert.equal(images.length, 1);
  assert.ok(isImage(images[0].uint8Array));
});

await step("xai.image honours aspectRatio 16:9", async () => {
  const { images } = await generateImage({ model: xai.image("grok-imagine-image"), prompt: "a wide valley", aspectRatio: "16:9" });
  const [w, h] = pngSize(images[0].uint8Array);
  assert.ok(w > h && Math.abs(w / h - 16 / 9) < 0.02, `16:9, got ${w}x${h}`);
});

await step("xai.image refuses a ratio it cannot make", async () => {
  await assert.rejects(
    generateImage({ model: xai.image("grok-imagine-image"), prompt: "x", aspectRatio: "4:3" }),
    (e) => APICallError.isInstance(e) && e.statusCode === 400 && /aspect_ratio/.test(e.responseBody),
  );
});

await step("xai.image edits (JSON, data URL)", async () => {
  const { images } = await generateImage({ model: xai.image("grok-imagine-image"), prompt: { text: "add a hat", images: [source] } });
  assert.equal(images.length, 1);
  assert.ok(isImage(images[0].uint8Array));
});

await step("openai(model) is the Responses API: generateText on the video model", async () => {
  const { text } = await generateText({ model: openai("grok-imagine-1.0-video"), prompt: "a sunset over the sea" });
  assert.match(text, videoLink);
});

await step("openai(model): streamText on the image model", async () => {
  const result = streamText({ model: openai("grok-imagine-1.0"), prompt: "a lighthouse" });
  let text = "";
  for await (const delta of result.textStream) text += delta;
  assert.match(text, imageLink);
  assert.equal((await result.finishReason), "stop");
});

await step("openai(model) on a text model: a 400 that names what is served", async () => {
  await assert.rejects(
    generateText({ model: openai("gpt-4o"), prompt: "hi" }),
    (e) => APICallError.isInstance(e) && e.statusCode === 400 && /\/v1\/responses serves/.test(e.responseBody),
  );
});

await step("openai.chat streams with usage (stream_options.include_usage)", async () => {
  const result = streamText({ model: openai.chat("grok-imagine-1.0-video"), prompt: "rain on a window" });
  let text = "";
  for await (const delta of result.textStream) text += delta;
  assert.match(text, videoLink);
  const usage = await result.usage;
  assert.equal(usage.totalTokens, 0, JSON.stringify(usage));
});

await step("openai-compatible: image and chat models", async () => {
  const { images } = await generateImage({ model: compatible.imageModel("grok-imagine-1.0"), prompt: "a blue bird" });
  assert.ok(isImage(images[0].uint8Array));
  const { text } = await generateText({ model: compatible.chatModel("grok-imagine-1.0-video"), prompt: "waves" });
  assert.match(text, videoLink);
});

console.log(`AI SDK: OK (${steps.length} steps)`);
