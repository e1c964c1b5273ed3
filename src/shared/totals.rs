//! The usage row replicas sum in the shared store.

/// One usage row (a key on a day): as `usage` counts it, the admin API shows it, and replicas sum it here.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Totals {
    pub requests: u64,
    pub images: u64,
    pub video_seconds: u64,
    pub errors: u64,
    pub rate_limited: u64,
}
