//! The models this gateway serves and what each is for. Ground-level: the HTTP layer, the key guard,
//! console keys and the console read it, and it imports nothing of theirs.

/// What a model id is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Image,
    Edit,
    Video,
}

impl Capability {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Image => "text-to-image (/v1/images/generations)",
            Self::Edit => "image edits (/v1/images/edits)",
            Self::Video => "video (/v1/chat/completions)",
        }
    }
}

/// (canonical id, alias, capability)
pub const MODELS: &[(&str, &str, Capability)] = &[
    ("grok-imagine-1.0", "grok-imagine-image", Capability::Image),
    ("grok-imagine-1.0-edit", "grok-imagine-image-edit", Capability::Edit),
    ("grok-imagine-1.0-video", "grok-imagine-video", Capability::Video),
];

/// The canonical id of a model id or alias and what it does; `None` for models not served here.
pub fn lookup(model: &str) -> Option<(&'static str, Capability)> {
    MODELS.iter().find(|(id, alias, _)| *id == model || *alias == model).map(|(id, _, cap)| (*id, *cap))
}

/// The canonical id of a model id or alias, whatever its capability.
pub fn canonical_model(model: &str) -> Option<&'static str> {
    lookup(model).map(|(id, _)| id)
}

/// The model a generation route serves: each route makes one kind of media, and each kind has one
/// model, so a key's model allowlist is decided before the body is read. `None` for everything else.
pub fn model_of_route(method: &axum::http::Method, path: &str) -> Option<&'static str> {
    if method != axum::http::Method::POST {
        return None;
    }
    let capability = match path {
        "/v1/images/generations" | "/v1/images/generations/async" | "/v1/images/tasks" => Capability::Image,
        "/v1/images/edits" => Capability::Edit,
        "/v1/chat/completions"
        | "/v1/video/generations/async"
        | "/v1/video/tasks"
        | "/v1/videos"
        | "/v1/videos/generations"
        | "/v1/videos/edits"
        | "/v1/videos/extensions" => Capability::Video,
        p if p.starts_with("/v1/videos/") && p.ends_with("/remix") => Capability::Video,
        _ => return None,
    };
    MODELS.iter().find(|(_, _, c)| *c == capability).map(|(id, _, _)| *id)
}
