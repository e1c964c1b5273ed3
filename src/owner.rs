//! Who a request, a task or a usage row belongs to. A noun of its own, apart from the `/v1` guard that
//! finds it, so the task model, the shared store, limits and usage can name an owner without reaching
//! the HTTP layer.

use std::sync::Arc;

/// Who is calling: a stable, non-secret id derived from the API key (owner of tasks, rate-limit bucket).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(pub Arc<str>);
