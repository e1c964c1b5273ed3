//! Composition: the app's services built from the configuration, and the loops they need started.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::duties::{
    recover, spawn_quota_refresh, spawn_reaper, spawn_replica_duties, spawn_replica_report, spawn_usage_flush,
};
use crate::api;
use crate::api::gate::AdminGate;
use crate::api::state::{AppState, Inner};
use crate::auth::Guard;
use crate::config::Config;
use crate::keys::KeyRing;
use crate::limits::RateLimiter;
use crate::media::MediaStore;
use crate::metrics::Metrics;
use crate::net::FetchPolicy;
use crate::runner::JobRunner;
use crate::runner::queue::{Settings as QueueSettings, Signals, TaskQueue};
use crate::runner::service::TaskService;
use crate::state_db::StateDb;
use crate::tasks::callbacks::{CallbackSettings, decode_secret};
use crate::tasks::journal::Journal;
use crate::tasks::store::TaskStore;
use crate::upstream::Upstream;
use crate::usage::UsageBook;

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
            Some(url) => Some(crate::shared::SharedStore::open(
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
            (Some(shared), _) => (Some(Arc::new(Journal::spawn(shared.journal_writer())?)), Vec::new()),
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
                shared.clone(),
            );
        }
        spawn_usage_flush(&tracker, shutdown.clone(), usage);
        let service = Arc::new(TaskService::new(tasks.clone(), queue.clone(), shared.clone()));
        spawn_reaper(
            &tracker,
            shutdown.clone(),
            tasks.clone(),
            service.clone(),
            Duration::from_secs(cfg.tasks.ttl_secs),
            cfg.tasks.max_finished.max(1),
        );
        let report = (shared, tracker.clone(), shutdown.clone());
        let state = Self::from(Inner {
            tasks,
            queue,
            service,
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
        });
        if let (Some(shared), tracker, shutdown) = report {
            spawn_replica_report(&tracker, shutdown, shared, state.clone());
        }
        Ok(state)
    }
}
