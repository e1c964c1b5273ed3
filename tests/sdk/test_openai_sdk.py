"""The official OpenAI Python SDK against a running grok2api (started by tests/openai_sdk.rs).

Env: GROK2API_BASE_URL (http://host:port), GROK2API_API_KEY.
"""
import base64
import io
import os
import unittest
import urllib.request

import openai

BASE = os.environ["GROK2API_BASE_URL"]
KEY = os.environ["GROK2API_API_KEY"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def client(key=KEY):
    return openai.OpenAI(base_url=f"{BASE}/v1", api_key=key, max_retries=0, timeout=60)


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.headers.get("Content-Type"), r.read()


def sample_png():
    # Generate one through the gateway so the upload is a real image.
    resp = client().images.generate(model="grok-imagine-1.0", prompt="edit source", response_format="b64_json")
    return base64.b64decode(resp.data[0].b64_json)


class ImagesGenerate(unittest.TestCase):
    def test_urls(self):
        resp = client().images.generate(model="grok-imagine-1.0", prompt="一只在太空漂浮的猫", n=2, size="1024x1024")
        self.assertEqual(len(resp.data), 2)
        for image in resp.data:
            self.assertTrue(image.url.startswith(BASE + "/v1/files/image/"), image.url)
            ctype, body = fetch(image.url)
            self.assertEqual(ctype, "image/png")
            self.assertTrue(body.startswith(PNG_MAGIC))

    def test_b64_json(self):
        resp = client().images.generate(model="grok-imagine-image", prompt="a fox", size="1792x1024", response_format="b64_json")
        self.assertEqual(len(resp.data), 1)
        self.assertTrue(base64.b64decode(resp.data[0].b64_json).startswith(PNG_MAGIC))

    def test_stream(self):
        events = list(client().images.generate(model="grok-imagine-1.0", prompt="a fox", stream=True, partial_images=2))
        kinds = [e.type for e in events]
        self.assertIn("image_generation.partial_image", kinds)
        self.assertEqual(kinds[-1], "image_generation.completed")
        self.assertTrue(base64.b64decode(events[-1].b64_json).startswith(PNG_MAGIC))

    def test_unknown_model_is_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as ctx:
            client().images.generate(model="dall-e-3", prompt="a fox")
        self.assertEqual(ctx.exception.code, "model_not_supported")

    def test_bad_n_names_the_param(self):
        with self.assertRaises(openai.BadRequestError) as ctx:
            client().images.generate(model="grok-imagine-1.0", prompt="a fox", n=11)
        self.assertEqual(ctx.exception.param, "n")

    def test_wrong_key_is_authentication_error(self):
        with self.assertRaises(openai.AuthenticationError):
            client("wrong-key").images.generate(model="grok-imagine-1.0", prompt="a fox")

    def test_upstream_failure_is_server_side(self):
        with self.assertRaises(openai.InternalServerError) as ctx:
            client().images.generate(model="grok-imagine-1.0", prompt="a fox [sim:fail]")
        self.assertEqual(ctx.exception.status_code, 502)


class ImagesEdit(unittest.TestCase):
    def test_single_image(self):
        src = sample_png()
        resp = client().images.edit(
            model="grok-imagine-1.0-edit", prompt="把图片变清晰", image=("input.png", io.BytesIO(src), "image/png")
        )
        self.assertEqual(len(resp.data), 1)
        ctype, body = fetch(resp.data[0].url)
        self.assertEqual(ctype, "image/png")
        self.assertTrue(body.startswith(PNG_MAGIC))

    def test_several_images_and_n(self):
        src = sample_png()
        resp = client().images.edit(
            model="grok-imagine-1.0-edit",
            prompt="combine them",
            image=[("a.png", io.BytesIO(src), "image/png"), ("b.png", io.BytesIO(src), "image/png")],
            n=2,
            response_format="b64_json",
        )
        self.assertEqual(len(resp.data), 2)
        for image in resp.data:
            self.assertTrue(base64.b64decode(image.b64_json).startswith(PNG_MAGIC))

    def test_non_image_is_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as ctx:
            client().images.edit(
                model="grok-imagine-1.0-edit", prompt="x", image=("notes.png", io.BytesIO(b"just text"), "image/png")
            )
        self.assertEqual(ctx.exception.param, "image")


if __name__ == "__main__":
    unittest.main(verbosity=2)
