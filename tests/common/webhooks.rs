//! A webhook receiver on loopback and an independent Standard Webhooks signature check.

use std::sync::{Arc, Mutex};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The callback secret the task suites configure.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Callbacks signed with `SECRET` and allowed to loopback, where the suite's receivers listen.
pub fn to_loopback(c: &mut grok2api::config::Config) {
    c.callbacks.secret = Some(SECRET.into());
    c.callbacks.allow_private = true;
}

/// (headers, body) of one received callback.
pub type Delivery = (axum::http::HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Delivery>>>,
    /// Statuses to answer, in order; 200 once they run out.
    script: Arc<Mutex<Vec<u16>>>,
}

pub async fn receiver(script: Vec<u16>) -> (Receiver, String) {
    let r = Receiver { got: Arc::default(), script: Arc::new(Mutex::new(script)) };
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                state.got.lock().unwrap().push((headers, body.to_vec()));
                let mut script = state.script.lock().unwrap();
                let code = if script.is_empty() { 200 } else { script.remove(0) };
                axum::http::StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

/// Verifies a Standard Webhooks signature the way a receiver would, independently of the gateway's code.
pub fn verify(headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    let key = base64::engine::general_purpose::STANDARD.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let id = headers["webhook-id"].to_str().unwrap();
    let ts = headers["webhook-timestamp"].to_str().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    if ts.parse::<u64>().unwrap().abs_diff(now) > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    headers["webhook-signature"].to_str().unwrap().split(' ').any(|s| s == format!("v1,{expected}"))
}
