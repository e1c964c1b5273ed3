//! The router with its tower stack.
//!
//! Layer order, outermost first: the request id (the client's `x-request-id` when it is fit, else a
//! UUID; echoed on the response; credentials marked sensitive, `request_id.rs`) → trace span
//! carrying that id → catch panics as an OpenAI-shaped 500 → metrics. CORS (`cors.rs`) wraps the
//! public API; body limits and bearer auth sit on the routes that need them.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use super::cors::cors_layer;
use super::request_id::{REQUEST_ID, RequestIdLayer};
use crate::api;
use crate::api::gate::{require_admin, require_console};
use crate::api::state::AppState;
use crate::auth::{Refusal, RequireKey};
use crate::error::ApiError;

impl AppState {
    pub fn router(&self) -> Router {
        let limits = &self.cfg.server;
        let require = RequireKey::new(self.guard.clone(), Refusal::OpenAi);
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
            .route("/v1/videos/{id}/remix", post(api::video_ops::remix))
            .route("/v1/videos/edits", post(api::video_ops::edits))
            .route("/v1/videos/extensions", post(api::video_ops::extensions))
            .route("/v1/videos/characters", unsupported())
            .layer(DefaultBodyLimit::max(limits.max_upload_bytes))
            .route_layer(require.clone());
        let require_task = RequireKey::new(self.guard.clone(), Refusal::Task);
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
            .route("/admin/session", get(crate::api::admin::session::session))
            .route("/admin/logout", post(crate::api::admin::session::logout))
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
            .route("/admin/login", post(crate::api::admin::session::login))
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
            // Per route: it counts by the route matched.
            .layer(crate::metrics::TrackLayer(self.metrics.clone()))
    }

    /// The router inside the layers every request meets. They wrap the router as a whole, built
    /// once: `Router::layer` wraps each route, and axum clones a route's stack (a box per layer)
    /// for every request.
    pub fn app(&self) -> impl crate::server::App {
        ServiceBuilder::new()
            .map_response(IntoResponse::into_response)
            .layer(RequestIdLayer)
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request<_>| {
                        let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                    })
                    .on_response(DefaultOnResponse::new().level(Level::INFO)),
            )
            .layer(CatchPanicLayer::custom(panic_response))
            .service(self.router())
    }
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
