//! `GET /openapi.json`: the OpenAPI 3.1 description of the whole HTTP surface, generated at build
//! time from the handlers' `#[utoipa::path]` attributes and the types they read and write. The few
//! bodies a handler reads field by field (multipart forms, and bodies whose fields take more than one
//! JSON type) are described by the form types below; so are event streams (one schema per event, as
//! schemathesis reads `text/event-stream`) and served files. What the layers in front of every
//! handler answer (auth, body rules, path and query rejections, the admin gate) is added to each
//! operation by `LayerAnswers`. tests/openapi.rs checks real responses against the document, and
//! tests/schemathesis.rs fuzzes the binary with it.

use std::collections::btree_map::Entry;

use axum::Json;
use axum::http::Method;
use utoipa::openapi::RefOr;
use utoipa::openapi::content::Content;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, Ref, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{admin, chat, edits, events, files, health, images, models, responses, tasks, videos, xai_videos};

/// `POST /v1/images/edits` (multipart).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EditForm {
    /// `grok-imagine-1.0-edit` (alias `grok-imagine-image-edit`).
    pub model: String,
    pub prompt: String,
    /// 1–3 PNG/JPEG/WebP files (`image` or `image[]`), 20 MiB each.
    #[schema(value_type = Vec<String>, format = Binary)]
    pub image: Vec<Vec<u8>>,
    pub n: Option<u32>,
    pub size: Option<String>,
    /// `url` (default) or `b64_json`.
    pub response_format: Option<String>,
    pub stream: Option<bool>,
    /// `png`, `jpeg` or `webp`.
    pub output_format: Option<String>,
    pub output_compression: Option<u8>,
    pub partial_images: Option<u8>,
}

/// `POST /v1/images/edits` as JSON, as xAI's clients send it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EditJsonForm {
    /// `grok-imagine-1.0-edit`, or the image model (xAI names one model for both).
    pub model: String,
    pub prompt: String,
    /// One input: `{"url": …}` (https URL, data URL, or one of this gateway's image links) or the URL.
    #[schema(value_type = Option<Object>)]
    pub image: Option<serde_json::Value>,
    /// Up to 3 inputs, each like `image`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub images: Option<Vec<serde_json::Value>>,
    pub n: Option<u32>,
    /// `auto` (default: the input's shape) or a size / ratio as on generations.
    pub size: Option<String>,
    /// xAI's `1:1`, `16:9`, `9:16`, `3:2`, `2:3` or `auto`.
    pub aspect_ratio: Option<String>,
    pub response_format: Option<String>,
    pub stream: Option<bool>,
    pub output_format: Option<String>,
}

/// `POST /v1/video/generations/async`: the chat-completions body, or the bare form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VideoTaskForm {
    pub model: String,
    /// The chat form; or leave it out and give `prompt` (and the fields below) directly.
    pub messages: Option<Vec<chat::ChatMessage>>,
    #[schema(value_type = Option<Object>)]
    pub video_config: Option<serde_json::Value>,
    pub prompt: Option<String>,
    pub aspect_ratio: Option<String>,
    /// Whole seconds, 1–15.
    pub video_length: Option<u32>,
    pub resolution_name: Option<String>,
    pub preset: Option<String>,
    /// A first-frame image: https URL, data URL, or one of this gateway's image links.
    pub image_url: Option<String>,
    /// Several images: reference-to-video (2–7).
    pub image_urls: Option<Vec<String>>,
    /// Where to POST the signed result (Standard Webhooks).
    pub callback_url: Option<String>,
}

/// `POST /v1/images/generations/async`: the images body plus `callback_url`.
#[derive(ToSchema, serde::Deserialize)]
#[allow(dead_code)]
pub struct ImageTaskForm {
    #[serde(flatten)]
    pub request: images::ImageGenerationRequest,
    pub callback_url: Option<String>,
}

