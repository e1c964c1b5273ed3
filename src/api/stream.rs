//! Server-sent events for a running job, shared by image and chat streams. The job runs in a task the
//! app tracks; the task stops — dropping the upstream request and freeing its token — as soon as the
//! client goes away, the deadline passes, or the job ends.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::state::AppState;
use crate::error::ApiError;
use crate::jobs::{Job, JobEvent, JobOutput, ProgressSink};
use crate::owner::KeyId;

/// How long a request may wait for its media (`server.request_timeout_secs`), streamed or not.
pub fn request_timeout(state: &AppState) -> Duration {
    Duration::from_secs(state.cfg.server.request_timeout_secs.max(1))
}

/// Runs `job` for a request that waits for the whole answer, under the request timeout.
pub async fn run_to_end(state: &AppState, owner: &KeyId, job: &Job) -> Result<JobOutput, ApiError> {
    let timeout = request_timeout(state);
    tokio::time::timeout(timeout, state.runner.run(owner, job, &ProgressSink::none()))
        .await
        .map_err(|_| ApiError::timeout(format!("generation took longer than {}s", timeout.as_secs())))?
        .map_err(ApiError::from)
}

pub fn sse_job<P, D>(state: &AppState, owner: KeyId, job: Job, timeout: Duration, on_event: P, on_done: D) -> Response
where
    P: FnMut(JobEvent) -> Option<Event> + Send + 'static,
    D: FnOnce(Result<JobOutput, ApiError>) -> Vec<Event> + Send + 'static,
{
    sse_job_after(state, owner, job, timeout, Vec::new(), on_event, on_done)
}

/// `sse_job` that first sends `opening` (the Responses API announces the response before any work).
pub fn sse_job_after<P, D>(
    state: &AppState,
    owner: KeyId,
    job: Job,
    timeout: Duration,
    opening: Vec<Event>,
    mut on_event: P,
    on_done: D,
) -> Response
where
    P: FnMut(JobEvent) -> Option<Event> + Send + 'static,
    D: FnOnce(Result<JobOutput, ApiError>) -> Vec<Event> + Send + 'static,
{
    let (out, out_rx) = mpsc::channel::<Result<Event, Infallible>>(16.max(opening.len()));
    for e in opening {
        // The channel has room for every opening event, and nobody reads it yet.
        let _ = out.try_send(Ok(e));
    }
    let (sink, mut events) = ProgressSink::channel(32);
    let runner = state.runner.clone();
    state.tracker.spawn(async move {
        let run = runner.run(&owner, &job, &sink);
        tokio::pin!(run);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let result = loop {
            tokio::select! {
                _ = out.closed() => return,
                _ = &mut deadline => {
                    break Err(ApiError::timeout(format!("generation took longer than {}s", timeout.as_secs())));
                }
                Some(ev) = events.recv() => {
                    if let Some(e) = on_event(ev)
                        && out.send(Ok(e)).await.is_err()
                    {
                        return;
                    }
                }
                r = &mut run => break r.map_err(ApiError::from),
            }
        };
        for e in on_done(result) {
            if out.send(Ok(e)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(out_rx)).keep_alive(KeepAlive::default()).into_response()
}
