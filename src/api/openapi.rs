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
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::{Modify, OpenApi};

use super::schema::{FileKind, StreamEvent, TaskEvent, TaskSegment, VideoAnswer, VideoEvent};
use super::{
    admin, chat, edits, events, files, health, images, models, responses, tasks, video_ops, videos, xai_videos,
};

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
        events::video_events, xai_videos::create, video_ops::edits, video_ops::extensions, video_ops::remix,
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