/// `POST /v1/videos` (JSON, or multipart with `input_reference` as a file).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CreateVideoForm {
    pub prompt: String,
    /// Our video model or alias (default `grok-imagine-1.0-video`); `sora-*` is refused.
    pub model: Option<String>,
    /// Whole seconds 1–15, as a string or a number (default `4`).
    #[schema(value_type = Option<String>)]
    pub seconds: Option<serde_json::Value>,
    /// `720x1280` (default), `1280x720`, `1024x1792`, `1792x1024`, `1080x720`, `720x1080`, `720x720`,
    /// `854x480`, `480x854`, `720x480`, `480x720`, `480x480`.
    pub size: Option<String>,
    /// A file part (multipart), or `{"image_url": …}`.
    #[schema(value_type = Option<Object>)]
    pub input_reference: Option<serde_json::Value>,
    pub callback_url: Option<String>,
}

/// `POST /v1/videos/generations` (xAI's body).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct XaiCreateForm {
    /// Required except with `image`.
    pub prompt: Option<String>,
    pub model: Option<String>,
    /// 1–15 (default 8), number or numeric string; `seconds` is an alias.
    #[schema(value_type = Option<u32>)]
    pub duration: Option<serde_json::Value>,
    /// `16:9` (default), `9:16`, `3:2`, `2:3`, `1:1`.
    pub aspect_ratio: Option<String>,
    /// `480p` (default) or `720p`.
    pub resolution: Option<String>,
    /// `{"url": …}`: the first frame.
    #[schema(value_type = Option<Object>)]
    pub image: Option<serde_json::Value>,
    /// 1–7 `{"url": …}`: reference-to-video, at most 10 s.
    #[schema(value_type = Option<Vec<Object>>)]
    pub reference_images: Option<Vec<serde_json::Value>>,
}

/// `GET /v1/videos/{id}`: the shape of the API that made the video. `anyOf`, not the `oneOf` an
/// untagged enum derives: a failed OpenAI Video object is also a valid xAI answer, and that is fine.
pub struct VideoAnswer;

impl utoipa::PartialSchema for VideoAnswer {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .description(Some(
                "The Video object of the OpenAI API, or xAI's poll answer: the shape of the API that made it.",
            ))
            .item(Ref::from_schema_name("VideoObject"))
            .item(Ref::from_schema_name("XaiVideoStatus"))
            .into()
    }
}

impl ToSchema for VideoAnswer {}

/// `DELETE /v1/{kind}/tasks/{id}`: the cancelled task, or the forgotten one's id.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum TaskDeleteAnswer {
    Cancelled(crate::error::Envelope<crate::tasks::TaskView>),
    Forgotten(crate::error::Envelope<tasks::TaskDeleted>),
}

/// One server-sent event as a stream carries it: `event` names it, `id` orders it, `data` is its
/// payload (JSON, and `[DONE]` at the end of a chat stream).
fn sse_event(names: Option<&[&str]>, data: Option<&str>) -> RefOr<Schema> {
    let mut payload = ObjectBuilder::new().schema_type(Type::String);
    if let Some(schema) = data {
        // What `data` holds, once parsed (JSON Schema's content keywords).
        payload = payload.content_media_type("application/json").extensions(Some(
            [("contentSchema", serde_json::json!({"$ref": format!("#/components/schemas/{schema}")}))]
                .into_iter()
                .collect(),
        ));
    }
    let mut event = ObjectBuilder::new().schema_type(Type::String);
    if let Some(names) = names {
        event = event.enum_values(Some(names.iter().copied()));
    }
    ObjectBuilder::new()
        .property("event", event)
        .property(
            "id",
            ObjectBuilder::new().schema_type(Type::String).description(Some("send back as `Last-Event-ID`")),
        )
        .property("data", payload)
        .required("data")
        .into()
}

/// An event of `GET /v1/{kind}/tasks/{id}/events`: the task's status and its view.
pub struct TaskEvent;

impl utoipa::PartialSchema for TaskEvent {
    fn schema() -> RefOr<Schema> {
        sse_event(Some(&["pending", "processing", "success", "failed"]), Some("TaskView"))
    }
}

impl ToSchema for TaskEvent {}

/// An event of `GET /v1/videos/{id}/events`: `video.<status>` with the Video object, or xAI's status
/// with its poll answer.
pub struct VideoEvent;

impl utoipa::PartialSchema for VideoEvent {
    fn schema() -> RefOr<Schema> {
        sse_event(None, Some("VideoAnswer"))
    }
}

