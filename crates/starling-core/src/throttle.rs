//! Slows down repeated authentication failures from one address (password guessing), without
//! telling the client anything it could use: the answer stays `<not-authorized/>`.

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
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthThrottle {
    /// Records a failure and returns how long to wait before answering it.
    pub fn failure(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut map = self.failures.lock();
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (_, at)| now.duration_since(*at) < WINDOW);
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        delay_for(entry.0)
    }

    pub fn success(&self, ip: IpAddr) {
        self.failures.lock().remove(&ip);
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
    fn delay_grows_after_free_failures_and_resets_on_success() {
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
        t.success(ip);
        assert_eq!(t.failure(ip), Duration::ZERO);
    }
}
