//! A round of calls to the upstream spread over an interval and capped per second, so that a pool of
//! thousands of accounts never sends grok.com thousands of calls at once (issue 24).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

/// Runs `call` on every item: the `k`th no sooner than `k * every / n` after the round began (the
/// round spread evenly over `every`), and never more than `per_sec` started in any second. Calls
/// may overlap (a few, so that a slow answer does not hold up the next one), but a slow upstream only
/// makes the round longer. Returns how many calls said `true`.
pub async fn paced<T, F, Fut>(items: Vec<T>, every: Duration, per_sec: u32, call: F) -> usize
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = bool>,
{
    let per_sec = per_sec.max(1) as usize;
    let step = every.checked_div(u32::try_from(items.len()).unwrap_or(u32::MAX)).unwrap_or(every);
    let start = Instant::now();
    // The last `per_sec` starts (some may lie ahead): a call starts no sooner than a second after the
    // `per_sec`-th one before it, so no second ever holds more, and a small round goes out at once.
    let window = Mutex::new(std::collections::VecDeque::with_capacity(per_sec));
    let (call, window) = (&call, &window);
    let at_once = (per_sec * 4).clamp(1, 64);
    futures_util::stream::iter(items.into_iter().enumerate())
        .map(|(k, item)| async move {
            let spread = start + step.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
            tokio::time::sleep_until(spread).await;
            let at = {
                let mut window = window.lock().unwrap_or_else(|p| p.into_inner());
                let mut at = Instant::now();
                if window.len() >= per_sec
                    && let Some(first) = window.pop_front()
                {
                    at = at.max(first + Duration::from_secs(1));
                }
                window.push_back(at);
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

    /// 1,000 calls "over" 10 s at most 5 a second: never more than 5 started in any second, however
    /// slowly they answer, and a small round (up to the cap) goes out at once.
    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_cap_per_second() {
        let s = starts(1000, Duration::from_secs(10), 5, Duration::from_secs(3)).await;
        assert!(s.windows(6).all(|w| w[5] - w[0] >= Duration::from_secs(1)), "{:?}", &s[..12]);
        assert!(*s.last().unwrap() >= Duration::from_secs(199), "{:?}", s.last());
        let small = starts(3, Duration::ZERO, 5, Duration::from_secs(3)).await;
        assert_eq!(small, vec![Duration::ZERO; 3]);
        let empty = starts(0, Duration::from_secs(10), 5, Duration::ZERO).await;
        assert!(empty.is_empty());
    }
}
