//! Application state and the router with its tower stack.
//!
//! Layer order, outermost first: set `x-request-id` (keep the client's, else a UUID) → trace span
//! carrying that id → copy the id onto the response → mark auth/cookie headers sensitive → catch
//! panics as an OpenAI-shaped 500. Body limits and bearer auth sit on the routes that need them.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::api;
use crate::auth::{Guard, require_key, require_key_task};
use crate::config::Config;
use crate::console::session::{AdminGate, require_admin, require_console};
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::limits::RateLimiter;
use crate::media::MediaStore;
use crate::metrics::Metrics;
use crate::net::FetchPolicy;
use crate::owner::KeyId;
use crate::runner::JobRunner;
use crate::runner::queue::{QueuedTask, Settings as QueueSettings, Signals, TaskQueue};
use crate::state_db::StateDb;
use crate::tasks::TaskStatus;
use crate::tasks::callbacks::{CallbackSettings, decode_secret};
use crate::tasks::idempotency::IdempotencyKeys;
use crate::tasks::journal::{Journal, TaskRecord};
use crate::tasks::store::TaskStore;
use crate::tasks::store::Transition;
use crate::upstream::Upstream;
use crate::usage::UsageBook;

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
    pub idempotency: Arc<IdempotencyKeys>,
    /// The Redis store several replicas share (`store.url`); `None` = this process alone.
    pub shared: Option<Arc<crate::shared::Shared>>,
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

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl AppState {
    pub fn new(cfg: Config) -> Result<Self, String> {
        let media_dir = cfg.media.dir.clone().unwrap_or_else(|| std::env::temp_dir().join("grok2api-media"));
        let media = MediaStore::open(&media_dir, cfg.media.max_bytes)
            .map_err(|e| format!("cannot open media dir {}: {e}", media_dir.display()))?;
        let media = Arc::new(match &cfg.media.s3 {
            Some(s3) => media.with_remote(crate::media::s3::RemoteMedia::open(s3)?),
            None => media,
        });
        let metrics = Arc::new(Metrics::default());
        let shared = match &cfg.store.url {
            Some(url) => Some(crate::shared::Shared::open(
                url,
                Duration::from_secs(cfg.store.lease_secs.max(1)),
                Duration::from_secs(cfg.tasks.ttl_secs),
            )?),
            None => None,
        };
        let state_db = cfg.state.dir.as_deref().map(StateDb::open).transpose()?.map(Arc::new);
        let usage = Arc::new(UsageBook::open(state_db.clone(), shared.clone())?);
        let admin_key = cfg.admin.api_key.as_deref().filter(|k| !k.is_empty());
        let keys = Arc::new(KeyRing::open(&cfg.auth.api_keys, state_db, admin_key.is_some(), shared.clone())?);
        let upstream = Upstream::from_config(&cfg, metrics.clone())?;
        let guard = Arc::new(Guard {
            keys,
            limiter: RateLimiter::new(cfg.limits.requests_per_second, cfg.limits.burst),
            usage: usage.clone(),
            shared: shared.clone(),
            guesses: crate::limits::GuessLimiter::per_address(cfg.limits.wrong_key_burst, cfg.limits.wrong_key_rate),
        });
        let https = cfg.server.public_base_url.as_deref().is_some_and(|u| u.starts_with("https://"));
        let console = Arc::new(AdminGate::new(
            admin_key,
            Duration::from_secs(cfg.admin.session_ttl_secs.max(60)),
            https,
            crate::limits::GuessLimiter::per_address(cfg.admin.wrong_key_burst, cfg.admin.wrong_key_rate),
        ));
        let fetch_policy = FetchPolicy {
            allow_private: cfg.fetch.allow_private,
            timeout: std::time::Duration::from_secs(cfg.fetch.timeout_secs.max(1)),
            host_overrides: cfg.fetch.host_overrides.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
            extra_root_pem: cfg.fetch.ca_pem.clone(),
            ..FetchPolicy::default()
        };
        let callbacks = match &cfg.callbacks.secret {
            Some(secret) => Some(CallbackSettings {
                key: Arc::from(decode_secret(secret)?),
                // The fetcher's host overrides are operator shortcuts for image URLs; a callback
                // through one would reach whatever internal host it names, unchecked.
                policy: FetchPolicy {
                    allow_private: cfg.callbacks.allow_private,
                    host_overrides: Default::default(),
                    extra_root_pem: None,
                    ..fetch_policy.clone()
                },
                timeout: Duration::from_secs(cfg.callbacks.timeout_secs.max(1)),
                retry_delays: cfg
                    .callbacks
                    .retry_delays_secs
                    .iter()
                    .map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0)))
                    .collect(),
                metrics: metrics.clone(),
            }),
            None => None,
        };
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let abort = CancellationToken::new();
        let runner = Arc::new(JobRunner::new(upstream, media.clone(), usage.clone()));
        // With a shared store, it is the journal: a replica starts with nothing of its own and takes
        // over what silent replicas (its own earlier run included) left unfinished.
        let (journal, records) = match (&shared, &cfg.state.dir) {
            (Some(shared), _) => {
                let shared = shared.clone();
                let writer = move |rx, health: Arc<_>| crate::shared::writer::run(shared, rx, &health);
                (Some(Arc::new(Journal::spawn(writer)?)), Vec::new())
            }
            (None, Some(dir)) => {
                let (j, records) = Journal::open(dir)?;
                (Some(Arc::new(j)), records)
            }
            (None, None) => (None, Vec::new()),
        };
        let tasks = Arc::new(TaskStore::with_journal(journal, cfg.tasks.expected_tasks));
        let render_media = media.clone();
        let queue = TaskQueue::start(
            QueueSettings {
                capacity: cfg.tasks.queue_capacity,
                per_key: cfg.tasks.queue_per_key,
                expected_tasks: cfg.tasks.expected_tasks,
                workers: cfg.tasks.workers,
                job_timeout: Duration::from_secs(cfg.tasks.job_timeout_secs.max(1)),
                callbacks: callbacks.clone(),
                shared: shared.clone(),
            },
            tasks.clone(),
            runner.clone(),
            Arc::new(move |t| api::tasks::callback_event(t, &render_media)),
            &tracker,
            Signals { shutdown: shutdown.clone(), abort: abort.clone() },
        );
        recover(records, &tasks, &queue);
        if let Some(shared) = &shared {
            let duties = (tasks.clone(), queue.clone(), runner.clone(), guard.keys.clone());
            spawn_replica_duties(&tracker, shutdown.clone(), shared.clone(), duties);
        }
        if cfg.grok.quota_refresh_secs > 0 {
            spawn_quota_refresh(
                &tracker,
                shutdown.clone(),
                runner.clone(),
                Duration::from_secs(cfg.grok.quota_refresh_secs),
            );
        }
        spawn_usage_flush(&tracker, shutdown.clone(), usage);
        let idempotency = Arc::new(IdempotencyKeys::default());
        spawn_reaper(
            &tracker,
            shutdown.clone(),
            tasks.clone(),
            idempotency.clone(),
            Duration::from_secs(cfg.tasks.ttl_secs),
            cfg.tasks.max_finished.max(1),
        );
        Ok(Self(Arc::new(Inner {
            tasks,
            queue,
            idempotency,
            shared,
            event_streams: Arc::default(),
            callbacks,
            shutdown,
            abort,
            fetch_policy,
            runner,
            media,
            guard,
            console,
            started: std::time::Instant::now(),
            metrics,
            tracker,
            cfg,
        })))
    }

    pub fn router(&self) -> Router {
        let limits = &self.cfg.server;
        let require = from_fn_with_state(self.guard.clone(), require_key);
        let v1 = Router::new()
            .route("/v1/models", get(api::models::list))
            .route("/v1/models/{id}", get(api::models::get))
            .route(
                "/v1/images/generations",
                post(api::images::generations).layer(DefaultBodyLimit::max(limits.max_json_body_bytes)),
            )
            .route("/v1/images/edits", post(api::edits::edits).layer(DefaultBodyLimit::max(limits.max_upload_bytes)))
            // Data-URL images make chat bodies as large as uploads.
            .route(
                "/v1/chat/completions",
                post(api::chat::completions).layer(DefaultBodyLimit::max(limits.max_upload_bytes)),
            )
            .route("/v1/responses", post(api::responses::create).layer(DefaultBodyLimit::max(limits.max_upload_bytes)))
            .route_layer(require.clone());
        // OpenAI's Videos API and xAI's video API, on the task store (OpenAI error shape; a key always).
        let unsupported = || post(api::videos::unsupported);
        let videos = Router::new()
            .route("/v1/videos", post(api::videos::create).get(api::videos::list))
            .route("/v1/videos/generations", post(api::xai_videos::create))
            .route("/v1/videos/{id}", get(api::videos::retrieve).delete(api::videos::delete))
            .route("/v1/videos/{id}/content", get(api::videos::content))
            .route("/v1/videos/{id}/events", get(api::events::video_events))
            .route("/v1/videos/{id}/remix", unsupported())
            .route("/v1/videos/edits", unsupported())
            .route("/v1/videos/extensions", unsupported())
            .route("/v1/videos/characters", unsupported())
            .layer(DefaultBodyLimit::max(limits.max_upload_bytes))
            .route_layer(require.clone());
        let require_task = from_fn_with_state(self.guard.clone(), require_key_task);
        // Video bodies may carry data-URL images; an image task is a prompt and a few fields.
        let upload_body = || DefaultBodyLimit::max(limits.max_upload_bytes);
        let json_body = || DefaultBodyLimit::max(limits.max_json_body_bytes);
        let tasks_write = Router::new()
            .route("/v1/video/generations/async", post(api::tasks::create_video).layer(upload_body()))
            .route("/v1/video/tasks", post(api::tasks::create_video).layer(upload_body()).get(api::tasks::list_video))
            .route("/v1/images/generations/async", post(api::tasks::create_image).layer(json_body()))
            .route("/v1/images/tasks", post(api::tasks::create_image).layer(json_body()).get(api::tasks::list_images))
            .route("/v1/{kind}/tasks/{id}", delete(api::tasks::delete))
            .route_layer(require_task.clone());
        let mut tasks_read = Router::new()
            .route("/v1/{kind}/tasks/{id}", get(api::tasks::status))
            .route("/v1/{kind}/tasks/{id}/result", get(api::tasks::result))
            .route("/v1/{kind}/tasks/{id}/events", get(api::events::task_events));
        if !self.cfg.auth.public_task_reads {
            tasks_read = tasks_read.route_layer(require_task);
        }
        let mut files = Router::new().route("/v1/files/{kind}/{name}", get(api::files::get_file));
        if self.cfg.files.require_auth {
            files = files.route_layer(require.clone());
        }
        use api::admin::{keys, overview, tasks, tokens, usage};
        let admin = Router::new()
            .route("/admin/session", get(crate::console::session::session))
            .route("/admin/logout", post(crate::console::session::logout))
            .route("/admin/overview", get(overview::overview))
            .route("/admin/tokens", get(tokens::list_tokens).post(tokens::add_tokens).layer(upload_body()))
            .route("/admin/tokens/refresh", post(tokens::refresh_tokens))
            // Token files can be large; everything else is small JSON.
            .route("/admin/tokens/import", post(tokens::import_tokens).layer(upload_body()))
            .route("/admin/tokens/export", post(tokens::export_tokens))
            .route("/admin/tokens/bulk", post(tokens::bulk))
            .route("/admin/tokens/{id}", delete(tokens::remove_token).patch(tokens::patch_token))
            .route("/admin/tokens/{id}/refresh", post(tokens::refresh_token))
            .route("/admin/keys", get(keys::list).post(keys::create))
            .route("/admin/keys/{id}", delete(keys::revoke))
            .route("/admin/keys/{id}/rotate", post(keys::rotate))
            .route("/admin/usage", get(usage::list))
            .route("/admin/usage.csv", get(usage::csv))
            .route("/admin/tasks", get(tasks::list))
            .route("/admin/tasks/{id}", get(tasks::detail))
            .route("/admin/tasks/{id}/cancel", post(tasks::cancel))
            .route("/admin/tasks/{id}/redeliver", post(tasks::redeliver))
            .layer(json_body())
            .route_layer(from_fn_with_state(self.console.clone(), require_admin));
        // The page, its files and the login are reachable without a session.
        let console = Router::new()
            .route("/admin", get(crate::console::page))
            .route("/admin/assets/{name}", get(crate::console::file))
            .route("/admin/login", post(crate::console::session::login))
            .route_layer(from_fn_with_state(self.console.clone(), require_console));
        let mut ops = Router::new();
        if self.cfg.metrics.enabled {
            ops = ops.route("/metrics", get(api::health::metrics));
            if self.cfg.metrics.require_auth {
                ops = ops.route_layer(require);
            }
        }
        // The public API answers browsers on other origins; preflights are answered here, before
        // auth, limits and usage. The console and the admin API stay same-origin (cookies + CSRF).
        let mut public = Router::new()
            .merge(v1)
            .merge(videos)
            .merge(tasks_write)
            .merge(tasks_read)
            .merge(files)
            .route("/openapi.json", get(api::openapi::openapi_json));
        if let Some(cors) = cors_layer(&self.cfg) {
            // Set here, under the layer: a preflight to a POST-only route must meet the CORS layer
            // before the 405 (the router-wide setting below only fills in unset ones).
            public = public.method_not_allowed_fallback(|| async { ApiError::method_not_allowed() }).layer(cors);
        }
        Router::new()
            .merge(public)
            .merge(admin)
            .merge(console)
            .merge(ops)
            .route("/healthz", get(api::health::healthz))
            .route("/readyz", get(api::health::readyz))
            .fallback(|| async { ApiError::not_found("no such route") })
            .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
            .with_state(self.clone())
            .layer(crate::metrics::TrackLayer(self.metrics.clone()))
            .layer(
                ServiceBuilder::new()
                    .layer(tower::util::MapRequestLayer::new(drop_unfit_request_id))
                    .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                    .layer(
                        TraceLayer::new_for_http()
                            .make_span_with(|req: &Request<_>| {
                                let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                            })
                            .on_response(DefaultOnResponse::new().level(Level::INFO)),
                    )
                    .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                    .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
                    .layer(CatchPanicLayer::custom(panic_response)),
            )
    }
}