impl ToSchema for VideoEvent {}

/// An event of a generation stream (`stream: true` on images, edits and chat): JSON chunks, named
/// on the images streams, and `[DONE]` last on chat.
pub struct StreamEvent;

impl utoipa::PartialSchema for StreamEvent {
    fn schema() -> RefOr<Schema> {
        sse_event(None, None)
    }
}

impl ToSchema for StreamEvent {}

/// `{kind}` of the task routes (`/v1/{kind}/tasks/{id}`).
#[derive(ToSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum TaskSegment {
    Video,
    Images,
}

/// `{kind}` of a file link (`/v1/files/{kind}/{name}`).
#[derive(ToSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum FileKind {
    Image,
    Video,
}

/// The header every task create reads (`tasks::submit`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKey {
    /// 1–255 visible ASCII characters (else 400 `invalid_idempotency_key`): a repeat with the same
    /// body answers the first task, one with another body is a 422 `idempotency_key_reused`.
    #[param(rename = "Idempotency-Key")]
    pub key: Option<String>,
}

/// The conditional and range headers a stored file is served with (`files::serve`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct MediaHeaders {
    /// One range, `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX` (206, or 416 past the end).
    #[param(rename = "Range")]
    pub range: Option<String>,
    /// The `ETag` of a copy the client holds (304 when it still matches).
    #[param(rename = "If-None-Match")]
    pub if_none_match: Option<String>,
}

/// What serving a stored file answers (`files::serve`): the bytes, a range of them, a redirect to
/// object storage, 304 for a held copy, 416 for a range past the end, 503 when the store fails.
pub struct MediaAnswers;

impl utoipa::IntoResponses for MediaAnswers {
    fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
        let bytes = || Content::new(Some(ObjectBuilder::new().schema_type(Type::String).format(Some(binary()))));
        let media = |description: &str| {
            ["image/png", "image/jpeg", "image/webp", "video/mp4"]
                .into_iter()
                .fold(ResponseBuilder::new().description(description), |r, t| r.content(t, bytes()))
                .build()
        };
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                .build()
        };
        [
            ("200", media("the file (`ETag`, `Accept-Ranges: bytes`)")),
            ("206", media("the requested range (`Content-Range`)")),
            ("302", ResponseBuilder::new().description("a presigned link to object storage (`Location`)").build()),
            (
                "304",
                ResponseBuilder::new().description("the copy the client holds is current (`If-None-Match`)").build(),
            ),
            ("416", error("the range starts past the end (`Content-Range: bytes */SIZE`)")),
            ("503", error("the media store is failing (`media_store_unavailable`)")),
        ]
        .into_iter()
        .map(|(status, r)| (status.to_owned(), r.into()))
        .collect()
    }
}

fn binary() -> SchemaFormat {
    SchemaFormat::KnownFormat(KnownFormat::Binary)
}

/// The schemes: client keys on `/v1`, and the admin key or a console session on `/admin`.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A client key: `auth.api_keys`, or one made in the console."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin key (`admin.api_key`); client keys are refused on `/admin`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::api::gate::COOKIE,
                "A console session (`POST /admin/login`); changes also need its `X-CSRF-Token`.",
            ))),
        );
    }
}

/// What an operation can answer besides its handler's own statuses: those of the layers in front of
/// it (the key guard, the body rules, the path and query extractors, the admin gate). They are added
/// here from what each operation declares (its security, body and parameters) so that a new route
/// cannot forget them; a status the operation documents itself is left as it is. Task endpoints
/// (tag `tasks`) answer errors in the envelope, every other route in the OpenAI error shape.
struct LayerAnswers;

impl Modify for LayerAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let global = openapi.security.clone().unwrap_or_default();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let methods = [
                (Method::GET, &mut item.get),
                (Method::POST, &mut item.post),
                (Method::PUT, &mut item.put),
                (Method::PATCH, &mut item.patch),
                (Method::DELETE, &mut item.delete),
            ];
            for (method, op) in methods {
                if let Some(op) = op.as_mut() {
                    layer_answers(path, &method, op, &global);
                }
            }
        }
    }
}

