//! Retry budgets (XBackendTrafficPolicy's `retryConstraint`): retries to a
//! backend may be at most a share of its recent requests, with a small
//! rate always allowed. Counted in ten buckets per window, so the window
//! slides in tenths and the state stays a few dozen bytes per backend.

use std::sync::Mutex;

use proxy_config::RetryBudget;

const BUCKETS: u64 = 10;

/// Counts over a sliding window of `BUCKETS` buckets.
#[derive(Debug)]
struct Window {
    bucket_ms: u64,
    /// Per bucket: its number (time / width), requests, retries.
    buckets: [(u64, u64, u64); BUCKETS as usize],
}

impl Window {
    fn new(interval_ms: u64) -> Window {
        Window {
            bucket_ms: (interval_ms / BUCKETS).max(1),
            buckets: [(u64::MAX, 0, 0); BUCKETS as usize],
        }
    }

    fn bucket(&mut self, now_ms: u64) -> &mut (u64, u64, u64) {
        let number = now_ms / self.bucket_ms;
        let slot = &mut self.buckets[(number % BUCKETS) as usize];
        if slot.0 != number {
            *slot = (number, 0, 0);
        }
        slot
    }

    /// Requests and retries in the window ending now.
    fn totals(&self, now_ms: u64) -> (u64, u64) {
        let current = now_ms / self.bucket_ms;
        self.buckets
            .iter()
            .filter(|(number, _, _)| *number != u64::MAX && current - number < BUCKETS)
            .fold((0, 0), |(requests, retries), (_, r, t)| {
                (requests + r, retries + t)
            })
    }
}

/// One backend's budget and what it has spent.
#[derive(Debug)]
pub struct RetryBudgetState {
    budget: RetryBudget,
    /// Every attempt and every retry, over `interval_ms`.
    share: Mutex<(Window, Window)>,
}

impl RetryBudgetState {
    pub fn new(budget: &RetryBudget) -> RetryBudgetState {
        RetryBudgetState {
            budget: budget.clone(),
            share: Mutex::new((
                Window::new(budget.interval_ms),
                Window::new(budget.min_interval_ms),
            )),
        }
    }

    pub fn budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// Counts a first attempt.
    pub fn attempt(&self, now_ms: u64) {
        let mut windows = self.share.lock().unwrap_or_else(|e| e.into_inner());
        windows.0.bucket(now_ms).1 += 1;
    }

    /// Whether a retry may be sent now; if so it is counted (as a request
    /// and a retry).
    pub fn try_retry(&self, now_ms: u64) -> bool {
        let mut windows = self.share.lock().unwrap_or_else(|e| e.into_inner());
        let (share, minimum) = &mut *windows;
        let (requests, retries) = share.totals(now_ms);
        // With this retry counted: retries / (requests + 1) <= percent.
        let within_share = (retries + 1) * 100 <= u64::from(self.budget.percent) * (requests + 1);
        let within_minimum = minimum.totals(now_ms).1 < u64::from(self.budget.min_retries);
        if !(within_share || within_minimum) {
            return false;
        }
        let bucket = share.bucket(now_ms);
        bucket.1 += 1;
        bucket.2 += 1;
        minimum.bucket(now_ms).2 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn budget(percent: u32, min_retries: u32) -> RetryBudgetState {
        RetryBudgetState::new(&RetryBudget {
            percent,
            interval_ms: 10_000,
            min_retries,
            min_interval_ms: 1_000,
        })
    }

    #[test]
    fn retries_stay_within_their_share_of_requests() {
        let state = budget(20, 0);
        for _ in 0..100 {
            state.attempt(0);
        }
        let allowed = (0..100).filter(|_| state.try_retry(5)).count();
        // 25 retries of 125 requests are 20 %.
        assert_eq!(allowed, 25);
    }

    #[test]
    fn the_minimum_rate_holds_when_traffic_is_quiet_and_renews_each_interval() {
        let state = budget(0, 3);
        assert_eq!((0..10).filter(|_| state.try_retry(0)).count(), 3);
        assert!(!state.try_retry(999), "the minimum window is a second");
        assert!(state.try_retry(1_000), "the next second allows again");
    }

    #[test]
    fn spent_budget_comes_back_as_the_window_slides() {
        let state = budget(10, 0);
        for _ in 0..10 {
            state.attempt(0);
        }
        assert!(state.try_retry(0));
        assert!(!state.try_retry(0), "1 of 11 is spent");
        assert!(
            !state.try_retry(9_999),
            "still inside the window: no new requests, no new budget"
        );
        for _ in 0..10 {
            state.attempt(10_000);
        }
        assert!(
            state.try_retry(10_500),
            "the first second's requests left, the new ones count"
        );
    }

    proptest! {
        #[test]
        fn retries_never_exceed_the_share_plus_the_minimum(
            percent in 0u32..=100,
            min_retries in 0u32..5,
            events in proptest::collection::vec((any::<bool>(), 0u64..200), 1..300),
        ) {
            let state = budget(percent, min_retries);
            let (mut requests, mut retries, mut now) = (0u64, 0u64, 0u64);
            for (is_retry, step) in events {
                now += step;
                if now >= 1_000 {
                    break; // one minimum window, one share window
                }
                if is_retry {
                    if state.try_retry(now) {
                        retries += 1;
                        requests += 1;
                    }
                } else {
                    state.attempt(now);
                    requests += 1;
                }
            }
            let share = u64::from(percent) * requests / 100;
            prop_assert!(retries <= share.max(u64::from(min_retries)) + u64::from(min_retries));
        }
    }
}
