//! Callbacks: on every terminal state, POST the task's status data to its `callback_url`, signed the
//! Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256
//! of "id.timestamp.body">`). At least once: non-2xx or timeout retries on a backoff schedule with
//! jitter; redirects are not followed; 410 Gone stops. Each attempt re-resolves and re-checks the target
//! address (no DNS-rebinding into the internal network) and is recorded on the task.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::store::TaskStore;
use super::{Signals, Task};
use crate::net::{self, FetchPolicy};

#[derive(Clone)]
pub struct CallbackSettings {
    /// HMAC key (the decoded `whsec_...` secret).
    pub key: Arc<[u8]>,
    pub policy: FetchPolicy,
    pub timeout: Duration,
    /// Delay before each retry; its length is the number of retries.
    pub retry_delays: Vec<Duration>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Decodes a `whsec_<base64>` secret (or, without the prefix, uses the text's bytes).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("callbacks.secret: `whsec_` part is not base64: {e}")),
        None if secret.len() >= 16 => Ok(secret.as_bytes().to_vec()),
        None => Err("callbacks.secret must be `whsec_<base64>` or at least 16 characters".into()),
    }
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// The event body for a finished task.
pub fn event(task: &Task, data: serde_json::Value) -> serde_json::Value {
    let kind = if task.status == super::TaskStatus::Success { "task.succeeded" } else { "task.failed" };
    serde_json::json!({"type": kind, "taskId": &*task.id, "kind": task.kind.event_kind(), "data": data})
}

enum AttemptOutcome {
    Delivered,
    /// Do not try again (410 Gone, or the target became forbidden).
    Stop(String),
    Retry(String),
}

async fn attempt(settings: &CallbackSettings, url: &str, id: &str, body: &[u8]) -> AttemptOutcome {
    let target = match net::parse_target(url) {
        Ok(u) => u,
        Err(e) => return AttemptOutcome::Stop(e.to_string()),
    };
    let (target, addr) = match net::resolve_checked(&target, &settings.policy).await {
        Ok(pair) => pair,
        Err(net::FetchError::Forbidden(m)) => return AttemptOutcome::Stop(m),
        Err(net::FetchError::Failed(m)) => return AttemptOutcome::Retry(m),
    };
    let host = target.host_str().unwrap_or_default().to_owned();
    // Never through an environment proxy: it would resolve the host again, past the pinned address.
    let client = match reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, addr)
        .timeout(settings.timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => return AttemptOutcome::Retry(format!("HTTP client: {e}")),
    };
    let timestamp = crate::clock::now_secs();
    let resp = client
        .post(target)
        .header("content-type", "application/json")
        .header("user-agent", concat!("grok2api-webhooks/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sign(&settings.key, id, timestamp, body))
        .body(body.to_vec())
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => AttemptOutcome::Delivered,
        Ok(r) if r.status() == reqwest::StatusCode::GONE => AttemptOutcome::Stop("receiver answered 410 Gone".into()),
        Ok(r) => AttemptOutcome::Retry(format!("receiver answered HTTP {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => AttemptOutcome::Retry(format!("no answer within {}s", settings.timeout.as_secs())),
        Err(e) => AttemptOutcome::Retry(format!("cannot deliver: {e}")),
    }
}

/// ±20 % so retries from many tasks do not arrive in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + rand::random::<f64>() * 0.4)
}

/// One callback to deliver.
pub struct Delivery {
    pub task_id: Arc<str>,
    /// `message_id` of the task and its outcome.
    pub msg_id: String,
    pub url: String,
    pub body: Vec<u8>,
    /// Answered once the task's terminal state is in the journal (none without a journal). Until
    /// then nothing is sent; closed unanswered (shutdown with a full disk), nothing is sent at all.
    pub durable: Option<oneshot::Receiver<()>>,
    /// With several replicas: asked before every attempt whether this replica still holds the task
    /// (one paused past its lease may have lost it to another, which delivers instead).
    pub still_ours: Option<StillOurs>,
}

/// Whether this replica still holds a task (`Delivery::still_ours`).
pub type StillOurs = Arc<dyn Fn(Arc<str>) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

/// The message id of a task's callback: one per task and outcome, so a retry, a delivery by the
/// replica that took the task over, and an operator's re-delivery are the same message to a receiver
/// that drops repeats (Standard Webhooks' idempotency key).
pub fn message_id(task_id: &str, status: &str) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(format!("{task_id}\n{status}").as_bytes());
    format!("msg_{}", hex::encode(&digest[..16]))
}

/// Starts delivering a callback in the background.
pub fn dispatch(
    tracker: &TaskTracker,
    signals: Signals,
    store: Arc<TaskStore>,
    settings: CallbackSettings,
    delivery: Delivery,
) {
    tracker.spawn(async move {
        let Delivery { task_id, url, body, durable, still_ours, msg_id } = delivery;
        if let Some(written) = durable
            && !wait_written(written, &signals.abort, &task_id).await
        {
            return;
        }
        let shutdown = signals.shutdown;
        let mut delays = settings.retry_delays.iter();
        loop {
            if let Some(check) = &still_ours
                && !check(task_id.clone()).await
            {
                tracing::info!(task = %task_id, "callback left to the replica that took the task over");
                store.forget_local(&task_id);
                return;
            }
            match attempt(&settings, &url, &msg_id, &body).await {
                AttemptOutcome::Delivered => {
                    settings.metrics.callback("delivered");
                    store.record_callback(&task_id, true, None, true);
                    return;
                }
                AttemptOutcome::Stop(e) => {
                    settings.metrics.callback("abandoned");
                    tracing::warn!(task = %task_id, "callback abandoned: {e}");
                    store.record_callback(&task_id, false, Some(e), true);
                    return;
                }
                AttemptOutcome::Retry(e) => {
                    let Some(delay) = delays.next() else {
                        settings.metrics.callback("given_up");
                        tracing::warn!(task = %task_id, "callback given up after retries: {e}");
                        store.record_callback(&task_id, false, Some(e), true);
                        return;
                    };
                    settings.metrics.callback("retry");
                    store.record_callback(&task_id, false, Some(e), false);
                    tokio::select! {
                        _ = tokio::time::sleep(jitter(*delay)) => {}
                        // Still owed: with a journal it is delivered after the restart.
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    });
}

/// Waits for the journal to hold the task's terminal state. Gives up (the callback stays owed) when
/// the journal closed first or the grace period ends: a disk that stays full must not hold up a
/// shutdown.
async fn wait_written(written: oneshot::Receiver<()>, abort: &CancellationToken, task_id: &str) -> bool {
    tokio::select! {
        biased;
        r = written => {
            if r.is_err() {
                tracing::warn!(task = %task_id, "callback not sent: the journal closed before it held the task's state");
            }
            r.is_ok()
        }
        _ = abort.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver that drops repeats by `webhook-id` must see a takeover's delivery (another replica,
    /// another process) as the same message, and a task's outcome as one message.
    #[test]
    fn a_callbacks_message_id_is_one_per_task_and_outcome() {
        let id = message_id("task_01", "success");
        assert_eq!(id, message_id("task_01", "success"));
        assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
        assert_ne!(id, message_id("task_01", "failed"));
        assert_ne!(id, message_id("task_02", "success"));
    }

    #[test]
    fn signature_matches_the_standard_webhooks_reference() {
        // Test vector from the Standard Webhooks specification's reference libraries.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets() {
        assert!(decode_secret("whsec_!!").is_err());
        assert!(decode_secret("short").is_err());
        assert_eq!(decode_secret("a-long-enough-plain-secret").unwrap(), b"a-long-enough-plain-secret");
    }
}
