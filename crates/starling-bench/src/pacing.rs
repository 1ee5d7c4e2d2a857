//! Pacing math for a fixed aggregate rate: message k (from 0) is due at k/R seconds after the
//! start, and a central pacer hands out every message that is due, round-robin over the
//! senders. Computing "how many are due by now" from the elapsed time (instead of sleeping
//! 1/R between messages) keeps the long-run rate exact however late a timer fires.

use std::time::Duration;

/// Messages a run of `duration` at `rate` messages/s sends in all.
pub fn total(duration: Duration, rate: f64) -> u64 {
    (duration.as_secs_f64() * rate).round().max(0.0) as u64
}

/// How many messages are due `elapsed` after the start (message 0 is due at once), capped at
/// `total`.
pub fn due(elapsed: Duration, rate: f64, total: u64) -> u64 {
    let n = (elapsed.as_secs_f64() * rate).floor() as u64 + 1;
    n.min(total)
}

/// When message `k` is due, after the start.
pub fn due_at(k: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(k as f64 / rate)
}

/// Which sender message `k` goes to.
pub fn sender_of(k: u64, senders: usize) -> usize {
    (k % senders as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        let rate = 100.0;
        let total = total(Duration::from_secs(10), rate);
        assert_eq!(total, 1000);
        assert_eq!(due(Duration::ZERO, rate, total), 1);
        assert_eq!(due(Duration::from_micros(9_999), rate, total), 1);
        assert_eq!(due(Duration::from_millis(10), rate, total), 2);
        assert_eq!(due(Duration::from_millis(1_005), rate, total), 101);
        assert_eq!(due(Duration::from_secs(60), rate, total), 1000);
        assert_eq!(due_at(0, rate), Duration::ZERO);
        assert_eq!(due_at(150, rate), Duration::from_millis(1500));
        // The message due at a time is counted by then.
        for k in [1, 7, 999] {
            assert_eq!(due(due_at(k, rate), rate, total), k + 1);
        }
    }

    #[test]
    fn fractional_rates_and_round_robin() {
        assert_eq!(total(Duration::from_secs(3), 0.5), 2);
        assert_eq!(due(Duration::from_millis(1_999), 0.5, 2), 1);
        assert_eq!(due(Duration::from_secs(2), 0.5, 2), 2);
        let hits: Vec<usize> = (0..7).map(|k| sender_of(k, 3)).collect();
        assert_eq!(hits, [0, 1, 2, 0, 1, 2, 0]);
    }
}