fn layer_answers(path: &str, method: &Method, op: &mut Operation, global: &[SecurityRequirement]) {
    let admin = path == "/admin" || path.starts_with("/admin/");
    if admin && op.security.is_none() {
        op.security = Some(vec![
            SecurityRequirement::new("admin_key", NO_SCOPES),
            SecurityRequirement::new("admin_session", NO_SCOPES),
        ]);
    }
    let keyed = op.security.as_deref().unwrap_or(global).iter().any(|r| *r != SecurityRequirement::default());
    let envelope = op.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == "tasks"));
    let schema = if envelope { "TaskErrorBody" } else { "ErrorBody" };
    let params = |within: ParameterIn| op.parameters.iter().flatten().any(|p| p.parameter_in == within);
    let (in_path, in_query) = (params(ParameterIn::Path), params(ParameterIn::Query));
    let body = op.request_body.is_some();
    let idempotent = op.parameters.iter().flatten().any(|p| p.name == "Idempotency-Key");
    let mut add = |status: u16, description: &str, retry: bool| match op.responses.responses.entry(status.to_string()) {
        // The operation's own word wins; it only gets a description if it gave none.
        Entry::Occupied(mut own) => {
            if let RefOr::T(own) = own.get_mut()
                && own.description.is_empty()
            {
                own.description = description.to_owned();
            }
        }
        Entry::Vacant(slot) => {
            let mut answer = ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(Ref::from_schema_name(schema))));
            if retry {
                answer = answer.header(
                    "Retry-After",
                    Header::new(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))),
                );
            }
            slot.insert(answer.build().into());
        }
    };
    let mut bad_request = Vec::new();
    if in_path {
        bad_request.push("a path segment is not UTF-8 once percent-decoded (`invalid_path`)");
    }
    if in_query {
        bad_request.push("the query string cannot be read: a repeated or malformed parameter (`invalid_query`)");
    }
    if body {
        bad_request.push("the body cannot be read (`invalid_body`, `invalid_multipart`)");
    }
    if idempotent {
        bad_request.push("an `Idempotency-Key` that is not 1–255 visible ASCII characters (`invalid_idempotency_key`)");
    }
    if !bad_request.is_empty() {
        add(400, &bad_request.join("; "), false);
    }
    if admin {
        add(404, "no admin key is configured: the admin API and the console do not exist", false);
    }
    if keyed {
        let who = if admin { "admin key or console session" } else { "API key" };
        add(401, &format!("missing, wrong, expired or revoked {who} (`invalid_api_key`)"), false);
        if admin && *method != Method::GET {
            add(403, "a console session without its `X-CSRF-Token` (`csrf_failed`)", false);
        }
        if !admin && super::model_of_route(method, path).is_some() {
            add(403, "the key may not use this route's model (`model_not_allowed`)", false);
        }
        add(429, "too many requests for this key, or too many wrong keys from this address", true);
    }
    if body {
        add(408, "the body arrived too slowly (`request_timeout`)", false);
        add(413, "the body is over the route's size limit, or nests or counts too many JSON values", false);
        add(415, "a `Content-Type` this route does not read (`unsupported_media_type`)", false);
        let reused = if idempotent { "; or the `Idempotency-Key` was used before with another body" } else { "" };
        add(422, &format!("the body is not valid JSON, or lacks a field or has one of the wrong type{reused}"), false);
    }
    if body || (keyed && !admin) {
        add(
            503,
            "the server is busy reading other bodies, or a store it depends on (the shared store, the journal) \
             is failing: retry after `Retry-After`",
            true,
        );
    }
}

const NO_SCOPES: [&str; 0] = [];

