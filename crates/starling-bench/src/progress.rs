//! Live progress on stderr, one line a second: elapsed time, phase, counts and the current
//! rate of the phase's main count. Scenarios bump atomic counters; one task prints.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters of the current phase.
#[derive(Default)]
pub struct Progress {
    phase: Mutex<&'static str>,
    /// Logins, registrations, queries… done.
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// True when the rate shown is of `received` (message phases), else of `ok`.
    rate_of_received: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// Starts a phase: counters back to zero.
    pub fn phase(&self, name: &'static str, rate_of_received: bool) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = name;
        self.rate_of_received.store(rate_of_received, Relaxed);
        for c in [&self.ok, &self.failed, &self.sent, &self.received] {
            c.store(0, Relaxed);
        }
    }

    fn line(&self, elapsed: Duration, rate: f64) -> String {
        let phase = *self.phase.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = format!(
            "[{:>6.1}s] {phase}: ok {} failed {}",
            elapsed.as_secs_f64(),
            self.ok.load(Relaxed),
            self.failed.load(Relaxed)
        );
        let (sent, received) = (self.sent.load(Relaxed), self.received.load(Relaxed));
        if sent > 0 || received > 0 {
            s.push_str(&format!(" sent {sent} received {received}"));
        }
        s.push_str(&format!(" ({rate:.0}/s)"));
        s
    }

    fn main_count(&self) -> u64 {
        if self.rate_of_received.load(Relaxed) {
            self.received.load(Relaxed)
        } else {
            self.ok.load(Relaxed)
        }
    }
}

/// Prints while alive (when enabled); stops when dropped.
pub struct Printer {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Printer {
    pub fn start(progress: Arc<Progress>, enabled: bool) -> Printer {
        if !enabled {
            return Printer { task: None };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut last = (Instant::now(), progress.main_count());
            loop {
                tick.tick().await;
                let now = Instant::now();
                let count = progress.main_count();
                let dt = now.duration_since(last.0).as_secs_f64();
                // A new phase resets the counters: no negative rate.
                let rate = count.saturating_sub(last.1) as f64 / dt.max(1e-3);
                last = (now, count);
                eprintln!("{}", progress.line(start.elapsed(), rate));
            }
        });
        Printer { task: Some(task) }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
