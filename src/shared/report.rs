//! What each replica says of itself every few seconds, so the console of any replica shows the
//! cluster: counters summed, and a row per replica.

use std::collections::BTreeMap;

/// How often a replica reports, and how long a report stands for a live replica.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(2);
pub const LASTS: std::time::Duration = std::time::Duration::from_secs(10);

/// A replica's own figures: what its console's overview shows, and what it reports to the others.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Figures {
    /// When they were taken (unix ms).
    pub at: u64,
    pub uptime_secs: u64,
    /// Every HTTP answer so far (the console's own polling included).
    pub requests_total: u64,
    /// 5xx answers.
    pub errors_total: u64,
    /// 4xx answers other than 429.
    pub client_errors_total: u64,
    pub rate_limited_total: u64,
    pub queue_depth: usize,
    /// Tasks this replica holds, by state.
    pub tasks: BTreeMap<String, usize>,
    /// Its view of the token pool, by state.
    pub tokens: BTreeMap<String, usize>,
}

/// One replica's latest word about itself.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReplicaReport {
    pub replica: String,
    #[serde(flatten)]
    pub figures: Figures,
    /// Its requests in flight upstream.
    pub in_flight: u32,
    /// Tokens it sees in a state other than `active` (id → state), at most `MAX_TOKEN_STATES`: how
    /// each token looks from every replica.
    #[serde(default)]
    pub token_states: BTreeMap<String, String>,
}

pub const MAX_TOKEN_STATES: usize = 1000;

/// The cluster's counters: every live replica's summed.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ClusterTotals {
    pub replicas: usize,
    pub requests_total: u64,
    pub errors_total: u64,
    pub client_errors_total: u64,
    pub rate_limited_total: u64,
    pub queue_depth: usize,
    pub in_flight: u32,
    pub tasks: BTreeMap<String, usize>,
}

impl ClusterTotals {
    pub fn of(reports: &[ReplicaReport]) -> Self {
        let mut t = ClusterTotals { replicas: reports.len(), ..Self::default() };
        for r in reports.iter().map(|r| &r.figures) {
            t.requests_total += r.requests_total;
            t.errors_total += r.errors_total;
            t.client_errors_total += r.client_errors_total;
            t.rate_limited_total += r.rate_limited_total;
            t.queue_depth += r.queue_depth;
            for (state, n) in &r.tasks {
                *t.tasks.entry(state.clone()).or_default() += n;
            }
        }
        t.in_flight = reports.iter().map(|r| r.in_flight).sum();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_is_every_replicas_counters_summed() {
        let one = ReplicaReport {
            figures: Figures {
                requests_total: 10,
                errors_total: 1,
                tasks: [("success".to_string(), 3)].into(),
                ..Figures::default()
            },
            in_flight: 2,
            ..ReplicaReport::default()
        };
        let two = ReplicaReport {
            figures: Figures {
                requests_total: 5,
                rate_limited_total: 4,
                tasks: [("success".to_string(), 1), ("failed".to_string(), 2)].into(),
                ..Figures::default()
            },
            ..ReplicaReport::default()
        };
        let t = ClusterTotals::of(&[one, two]);
        assert_eq!((t.replicas, t.requests_total, t.errors_total, t.rate_limited_total, t.in_flight), (2, 15, 1, 4, 2));
        assert_eq!(t.tasks, [("success".to_string(), 4), ("failed".to_string(), 2)].into());
    }
}
