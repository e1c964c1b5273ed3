//! Prometheus metrics, kept per app instance (no global recorder, so several gateways in one process —
//! as in the tests — do not mix their numbers). Rendered in the text exposition format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::Request;
use axum::response::Response;
use dashmap::DashMap;
use tower::{Layer, Service};

use crate::HotMap;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Counts into the first bucket that holds `d` only; `render` makes the counts cumulative.
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Every status an HTTP response can carry (`http::StatusCode` is 100-999), one counter each.
const STATUSES: std::ops::Range<u16> = 100..1000;

/// Per route: requests by status, and latency. Counting is one atomic add in a fixed slot, with no
/// map lookup on the request path.
struct RouteStats {
    by_status: Box<[AtomicU64]>,
    latency: Histogram,
}

impl Default for RouteStats {
    fn default() -> Self {
        Self { by_status: STATUSES.map(|_| AtomicU64::new(0)).collect(), latency: Histogram::default() }
    }
}

impl RouteStats {
    fn record(&self, status: u16, elapsed: Duration) {
        if let Some(n) = self.by_status.get(usize::from(status.wrapping_sub(STATUSES.start))) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(elapsed);
    }

    /// (status, count) for every status answered at least once, in status order.
    fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        STATUSES.zip(self.by_status.iter()).map(|(s, n)| (s, n.load(Ordering::Relaxed))).filter(|(_, n)| *n > 0)
    }
}

#[derive(Default)]
pub struct Metrics {
    /// Keyed by route template; looked up by `&str` so the hot path allocates nothing.
    http: HotMap<String, RouteStats>,
    upstream: DashMap<(&'static str, &'static str), AtomicU64>,
    callbacks: DashMap<&'static str, AtomicU64>,
    /// Client connections open now (the server counts them).
    pub connections: std::sync::atomic::AtomicUsize,
    /// Connections the server closed for its limits, by reason (`idle`, `slow_body`, ...).
    closed: DashMap<&'static str, AtomicU64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HttpTotals {
    pub requests: u64,
    pub server_errors: u64,
    pub client_errors: u64,
    pub rate_limited: u64,
}

