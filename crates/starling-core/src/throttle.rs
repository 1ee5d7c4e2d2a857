//! Slows down repeated authentication failures from one address (password guessing), without
//! telling the client anything it could use: the answer stays `<not-authorized/>`. Failures
//! are forgotten only with time: a success does not clear them, or a guesser could reset the
//! count by logging into an account of its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Failures forgotten after this long without a new one.
const WINDOW: Duration = Duration::from_secs(600);
/// Failures answered at full speed (typos happen).
const FREE_FAILURES: u32 = 3;
const MAX_DELAY: Duration = Duration::from_secs(16);
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct AuthThrottle {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failures: HashMap<IpAddr, (u32, Instant)>,
    last_sweep: Option<Instant>,
}

impl AuthThrottle {
    /// Records a failure and returns how long to wait before answering it.
    pub fn failure(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut state = self.state.lock();
        if state.failures.len() >= MAX_TRACKED && !state.failures.contains_key(&ip) {
            // Forget expired entries, at most once a second so a wide attack does not make
            // every failure scan the table.
            if state
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                state.last_sweep = Some(now);
                state
                    .failures
                    .retain(|_, (_, at)| now.duration_since(*at) < WINDOW);
            }
            if state.failures.len() >= MAX_TRACKED {
                // Still full: many addresses are failing at once; new ones get the
                // longest delay instead of a table that grows without bound.
                return MAX_DELAY;
            }
        }
        let entry = state.failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        delay_for(entry.0)
    }
}

fn delay_for(failures: u32) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (failures - FREE_FAILURES - 1).min(5);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_after_free_failures_up_to_the_cap() {
        let t = AuthThrottle::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.failure(ip), Duration::ZERO);
        }
        assert_eq!(t.failure(ip), Duration::from_secs(1));
        assert_eq!(t.failure(ip), Duration::from_secs(2));
        for _ in 0..10 {
            t.failure(ip);
        }
        assert_eq!(t.failure(ip), MAX_DELAY);
        // Another address is not affected.
        assert_eq!(t.failure([10, 0, 0, 2].into()), Duration::ZERO);
    }
}
