//! Latency statistics without keeping samples: a log-linear histogram of microseconds with
//! atomic buckets (about 1.6 % relative precision), shared by every task of a run, so
//! recording is one atomic add and costs no memory per connection or per message.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Values below this are counted exactly.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above `LINEAR` (relative precision 1/64).
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two covered above `LINEAR` (2^7 .. 2^48 µs, i.e. up to about 9 years).
const OCTAVES: u64 = 41;
const BUCKETS: usize = (LINEAR + OCTAVES * SUB) as usize;

pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn bucket_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - u64::from(v.leading_zeros()); // floor(log2 v) >= 7
    let sub = (v >> (e - u64::from(SUB_BITS))) & (SUB - 1);
    let i = LINEAR + (e - 7) * SUB + sub;
    (i as usize).min(BUCKETS - 1)
}

/// The smallest value that falls in bucket `i`, and the first one past it.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, i + 1);
    }
    let e = (i - LINEAR) / SUB + 7;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (e - u64::from(SUB_BITS));
    let low = (1u64 << e) + sub * width;
    (low, low + width)
}

/// p50/p90/p99/max/mean in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    pub fn record(&self, d: Duration) {
        self.record_us(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    pub fn record_us(&self, us: u64) {
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(us, Relaxed);
        self.max.fetch_max(us, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The value at quantile `q` (0..=1) in µs: the middle of the bucket holding the
    /// ceil(q·count)-th smallest sample, never above the largest sample seen.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let count = self.count();
        if count == 0 {
            return 0;
        }
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                let (low, high) = bucket_range(i);
                let mid = if high - low <= 1 {
                    low
                } else {
                    low + (high - low) / 2
                };
                return mid.min(self.max.load(Relaxed));
            }
        }
        self.max.load(Relaxed)
    }

    pub fn percentiles(&self) -> Percentiles {
        let count = self.count();
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count,
            p50: ms(self.quantile_us(0.50)),
            p90: ms(self.quantile_us(0.90)),
            p99: ms(self.quantile_us(0.99)),
            max: ms(self.max.load(Relaxed)),
            mean: if count == 0 {
                0.0
            } else {
                ms(self.sum.load(Relaxed)) / count as f64
            },
        }
    }
}

/// Nanoseconds since this process first asked: the send timestamp carried in message bodies
/// (sender and receiver are the same process, so one monotonic clock serves both).
pub fn now_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos()
        .min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for v in (0..5000).chain([1 << 20, (1 << 20) + 12345, 1 << 40]) {
            let b = bucket_of(v);
            assert!(b >= last, "{v}");
            let (low, high) = bucket_range(b);
            assert!(low <= v && v < high, "{v} not in [{low},{high})");
            // Relative width never above 1/64.
            assert!((high - low) as f64 <= (low as f64 / 64.0).max(1.0), "{v}");
            last = b;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn exact_percentiles_for_small_values() {
        let h = Histogram::new();
        for v in 1..=100 {
            h.record_us(v);
        }
        assert_eq!(h.quantile_us(0.5), 50);
        assert_eq!(h.quantile_us(0.9), 90);
        assert_eq!(h.quantile_us(0.99), 99);
        assert_eq!(h.quantile_us(1.0), 100);
        let p = h.percentiles();
        assert_eq!(p.count, 100);
        assert!((p.mean - 0.0505).abs() < 1e-9);
        assert_eq!(p.max, 0.1);
    }

    #[test]
    fn large_values_within_precision() {
        let h = Histogram::new();
        // 1..=1000 ms.
        for v in 1..=1000u64 {
            h.record(Duration::from_millis(v));
        }
        for (q, want) in [(0.5, 500_000.0), (0.9, 900_000.0), (0.99, 990_000.0)] {
            let got = h.quantile_us(q) as f64;
            assert!((got - want).abs() / want < 0.016, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.percentiles().max, 1000.0);
    }

    #[test]
    fn empty_and_single() {
        let h = Histogram::new();
        assert_eq!(h.percentiles(), Percentiles::default());
        h.record_us(123_456);
        let p = h.percentiles();
        // Clamped to the one sample seen.
        assert!(p.p50 <= 123.456 && p.p50 > 121.0);
        assert_eq!(p.max, 123.456);
    }
}