/// Which web origins may call the public API from a browser. Keys are bearer headers, never ambient
/// credentials a browser adds by itself, so with a key configured any origin is as safe as curl: the
/// page must hold a key. A gateway running open (no key, loopback only) answers no origin unless told
/// to: any page the user visits could otherwise spend their upstream quota through `localhost`.
fn cors_layer(cfg: &Config) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = match &cfg.server.cors_allowed_origins {
        Some(list) => {
            list.iter().map(|o| o.trim().trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()).collect()
        }
        None if cfg.is_keyed() => vec!["*".to_owned()],
        None => Vec::new(),
    };
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| axum::http::HeaderValue::from_str(o).ok()))
    };
    let names = |list: &[&'static str]| list.iter().map(|n| HeaderName::from_static(n)).collect::<Vec<_>>();
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::DELETE])
            // Range: a simple `bytes=N-M` needs no preflight, but a suffix range (`bytes=-N`) does, and
            // file links answer both.
            .allow_headers(names(&[
                "authorization",
                "content-type",
                "idempotency-key",
                "last-event-id",
                "range",
                "x-request-id",
            ]))
            .expose_headers(names(&[
                "location",
                "operation-location",
                "retry-after",
                "x-request-id",
                "content-range",
                "accept-ranges",
                "content-length",
            ]))
            .max_age(Duration::from_secs(cfg.server.cors_max_age_secs)),
    )
}