#[derive(OpenApi)]
#[openapi(
    info(title = "grok2api", description = "Grok Imagine behind OpenAI-compatible endpoints, async tasks, and the OpenAI and xAI video APIs."),
    modifiers(&Security, &LayerAnswers),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail, crate::error::TaskErrorBody, TaskEvent, VideoEvent,
        StreamEvent, crate::tasks::TaskView, VideoAnswer, videos::VideoObject, xai_videos::XaiVideoStatus, TaskSegment,
        FileKind)),
    security(("api_key" = [])),
    paths(
        models::list, models::get,
        images::generations, edits::edits, chat::completions, responses::create,
        tasks::create_video, tasks::create_image, tasks::status, tasks::result, tasks::list_video,
        tasks::list_images, tasks::delete, events::task_events,
        videos::create, videos::retrieve, videos::list, videos::delete, videos::content, videos::unsupported,
        events::video_events, xai_videos::create,
        files::get_file,
        health::healthz, health::readyz, health::metrics,
        admin::tokens::list_tokens, admin::tokens::add_tokens, admin::tokens::remove_token,
        admin::tokens::refresh_tokens, admin::tokens::import_tokens, admin::tokens::export_tokens,
        admin::tokens::patch_token, admin::tokens::refresh_token, admin::tokens::bulk,
        admin::keys::list, admin::keys::create, admin::keys::revoke, admin::keys::rotate,
        admin::usage::list, admin::usage::csv, admin::tasks::list, admin::tasks::detail, admin::tasks::cancel,
        admin::tasks::redeliver, admin::overview::overview,
        crate::api::admin::session::login, crate::api::admin::session::logout, crate::api::admin::session::session,
        openapi_json,
    )
)]
pub struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "this document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn operations() -> Vec<(String, String, Value)> {
        let doc = serde_json::to_value(super::document()).unwrap();
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                ops.push((method.to_uppercase(), path.clone(), op.clone()));
            }
        }
        assert!(ops.len() > 40, "{}", ops.len());
        ops
    }

    #[test]
    fn every_operation_lists_what_the_layers_in_front_of_it_answer() {
        let doc = serde_json::to_value(super::document()).unwrap();
        assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
        for (method, path, op) in operations() {
            let has = |status: &str| op["responses"][status].is_object();
            let open = op["security"].as_array().is_some_and(|s| s.iter().all(|r| r.as_object().unwrap().is_empty()));
            let name = format!("{method} {path}");
            if !open {
                assert!(has("401") && has("429"), "{name} lacks 401/429");
            }
            if path.starts_with("/admin") {
                assert!(has("404"), "{name} lacks the 404 of a gateway without an admin key");
            } else if !open {
                assert!(has("503"), "{name} lacks 503");
            }
            if super::super::model_of_route(&method.parse().unwrap(), &path).is_some() {
                assert!(has("403"), "{name} lacks 403 model_not_allowed");
            }
            if op["requestBody"].is_object() {
                for status in ["400", "408", "413", "415", "422", "503"] {
                    assert!(has(status), "{name} reads a body and lacks {status}");
                }
            }
            let within = |place: &str| op["parameters"].as_array().is_some_and(|p| p.iter().any(|p| p["in"] == place));
            if within("path") || within("query") {
                assert!(has("400"), "{name} lacks the 400 of a path or query it cannot read");
            }
        }
        assert!(operations().iter().any(|(_, path, op)| path == "/healthz" && op["responses"]["401"].is_null()));
    }

    #[test]
    fn every_reference_resolves() {
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = serde_json::to_value(super::document()).unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 100, "{}", found.len());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(doc["components"]["schemas"][name].is_object(), "{r} is not in the document");
        }
    }

    #[test]
    fn errors_are_json_in_the_shape_of_their_route() {
        for (method, path, op) in operations() {
            let envelope = op["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "tasks"));
            for (status, answer) in op["responses"].as_object().unwrap() {
                if status.as_str() < "400" || (path == "/readyz" && status == "503") {
                    continue;
                }
                let content = answer["content"].as_object().unwrap_or_else(|| panic!("{method} {path} {status}"));
                assert_eq!(content.keys().collect::<Vec<_>>(), ["application/json"], "{method} {path} {status}");
                let schema = content["application/json"]["schema"]["$ref"].as_str().unwrap_or_default();
                let ok = if envelope {
                    schema.ends_with("/TaskErrorBody") || (status == "409" && schema.ends_with("/Envelope_TaskView"))
                } else {
                    schema.ends_with("/ErrorBody")
                };
                assert!(ok, "{method} {path} {status} answers {schema:?}");
            }
        }
    }
}
