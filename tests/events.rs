//! Live task events (server-sent events): every change in order, the terminal event, then the end;
//! resuming with `Last-Event-ID`; a disconnect gives the key's stream slot back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: u64,
    data: Value,
}

/// Reads events from an open SSE response; `None` once the server ends the stream.
struct Reader {
    resp: reqwest::Response,
    buf: String,
}

impl Reader {
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), 0, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().unwrap();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return Some(Sse { event, id, data: serde_json::from_str(&data).unwrap() });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.resp.chunk()).await.unwrap().unwrap()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    async fn all(&mut self) -> Vec<Sse> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

async fn open(h: &Harness, path: &str, last_id: Option<u64>) -> (u16, Option<Reader>) {
    let mut req = h.get(path).header("accept", "text/event-stream");
    if let Some(id) = last_id {
        req = req.header("last-event-id", id.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    (status, Some(Reader { resp, buf: String::new() }))
}

async fn create_video_task(h: &Harness, prompt: &str) -> String {
    let body = json!({"model": "grok-imagine-1.0-video", "prompt": prompt});
    let (status, _, v) = split(h.post("/v1/video/tasks").json(&body).send().await.unwrap()).await;
    assert_eq!(status, 202, "{v}");
    v["data"]["taskId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn events_come_in_order_and_end_with_the_terminal_state() {
    let h = start().await;
    let id = create_video_task(&h, "waves [sim:slow=60]").await;
    let (_, reader) = open(&h, &format!("/v1/video/tasks/{id}/events"), None).await;
    let events = reader.unwrap().all().await;
    assert!(events.len() >= 3, "{events:?}");
    for pair in events.windows(2) {
        assert!(pair[0].id < pair[1].id, "ids rise: {pair:?}");
        assert!(pair[0].data["progress"].as_u64() <= pair[1].data["progress"].as_u64());
    }
    let last = events.last().unwrap();
    assert_eq!((last.event.as_str(), last.data["status"].as_str()), ("success", Some("success")));
    assert!(last.data["result"]["downloadUrl"].as_str().unwrap().contains("/v1/files/video/"));
    assert!(events.iter().any(|e| e.event == "processing"), "{events:?}");
    // Once it is over, a reconnect that saw the end gets nothing more; one that did not gets the end.
    let (_, reader) = open(&h, &format!("/v1/video/tasks/{id}/events"), Some(last.id)).await;
    assert!(reader.unwrap().all().await.is_empty());
    let (_, reader) = open(&h, &format!("/v1/video/tasks/{id}/events"), None).await;
    let again = reader.unwrap().all().await;
    assert_eq!((again.len(), again[0].id), (1, last.id));
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_resumes_after_it() {
    let h = start().await;
    let id = create_video_task(&h, "waves [sim:slow=80]").await;
    let path = format!("/v1/video/tasks/{id}/events");
    let (_, reader) = open(&h, &path, None).await;
    let mut reader = reader.unwrap();
    let first = reader.next().await.unwrap();
    let second = reader.next().await.unwrap();
    drop(reader);
    let (_, reader) = open(&h, &path, Some(second.id)).await;
    let rest = reader.unwrap().all().await;
    assert!(rest.iter().all(|e| e.id > second.id), "nothing at or before {}: {rest:?}", second.id);
    assert!(first.id < second.id);
    assert_eq!(rest.last().unwrap().event, "success");
}

#[tokio::test]
async fn streams_per_key_are_bounded_and_a_disconnect_frees_the_slot() {
    let h = builder().config(|c| c.limits.max_event_streams = 1).start().await;
    let id = create_video_task(&h, "long [sim:slow=300]").await;
    let path = format!("/v1/video/tasks/{id}/events");
    let (status, first) = open(&h, &path, None).await;
    assert_eq!(status, 200);
    let (status, _) = open(&h, &path, None).await;
    assert_eq!(status, 429, "a second stream is over the bound");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, reader) = open(&h, &path, None).await;
        if status == 200 {
            drop(reader);
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Someone else's task does not exist for this key.
    let other = h.http.get(h.url(&path)).bearer_auth(OTHER_KEY).send().await.unwrap();
    assert_eq!(other.status(), 404);
    // With every stream gone, the store keeps no signal for the task.
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.server.state.tasks.watched() > 0 {
        assert!(Instant::now() < deadline, "a followed task's signal was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.server.state.event_streams.is_empty(), "every key's stream count went back to 0");
}

#[tokio::test]
async fn openai_videos_stream_openai_objects() {
    let h = start().await;
    let (_, _, v) =
        split(h.post("/v1/videos").json(&json!({"prompt": "waves [sim:slow=30]"})).send().await.unwrap()).await;
    let id = v["id"].as_str().unwrap();
    let (_, reader) = open(&h, &format!("/v1/videos/{id}/events"), None).await;
    let events = reader.unwrap().all().await;
    let last = events.last().unwrap();
    assert_eq!((last.event.as_str(), last.data["object"].as_str()), ("video.completed", Some("video")));
    assert!(events.iter().all(|e| e.event.starts_with("video.")), "{events:?}");
    // A task of the task endpoints is not a video of this API.
    let native = create_video_task(&h, "x").await;
    let (status, _) = open(&h, &format!("/v1/videos/{native}/events"), None).await;
    assert_eq!(status, 404);
}