/// `[server]` as the server module takes it.
fn server_limits(cfg: &crate::config::ServerConfig) -> crate::server::Limits {
    use crate::config::secs;
    crate::server::Limits {
        max_connections: cfg.max_connections,
        header_read_timeout: secs(cfg.header_read_timeout_secs),
        idle_timeout: secs(cfg.idle_timeout_secs),
        send_timeout: secs(cfg.send_timeout_secs),
        body_read_timeout: secs(cfg.body_read_timeout_secs),
        body_min_bytes_per_sec: cfg.body_min_bytes_per_sec,
        // One body at the JSON limit always fits.
        max_body_bytes_in_flight: cfg.max_body_bytes_in_flight.max(cfg.max_json_body_bytes),
        max_header_bytes: cfg.max_header_bytes,
        max_headers: cfg.max_headers,
        http2_max_concurrent_streams: cfg.http2_max_concurrent_streams,
        http2_keepalive_interval: secs(cfg.http2_keepalive_interval_secs),
        http2_keepalive_timeout: secs(cfg.http2_keepalive_timeout_secs),
        trusted_proxies: cfg.trusted_proxies.clone(),
    }
}

/// Longest `x-request-id` kept from a client; a longer or odd one is replaced by our own.
const MAX_REQUEST_ID: usize = 128;

