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
# Which upstream the demo simulates: the official xAI API streams no partial images and reports
# video progress only as often as it is polled.
XAI = os.environ.get("GROK2API_UPSTREAM") == "xai"
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
        if not XAI:
            self.assertIn("image_generation.partial_image", kinds)
        self.assertEqual(kinds[-1], "image_generation.completed")
        self.assertTrue(base64.b64decode(events[-1].b64_json).startswith(PNG_MAGIC))

    def test_newer_parameters(self):
        # gpt-image parameters: the output format is honoured, the others accepted; a request that
        # speaks that family's language gets b64_json (its clients read nothing else) unless it asks.
        params = dict(model="grok-imagine-1.0", prompt="a fox", quality="high", background="auto", moderation="low",
                      output_format="jpeg", output_compression=70, user="user-42")
        resp = client().images.generate(**params)
        self.assertEqual(resp.output_format, "jpeg")
        self.assertTrue(base64.b64decode(resp.data[0].b64_json).startswith(b"\xff\xd8\xff"))
        resp = client().images.generate(**params, response_format="url")
        ctype, body = fetch(resp.data[0].url)
        self.assertEqual(ctype, "image/jpeg")
        self.assertTrue(body.startswith(b"\xff\xd8\xff"))

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


VIDEO_CONFIG = {"aspect_ratio": "3:2", "video_length": 6, "resolution_name": "480p", "preset": "normal"}


class ChatVideo(unittest.TestCase):
    def test_non_stream(self):
        resp = client().chat.completions.create(
            model="grok-imagine-1.0-video",
            messages=[{"role": "user", "content": "生成一段海边日落视频"}],
            extra_body={"video_config": VIDEO_CONFIG},
        )
        message = resp.choices[0].message
        video = message.model_extra["video"]
        self.assertEqual(message.content, f"[video]({video['url']})")
        self.assertEqual(video["duration"], 6)
        ctype, body = fetch(video["url"])
        self.assertEqual(ctype, "video/mp4")
        self.assertEqual(body[4:8], b"ftyp")

    def test_stream(self):
        stream = client().chat.completions.create(
            model="grok-imagine-1.0-video",
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "让这张图动起来"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(sample_png()).decode()}},
            ]}],
            stream=True,
            extra_body={"video_config": dict(VIDEO_CONFIG, video_length=10)},
        )
        content, progress, finish = "", [], None
        for chunk in stream:
            if chunk.model_extra.get("progress") is not None:
                progress.append(chunk.model_extra["progress"])
            if chunk.choices:
                content += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        self.assertEqual(finish, "stop")
        self.assertEqual(progress, sorted(progress))
        self.assertGreaterEqual(len(progress), 2 if XAI else 3)
        self.assertTrue(content.startswith("[video](http"), content)
        ctype, body = fetch(content[len("[video]("):-1])
        self.assertEqual(ctype, "video/mp4")

    def test_bad_video_config(self):
        with self.assertRaises(openai.BadRequestError) as ctx:
            client().chat.completions.create(
                model="grok-imagine-1.0-video",
                messages=[{"role": "user", "content": "x"}],
                extra_body={"video_config": {"video_length": 16}},
            )
        self.assertEqual(ctx.exception.param, "video_config.video_length")


class Videos(unittest.TestCase):
    """OpenAI's Videos API (`client.videos`), unchanged: the calls LiteLLM and new-api make too."""

    def test_create_and_poll_then_download_list_delete(self):
        video = client().videos.create_and_poll(
            model="grok-imagine-1.0-video", prompt="a lighthouse at dusk", seconds="8", size="1280x720",
            poll_interval_ms=100,
        )
        self.assertEqual(video.status, "completed", video)
        self.assertTrue(video.id.startswith("video_"))
        self.assertEqual((video.seconds, video.size, video.progress), ("8", "1280x720", 100))
        self.assertEqual(client().videos.retrieve(video.id).status, "completed")
        content = client().videos.download_content(video.id, variant="video")
        self.assertEqual(content.response.headers["content-type"], "video/mp4")
        self.assertEqual(content.read()[4:8], b"ftyp")
        ids = [v.id for v in client().videos.list(limit=100)]
        self.assertIn(video.id, ids)
        deleted = client().videos.delete(video.id)
        self.assertTrue(deleted.deleted)
        with self.assertRaises(openai.NotFoundError):
            client().videos.retrieve(video.id)

    def test_input_reference_file(self):
        video = client().videos.create_and_poll(
            prompt="the fox runs", input_reference=("ref.png", io.BytesIO(sample_png()), "image/png"),
            poll_interval_ms=100,
        )
        self.assertEqual(video.status, "completed", video)
        self.assertEqual((video.seconds, video.size), ("4", "720x1280"))

    def test_sora_model_is_bad_request_listing_ours(self):
        with self.assertRaises(openai.BadRequestError) as ctx:
            client().videos.create(model="sora-2", prompt="x")
        self.assertIn("grok-imagine-1.0-video", ctx.exception.message)

    def test_failure_is_reported_on_the_video(self):
        video = client().videos.create_and_poll(prompt="x [sim:fail]", poll_interval_ms=100)
        self.assertEqual(video.status, "failed")
        self.assertEqual(video.error.code, "upstream_error")


if __name__ == "__main__":
    unittest.main(verbosity=2)
