//! The wall clock, in the two units the gateway stores and shows: one place, so tests and records agree
//! on what "now" is, and so nothing low in the stack imports the task model to learn the time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (task records, sessions, token cool-downs).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch (OpenAI `created` fields, webhook timestamps, key records).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