/// A client's request id is echoed and logged with every line of the request: only a short one of
/// plain characters is kept, or a client could fill the logs (or forge their lines).
fn drop_unfit_request_id<B>(mut req: Request<B>) -> Request<B> {
    let fit = |v: &axum::http::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:/+=@".contains(c))
    };
    let headers = req.headers_mut();
    if headers.get_all(&REQUEST_ID).iter().count() > 1 || headers.get(&REQUEST_ID).is_some_and(|v| !fit(v)) {
        headers.remove(&REQUEST_ID);
    }
    req
}

/// Puts journaled tasks back: finished ones are readable again (and owed callbacks go out), pending ones
/// run, and ones that were running when the process died fail with `interrupted`.
fn recover(mut records: Vec<TaskRecord>, tasks: &Arc<TaskStore>, queue: &TaskQueue) {
    if records.is_empty() {
        return;
    }
    records.sort_by_key(|r| r.created_ms());
    let (mut pending, mut interrupted, mut finished) = (Vec::new(), 0usize, 0usize);
    for record in records {
        let (task, job) = match record.into_task() {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!("journal record unusable, skipped: {e}");
                continue;
            }
        };
        let id = task.id.clone();
        // Pending tasks run again; a processing one whose upstream had accepted it (a journaled
        // `upstream_ref`) is polled again rather than paid for twice.
        let rerun = task.status == TaskStatus::Pending
            || (task.status == TaskStatus::Processing && job.as_ref().is_some_and(|p| p.upstream_ref.is_some()));
        match task.status {
            _ if rerun => {
                let queued = job.ok_or_else(|| "unfinished task without its job".to_string()).and_then(|p| {
                    Ok(QueuedTask {
                        id: id.clone(),
                        job: p.job.to_job()?,
                        base: Arc::from(p.base),
                        b64: p.b64,
                        resume: p.upstream_ref,
                    })
                });
                tasks.restore(task);
                match queued {
                    Ok(q) => pending.push(q),
                    Err(e) => {
                        let fail =
                            Transition::Fail { code: "interrupted".into(), message: format!("cannot resume: {e}") };
                        if let Ok(t) = tasks.apply(&id, fail) {
                            queue.announce(&t);
                        }
                    }
                }
            }
            TaskStatus::Pending | TaskStatus::Processing => {
                tasks.restore(task);
                let fail = Transition::Fail {
                    code: "interrupted".into(),
                    message: "the gateway stopped while the task was running; create it again".into(),
                };
                if let Ok(t) = tasks.apply(&id, fail) {
                    queue.announce(&t);
                }
                interrupted += 1;
            }
            TaskStatus::Success | TaskStatus::Failed => {
                tasks.restore(task.clone());
                queue.announce(&task);
                finished += 1;
            }
        }
    }
    tracing::info!(pending = pending.len(), interrupted, finished, "tasks recovered from the journal");
    queue.requeue(pending);
}

