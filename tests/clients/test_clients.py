"""Stock Python clients against a running grok2api (started by tests/clients.rs): LiteLLM's openai/ and
xai/ providers, and the OpenAI Python SDK on the places where stock clients broke (issue 21).

Env: GROK2API_BASE_URL (http://host:port), GROK2API_API_KEY.
"""
import base64
import io
import os
import struct
import unittest

import litellm
import openai

BASE = os.environ["GROK2API_BASE_URL"]
KEY = os.environ["GROK2API_API_KEY"]
V1 = f"{BASE}/v1"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def client():
    return openai.OpenAI(base_url=V1, api_key=KEY, max_retries=0, timeout=60)


def png_size(data):
    assert data.startswith(PNG_MAGIC), data[:8]
    return struct.unpack(">II", data[16:24])


def sample_png():
    resp = client().images.generate(model="grok-imagine-1.0", prompt="edit source", response_format="b64_json")
    return base64.b64decode(resp.data[0].b64_json)


class LiteLLM(unittest.TestCase):
    def test_xai_image_with_aspect_ratio(self):
        resp = litellm.image_generation(
            model="xai/grok-imagine-image", prompt="a wide valley", api_base=V1, api_key=KEY, aspect_ratio="16:9"
        )
        item = resp.data[0]
        data = base64.b64decode(item.b64_json) if item.b64_json else None
        if data is None:
            import urllib.request

            with urllib.request.urlopen(item.url, timeout=30) as r:
                data = r.read()
        w, h = png_size(data)
        self.assertTrue(w > h and abs(w / h - 16 / 9) < 0.02, f"16:9, got {w}x{h}")

    def test_xai_image_unsupported_ratio_is_refused(self):
        with self.assertRaises(litellm.BadRequestError) as ctx:
            litellm.image_generation(
                model="xai/grok-imagine-image", prompt="x", api_base=V1, api_key=KEY, aspect_ratio="4:3"
            )
        self.assertIn("aspect_ratio", str(ctx.exception))

    def test_openai_image_and_video_chat(self):
        resp = litellm.image_generation(model="openai/grok-imagine-1.0", prompt="a fox", api_base=V1, api_key=KEY)
        self.assertIn("/v1/files/image/", resp.data[0].url)
        chat = litellm.completion(
            model="openai/grok-imagine-1.0-video",
            messages=[{"role": "user", "content": "a sunset"}],
            api_base=V1,
            api_key=KEY,
        )
        self.assertIn("/v1/files/video/", chat.choices[0].message.content)

    def test_streamed_chat_reports_usage(self):
        stream = litellm.completion(
            model="openai/grok-imagine-1.0-video",
            messages=[{"role": "user", "content": "rain"}],
            api_base=V1,
            api_key=KEY,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertIn("/v1/files/video/", text)
        usage = [c.usage for c in chunks if getattr(c, "usage", None) is not None]
        self.assertTrue(usage, "a usage chunk")
        self.assertEqual(usage[-1].total_tokens, 0)

    def test_responses_api(self):
        resp = litellm.responses(model="openai/grok-imagine-1.0-video", input="waves", api_base=V1, api_key=KEY)
        text = resp.output[0].content[0].text
        self.assertIn("/v1/files/video/", text)


class OpenAISDK(unittest.TestCase):
    def test_size_auto_answers_b64_json_and_describes_the_image(self):
        resp = client().images.generate(model="grok-imagine-1.0", prompt="a lighthouse", size="auto")
        data = base64.b64decode(resp.data[0].b64_json)
        w, h = png_size(data)
        self.assertEqual(resp.size, f"{w}x{h}")
        self.assertEqual(resp.output_format, "png")
        self.assertEqual((resp.quality, resp.background), ("auto", "opaque"))
        self.assertEqual(resp.usage.total_tokens, 0)

    def test_edit_stream_events_are_image_edit(self):
        png = sample_png()
        stream = client().images.edit(
            model="grok-imagine-1.0-edit",
            image=("in.png", io.BytesIO(png), "image/png"),
            prompt="make it snow",
            stream=True,
        )
        kinds = [event.type for event in stream]
        self.assertEqual(kinds[-1], "image_edit.completed", kinds)
        self.assertTrue(all(k.startswith("image_edit.") for k in kinds), kinds)

    def test_responses_create_and_stream(self):
        resp = client().responses.create(model="grok-imagine-1.0", input="a cat in space")
        self.assertIn("/v1/files/image/", resp.output_text)
        with client().responses.stream(model="grok-imagine-1.0-video", input="a dog running") as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_response()
        self.assertEqual(kinds[0], "response.created")
        self.assertEqual(kinds[-1], "response.completed")
        self.assertIn("/v1/files/video/", final.output_text)

    def test_chat_stream_include_usage(self):
        stream = client().chat.completions.create(
            model="grok-imagine-1.0-video",
            messages=[{"role": "user", "content": "snow"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.total_tokens, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
