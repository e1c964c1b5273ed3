//! What replicas tell each other about tokens: the changes upstream answers made, and the requests
//! each has in flight.

use std::time::{Duration, Instant};

use crate::upstream::grok_web::token_pool::{Plan, Product, SsoPool, TokenStatus};
use crate::upstream::tokens::{InFlightCounts, Observer, TokenEvent};

pub(super) fn until_ms(at: Instant) -> u64 {
    crate::clock::now_ms() + at.saturating_duration_since(Instant::now()).as_millis() as u64
}

fn instant_at(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(crate::clock::now_ms()))
}

impl SsoPool {
    /// This replica's requests in flight per token (only tokens with some), for the other replicas.
    pub fn in_flight_counts(&self) -> InFlightCounts {
        self.state.collect(|_, t| (t.in_flight > 0).then(|| (t.id.clone(), t.in_flight))).into_iter().collect()
    }

    /// Another replica's latest in-flight counts (`None` just re-checks which entries lapsed): they count
    /// against each token's concurrency cap here for `lasts`, unless renewed.
    pub fn remote_in_flight(&self, replica: Option<(&str, InFlightCounts)>, lasts: Duration) {
        let now = Instant::now();
        let mut remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((replica, counts)) = replica {
            remote.insert(replica.to_owned(), (now + lasts, counts));
        }
        remote.retain(|_, (until, _)| *until > now);
        let mut sums: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        for (_, counts) in remote.values() {
            for (id, n) in counts {
                *sums.entry(id.as_str()).or_default() += n;
            }
        }
        let mut freed = false;
        self.state.each(|t| {
            let n = sums.get(t.id.as_str()).copied().unwrap_or(0);
            freed |= n < t.remote_in_flight;
            t.remote_in_flight = n;
        });
        if freed {
            self.state.released.notify_waiters();
        }
    }

    /// Tells `observer` of every token change upstream answers make from now on (once).
    pub fn observe(&self, observer: Observer) {
        let _ = self.observer.set(observer);
    }

    pub(super) fn emit(&self, event: Option<TokenEvent>) {
        if let (Some(event), Some(observer)) = (event, self.observer.get()) {
            observer(event);
        }
    }

    /// Applies a change another replica saw (nothing is emitted again).
    pub fn apply(&self, event: &TokenEvent) {
        let applied = self.state.with_id(event.token(), |t| match event {
            TokenEvent::Product { product, remaining, until_ms, .. } => {
                let Some(p) = Product::ALL.iter().find(|p| p.key() == product) else { return };
                let st = &mut t.products[p.idx()];
                st.remaining = *remaining;
                st.cooling_until = until_ms.map(instant_at);
            }
            TokenEvent::Cooling { until_ms, why, .. } => {
                t.status = TokenStatus::Cooling { until: instant_at(*until_ms) };
                t.proxy_error = why.clone();
            }
            TokenEvent::Expired { .. } => t.status = TokenStatus::Expired,
            TokenEvent::Flagged { .. } => t.status = TokenStatus::Flagged,
            TokenEvent::Plan { plan, .. } => {
                if let Some(p) = [Plan::Basic, Plan::SuperGrok, Plan::Heavy].into_iter().find(|p| p.key() == plan) {
                    t.plan = Some(p);
                }
            }
        });
        if applied.is_some() {
            self.state.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::token_pool::news::*;
    use crate::upstream::grok_web::token_pool::{NoToken, test_pool as pool, token_id};

    #[test]
    fn other_replicas_requests_count_against_the_cap_until_their_word_lapses() {
        let p = pool(&["token-aaaa-1111"], 1);
        let id = token_id("token-aaaa-1111");
        p.remote_in_flight(Some(("r1", [(id.clone(), 1)].into())), Duration::from_millis(50));
        assert_eq!(p.acquire(Product::Image, &[]).err(), Some(NoToken::Busy));
        std::thread::sleep(Duration::from_millis(60));
        p.remote_in_flight(None, Duration::from_millis(50));
        assert!(p.acquire(Product::Image, &[]).is_ok(), "a replica that stopped saying it no longer counts");
    }
}
