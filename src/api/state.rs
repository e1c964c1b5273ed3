//! The state every handler is given: the services and stores the app was built with (`app::build`
//! makes it from the configuration).

use std::ops::Deref;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::gate::AdminGate;
use crate::auth::Guard;
use crate::config::Config;
use crate::media::MediaStore;
use crate::metrics::Metrics;
use crate::net::FetchPolicy;
use crate::owner::KeyId;
use crate::runner::JobRunner;
use crate::runner::queue::TaskQueue;
use crate::runner::service::TaskService;
use crate::tasks::callbacks::CallbackSettings;
use crate::tasks::store::TaskStore;

pub struct Inner {
    pub cfg: Config,
    pub runner: Arc<JobRunner>,
    pub media: Arc<MediaStore>,
    pub guard: Arc<Guard>,
    /// The admin key and console sessions.
    pub console: Arc<AdminGate>,
    pub started: std::time::Instant,
    pub metrics: Arc<Metrics>,
    pub fetch_policy: FetchPolicy,
    pub tasks: Arc<TaskStore>,
    pub queue: TaskQueue,
    /// Tasks wherever they are (this process, or every replica with a shared store).
    pub service: Arc<TaskService>,
    /// Open task event streams per key (bounded by `limits.max_event_streams`).
    pub event_streams: Arc<dashmap::DashMap<KeyId, usize>>,
    /// Signing and delivery settings; `None` when no secret is configured (callback_url refused).
    pub callbacks: Option<CallbackSettings>,
    /// Cancelled when the server begins shutting down; background loops watch it.
    pub shutdown: CancellationToken,
    /// Cancelled when the grace period is over: running tasks stop.
    pub abort: CancellationToken,
    /// Every background task the app starts, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl From<Inner> for AppState {
    fn from(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}
