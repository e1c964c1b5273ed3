//! A round of calls to the upstream spread over an interval and capped per second, so that a pool of
//! thousands of accounts never sends grok.com thousands of calls at once (issue 24).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

/// Runs `call` on every item: the `k`th no sooner than `k * every / n` after the round began (the
/// round spread evenly over `every`), and no two calls started less than `1 / per_sec` apart. Calls
/// may overlap (a few, so that a slow answer does not hold up the next one), but a slow upstream only
/// makes the round longer. Returns how many calls said `true`.
pub async fn paced<T, F, Fut>(items: Vec<T>, every: Duration, per_sec: u32, call: F) -> usize
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = bool>,
{
    let per_sec = per_sec.max(1);
    let gap = Duration::from_secs(1) / per_sec;
    let step = every.checked_div(u32::try_from(items.len()).unwrap_or(u32::MAX)).unwrap_or(every);
    let start = Instant::now();
    // When the next call may start at the earliest: the per-second cap, whatever the spread says.
    let next = Mutex::new(start);
    let (call, next) = (&call, &next);
    let at_once = (per_sec as usize * 4).clamp(1, 64);
    futures_util::stream::iter(items.into_iter().enumerate())
        .map(|(k, item)| async move {
            let spread = start + step.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
            tokio::time::sleep_until(spread).await;
            let at = {
                let mut next = next.lock().unwrap_or_else(|p| p.into_inner());
                let at = (*next).max(Instant::now());
                *next = at + gap;
                at
            };
            tokio::time::sleep_until(at).await;
            call(item).await
        })
        .buffer_unordered(at_once)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await
}

#[cfg(test)]
mod tests {
    use crate::upstream::pace::*;

    async fn starts(n: usize, every: Duration, per_sec: u32, takes: Duration) -> Vec<Duration> {
        let t0 = Instant::now();
        let seen = Mutex::new(Vec::new());
        let ok = paced((0..n).collect(), every, per_sec, |_| async {
            seen.lock().unwrap().push(t0.elapsed());
            tokio::time::sleep(takes).await;
            true
        })
        .await;
        assert_eq!(ok, n);
        seen.into_inner().unwrap()
    }

    /// 10 calls over 10 s: one a second, the first at once.
    #[tokio::test(start_paused = true)]
    async fn a_round_is_spread_over_the_interval() {
        let s = starts(10, Duration::from_secs(10), 5, Duration::from_millis(1500)).await;
        let want: Vec<Duration> = (0..10).map(Duration::from_secs).collect();
        assert_eq!(s, want);
    }

    /// 1,000 calls "over" 10 s at most 5 a second: 200 ms apart, however slowly they answer, and
    /// never more than 5 started in any second.
    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_cap_per_second() {
        let s = starts(1000, Duration::from_secs(10), 5, Duration::from_secs(3)).await;
        assert!(s.windows(2).all(|w| w[1] - w[0] >= Duration::from_millis(200)), "{:?}", &s[..10]);
        assert!(*s.last().unwrap() >= Duration::from_millis(199_800));
        let empty = starts(0, Duration::from_secs(10), 5, Duration::ZERO).await;
        assert!(empty.is_empty());
    }
}
