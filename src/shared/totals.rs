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

impl Totals {
    /// The fields' names, in the order of `values` (JSON, Redis hash fields, CSV columns).
    pub const NAMES: [&'static str; 5] = ["requests", "images", "video_seconds", "errors", "rate_limited"];

    pub fn values(&self) -> [u64; 5] {
        [self.requests, self.images, self.video_seconds, self.errors, self.rate_limited]
    }

    pub fn from_values([requests, images, video_seconds, errors, rate_limited]: [u64; 5]) -> Self {
        Self { requests, images, video_seconds, errors, rate_limited }
    }

    pub fn add(&mut self, other: &Totals) {
        let (mine, theirs) = (self.values(), other.values());
        *self = Self::from_values(std::array::from_fn(|i| mine[i] + theirs[i]));
    }
}