/// How often a replica tells the others its requests in flight per token, and how long a word lasts.
const IN_FLIGHT_EVERY: Duration = Duration::from_millis(500);
const IN_FLIGHT_LASTS: Duration = Duration::from_secs(2);

/// With a shared store: heart-beat, take over the tasks of replicas that stopped (they resume or fail
/// as after a restart), and cancel tasks this replica runs when another replica is asked to.
fn spawn_replica_duties(
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    shared: Arc<crate::shared::Shared>,
    (tasks, queue, runner, keys): (Arc<TaskStore>, TaskQueue, Arc<JobRunner>, Arc<KeyRing>),
) {
    let every = (shared.lease / 3).max(Duration::from_millis(200));
    // Token changes this replica sees go out, in order, through one publisher.
    if let Some(tokens) = runner.upstream().tokens() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokens.observe(Arc::new(move |event| {
            let _ = tx.send(event);
        }));
        // Requests in flight per token, while there are any (and once more when they drop to none).
        let (teller, stop_telling, counting) = (shared.clone(), shutdown.clone(), runner.clone());
        tracker.spawn(async move {
            let mut said_some = false;
            loop {
                tokio::select! {
                    _ = stop_telling.cancelled() => return,
                    _ = tokio::time::sleep(IN_FLIGHT_EVERY) => {}
                }
                let Some(tokens) = counting.upstream().tokens() else { return };
                tokens.remote_in_flight(None, IN_FLIGHT_LASTS);
                let counts = tokens.in_flight_counts();
                if counts.is_empty() && !said_some {
                    continue;
                }
                said_some = !counts.is_empty();
                if let Err(e) = teller.publish_in_flight(counts).await {
                    tracing::debug!("cannot share requests in flight: {e}");
                }
            }
        });
        let (publisher, stop, pool_runner) = (shared.clone(), shutdown.clone(), runner.clone());
        tracker.spawn(async move {
            if let (Ok(states), Some(tokens)) = (publisher.token_states().await, pool_runner.upstream().tokens()) {
                states.iter().for_each(|e| tokens.apply(e));
            }
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    event = rx.recv() => match event {
                        Some(event) => {
                            if let Err(e) = publisher.publish_token(event).await {
                                tracing::warn!("cannot share a token change: {e}");
                            }
                        }
                        None => return,
                    },
                }
            }
        });
    }
    let (beat, stop) = (shared.clone(), shutdown.clone());
    let cancel_queue = queue.clone();
    tracker.spawn(async move {
        loop {
            match beat.heartbeat().await {
                Ok(()) => match beat.claim_orphans().await {
                    Ok(records) if !records.is_empty() => recover(records, &tasks, &queue),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("cannot take over stopped replicas' tasks: {e}"),
                },
                Err(e) => tracing::warn!("shared store heartbeat failed: {e}"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
    tracker.spawn(async move {
        use futures_util::StreamExt;
        loop {
            match shared.client().get_async_pubsub().await {
                Ok(mut pubsub) => {
                    let channels = [
                        crate::shared::CANCEL_CHANNEL,
                        crate::shared::TOKENS_CHANNEL,
                        crate::shared::KEYS_CHANNEL,
                        crate::shared::CLAIMED_CHANNEL,
                        crate::shared::INFLIGHT_CHANNEL,
                    ];
                    if let Err(e) = pubsub.subscribe(&channels).await {
                        tracing::warn!("cannot subscribe to other replicas' news: {e}");
                    } else {
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                msg = messages.next() => match msg {
                                    Some(m) => news(&m, &shared, &cancel_queue, &runner, &keys),
                                    None => break,
                                },
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot listen for cancellations: {e}"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

/// One message from another replica: cancel a task this replica runs, or apply a token change.
fn news(m: &redis::Msg, shared: &crate::shared::Shared, queue: &TaskQueue, runner: &JobRunner, keys: &KeyRing) {
    let Ok(payload) = m.get_payload::<String>() else { return };
    if m.get_channel_name() == crate::shared::KEYS_CHANNEL {
        keys.forget_cached(&payload);
        return;
    }
    if m.get_channel_name() == crate::shared::INFLIGHT_CHANNEL {
        if let Ok(n) = serde_json::from_str::<crate::shared::InFlight>(&payload)
            && n.replica != shared.replica
            && let Some(tokens) = runner.upstream().tokens()
        {
            tokens.remote_in_flight(Some((&n.replica, n.counts)), IN_FLIGHT_LASTS);
        }
        return;
    }
    if m.get_channel_name() == crate::shared::CLAIMED_CHANNEL {
        if let Some((replica, id)) = payload.split_once(' ')
            && replica != shared.replica
        {
            queue.claimed_elsewhere(id);
        }
        return;
    }
    if m.get_channel_name() == crate::shared::CANCEL_CHANNEL {
        let (id, why) = payload.split_once('\n').unwrap_or((payload.as_str(), "cancelled by the client"));
        if queue.cancel_because(id, why).is_some() {
            tracing::info!(task = %id, "task cancelled through another replica");
        }
        return;
    }
    match serde_json::from_str::<crate::shared::TokenNews>(&payload) {
        Ok(n) if n.replica != shared.replica => {
            if let Some(tokens) = runner.upstream().tokens() {
                tokens.apply(&n.event);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!("unreadable token news: {e}"),
    }
}

/// Refreshes every token's quota from the upstream now and then (and once at start).
fn spawn_quota_refresh(tracker: &TaskTracker, shutdown: CancellationToken, runner: Arc<JobRunner>, every: Duration) {
    tracker.spawn(async move {
        loop {
            if let Some(tokens) = runner.upstream().tokens() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = tokens.refresh_quotas() => tracing::debug!(answered = n, "token quotas refreshed"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
}

/// Writes changed usage rows every few seconds; the last write happens at shutdown (`Server`).
fn spawn_usage_flush(tracker: &TaskTracker, shutdown: CancellationToken, usage: Arc<UsageBook>) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            if let Err(e) = usage.flush_now().await {
                tracing::error!("usage not saved (kept in memory, retried): {e}");
            }
        }
    });
}

/// Forgets finished tasks after `ttl` or beyond `max_finished`, checking a few times per TTL (at
/// least every 10 s).
fn spawn_reaper(
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    tasks: Arc<TaskStore>,
    idempotency: Arc<IdempotencyKeys>,
    ttl: Duration,
    max_finished: usize,
) {
    let tick = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let cutoff = crate::clock::now_ms().saturating_sub(ttl.as_millis() as u64);
            let n = tasks.reap(cutoff, max_finished);
            idempotency.reap();
            if n > 0 {
                tracing::debug!(reaped = n, "finished tasks past their TTL forgotten");
            }
        }
    });
}

fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "handler panicked");
    ApiError::internal("internal error; it has been logged with this request's x-request-id").into_response()
}

/// A gateway serving on a socket: what `main` runs and what tests start on an ephemeral port.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub fn start(cfg: Config, listener: TcpListener) -> Result<Self, String> {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let state = AppState::new(cfg)?;
        let shutdown = state.shutdown.clone();
        let router = state.router();
        let tracker = state.tracker.clone();
        let grace = Duration::from_secs(state.cfg.server.shutdown_grace_secs);
        let abort = state.abort.clone();
        let journal = state.tasks.journal().cloned();
        let usage_book = state.guard.usage.clone();
        // Connections and their HTTP/2 streams, apart from the app's background tasks: those must
        // outlive the last request (a task accepted just before shutdown still runs).
        let conns = TaskTracker::new();
        let opts = Arc::new(crate::server::ServeOptions::new(
            &server_limits(&state.cfg.server),
            state.metrics.clone(),
            &conns,
        )?);
        let signals = crate::server::Shutdown { stop: shutdown.clone(), kill: CancellationToken::new() };
        let task = tokio::spawn(async move {
            crate::server::accept_loop(listener, router, opts, signals.clone(), conns.clone()).await;
            // From here on: no new connections; one grace period for requests and running tasks.
            let deadline = tokio::time::Instant::now() + grace;
            conns.close();
            if tokio::time::timeout_at(deadline, conns.wait()).await.is_err() {
                tracing::warn!("grace period over: closing connections still open");
                signals.kill.cancel();
                conns.wait().await;
            }
            tracker.close();
            if tokio::time::timeout_at(deadline, tracker.wait()).await.is_err() {
                tracing::warn!("grace period over: stopping running tasks (they end `interrupted`)");
                abort.cancel();
                tracker.wait().await;
            }
            if let Err(e) = usage_book.flush_now().await {
                tracing::error!("usage not saved at shutdown: {e}");
            }
            if let Some(j) = journal {
                // Joining the writer thread blocks until its last batch is on disk.
                let _ = tokio::task::spawn_blocking(move || j.close()).await;
            }
            Ok(())
        });
        Ok(Self { addr, state, shutdown, task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stop accepting, finish in-flight requests and tracked tasks, then return.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}