/// Point-in-time figures the app adds when rendering (tasks by state, queue depth, token pool).
pub struct Gauges {
    pub tasks: Vec<(&'static str, usize)>,
    pub queue_depth: usize,
    pub tokens: Vec<(&'static str, usize)>,
}

impl Metrics {
    /// The server closed a connection for one of its limits.
    pub fn closed(&self, reason: &'static str) {
        self.closed.entry(reason).or_default().fetch_add(1, Ordering::Relaxed);
    }

    pub fn http(&self, route: &str, status: u16, elapsed: Duration) {
        match self.http.get(route) {
            Some(stats) => stats.record(status, elapsed),
            None => self.http.entry(route.to_owned()).or_default().record(status, elapsed),
        }
    }

    /// One upstream call attempt, by operation (`image`, `edit`, `video`) and outcome class.
    pub fn upstream(&self, operation: &'static str, outcome: &'static str) {
        self.upstream.entry((operation, outcome)).or_default().fetch_add(1, Ordering::Relaxed);
    }

    /// One callback delivery attempt: `delivered`, `retry`, `abandoned` (410/forbidden), `given_up`.
    pub fn callback(&self, outcome: &'static str) {
        self.callbacks.entry(outcome).or_default().fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered so far, by class, summed over routes: (all, 5xx, 4xx but 429, 429). The
    /// console's overview turns two samples into rates.
    pub fn totals(&self) -> HttpTotals {
        let mut t = HttpTotals::default();
        for route in self.http.iter() {
            for (status, n) in route.statuses() {
                t.requests += n;
                match status {
                    429 => t.rate_limited += n,
                    500.. => t.server_errors += n,
                    400.. => t.client_errors += n,
                    _ => {}
                }
            }
        }
        t
    }

    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let mut routes: Vec<String> = self.http.iter().map(|e| e.key().clone()).collect();
        routes.sort();
        header(&mut out, "grok2api_http_requests_total", "counter", "HTTP requests by route template and status.");
        for route in &routes {
            let Some(stats) = self.http.get(route) else { continue };
            for (status, n) in stats.statuses() {
                let _ =
                    writeln!(out, "grok2api_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}", esc(route));
            }
        }
        header(
            &mut out,
            "grok2api_http_request_duration_seconds",
            "histogram",
            "HTTP request latency by route template.",
        );
        for route in &routes {
            let Some(stats) = self.http.get(route) else { continue };
            let h = &stats.latency;
            let r = esc(route);
            let mut n = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                n += h.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(out, "grok2api_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{le}\"}} {n}");
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "grok2api_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {count}");
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "grok2api_http_request_duration_seconds_sum{{route=\"{r}\"}} {sum}");
            let _ = writeln!(out, "grok2api_http_request_duration_seconds_count{{route=\"{r}\"}} {count}");
        }
        header(&mut out, "grok2api_open_connections", "gauge", "Client connections open now.");
        let _ = writeln!(out, "grok2api_open_connections {}", self.connections.load(Ordering::Relaxed));
        header(
            &mut out,
            "grok2api_connections_closed_total",
            "counter",
            "Client connections the server closed for its limits, by reason.",
        );
        let mut closed: Vec<_> = self.closed.iter().map(|e| (*e.key(), e.value().load(Ordering::Relaxed))).collect();
        closed.sort_unstable();
        for (reason, n) in closed {
            let _ = writeln!(out, "grok2api_connections_closed_total{{reason=\"{reason}\"}} {n}");
        }
        header(&mut out, "grok2api_tasks", "gauge", "Async tasks held, by state.");
        for (state, n) in &gauges.tasks {
            let _ = writeln!(out, "grok2api_tasks{{state=\"{state}\"}} {n}");
        }
        header(&mut out, "grok2api_task_queue_depth", "gauge", "Accepted tasks waiting for a worker.");
        let _ = writeln!(out, "grok2api_task_queue_depth {}", gauges.queue_depth);
        header(
            &mut out,
            "grok2api_upstream_calls_total",
            "counter",
            "Upstream call attempts by operation and outcome.",
        );
        let mut up: Vec<_> = self.upstream.iter().map(|e| (*e.key(), e.value().load(Ordering::Relaxed))).collect();
        up.sort();
        for ((op, outcome), n) in up {
            let _ = writeln!(out, "grok2api_upstream_calls_total{{operation=\"{op}\",outcome=\"{outcome}\"}} {n}");
        }
        header(&mut out, "grok2api_upstream_tokens", "gauge", "Upstream tokens by health.");
        for (state, n) in &gauges.tokens {
            let _ = writeln!(out, "grok2api_upstream_tokens{{state=\"{state}\"}} {n}");
        }
        header(&mut out, "grok2api_callback_deliveries_total", "counter", "Callback delivery attempts by outcome.");
        let mut cb: Vec<_> = self.callbacks.iter().map(|e| (*e.key(), e.value().load(Ordering::Relaxed))).collect();
        cb.sort();
        for (outcome, n) in cb {
            let _ = writeln!(out, "grok2api_callback_deliveries_total{{outcome=\"{outcome}\"}} {n}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Counts every request by its route template (not the raw path, which would explode the label set).
/// A tower layer rather than `from_fn`: it wraps every route, and `from_fn` boxes a future and clones
/// the inner service on each request (seen in the profiles, docs/benchmarks.md).
#[derive(Clone)]
pub struct TrackLayer(pub Arc<Metrics>);

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track { inner, metrics: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for Track<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // MatchedPath holds an Arc<str>: cloning it is a reference count, not a copy.
        let route = req.extensions().get::<MatchedPath>().cloned();
        Tracked { inner: self.inner.call(req), route, started: Instant::now(), metrics: self.metrics.clone() }
    }
}

pin_project_lite::pin_project! {
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
        started: Instant,
        metrics: Arc<Metrics>,
    }
}

impl<F, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Ok(resp) = &out {
            let route = this.route.as_ref().map_or("unmatched", |m| m.as_str());
            this.metrics.http(route, resp.status().as_u16(), this.started.elapsed());
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.http("/v1/models", 200, Duration::from_millis(3));
        m.http("/v1/models", 200, Duration::from_millis(30));
        m.upstream("image", "ok");
        m.callback("delivered");
        let text = m.render(&Gauges { tasks: vec![("pending", 2)], queue_depth: 1, tokens: vec![("active", 3)] });
        assert!(text.contains("grok2api_http_requests_total{route=\"/v1/models\",status=\"200\"} 2"));
        assert!(text.contains("grok2api_http_request_duration_seconds_bucket{route=\"/v1/models\",le=\"0.005\"} 1"));
        assert!(text.contains("grok2api_http_request_duration_seconds_bucket{route=\"/v1/models\",le=\"+Inf\"} 2"));
        assert!(text.contains("grok2api_tasks{state=\"pending\"} 2"));
        assert!(text.contains("grok2api_upstream_calls_total{operation=\"image\",outcome=\"ok\"} 1"));
        assert!(text.contains("grok2api_upstream_tokens{state=\"active\"} 3"));
        assert!(text.contains("grok2api_callback_deliveries_total{outcome=\"delivered\"} 1"));
        m.http("/v1/x", 429, Duration::from_millis(1));
        m.http("/v1/x", 404, Duration::from_millis(1));
        m.http("/v1/x", 502, Duration::from_millis(1));
        // The largest status `http` can carry is counted too, like any other.
        m.http("/v1/x", 999, Duration::from_millis(1));
        let t = m.totals();
        assert_eq!((t.requests, t.server_errors, t.client_errors, t.rate_limited), (6, 2, 1, 1));
        let text = m.render(&Gauges { tasks: vec![], queue_depth: 0, tokens: vec![] });
        assert!(text.contains("grok2api_http_requests_total{route=\"/v1/x\",status=\"999\"} 1"));
        assert!(text.find("status=\"404\"").unwrap() < text.find("status=\"429\"").unwrap(), "statuses in order");
    }
}
