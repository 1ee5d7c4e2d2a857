//! Process sampling from /proc: CPU time (`/proc/PID/stat` utime + stime, in clock ticks)
//! and resident memory (`/proc/PID/status` VmRSS), for the server under test (`--pid`) and
//! for this tool itself, so a report shows whether the client was the bottleneck.

use std::sync::OnceLock;
use std::time::Duration;

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time.
    pub cpu: Duration,
    pub rss_kb: u64,
}

/// Clock ticks per second of /proc/PID/stat. `sysconf` would need unsafe code, so this asks
/// `getconf CLK_TCK` once; Linux has used 100 on every common platform for decades, which is
/// the fallback.
pub fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in ticks. The command name
/// (field 2) is in parentheses and may hold spaces, so fields are counted after the last ')'.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After ')': field 3 (state) is the first; utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in kB from `/proc/PID/status`.
pub fn parse_status_rss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// VmHWM (peak RSS) in kB from `/proc/PID/status`.
pub fn parse_status_peak_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// This tool's peak RSS so far, in kB.
pub fn own_peak_rss_kb() -> Option<u64> {
    parse_status_peak_kb(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// Reads a process ("self" or a PID); None when it is gone or /proc is unreadable.
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ticks = parse_stat_ticks(&stat)?;
    let hz = clock_ticks();
    Some(ProcSample {
        cpu: Duration::from_secs(ticks / hz)
            + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz),
        rss_kb: parse_status_rss_kb(&status).unwrap_or(0),
    })
}

/// `TcpExt: … ListenDrops …` of `/proc/net/netstat`: connection attempts dropped because a
/// listener's accept queue was full (a server with a small listen backlog shows its login
/// latency in whole seconds of SYN retransmission). Counts every listener of the network
/// namespace.
pub fn parse_listen_drops(netstat: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names
        .split_ascii_whitespace()
        .position(|n| n == "ListenDrops")?;
    values.split_ascii_whitespace().nth(i)?.parse().ok()
}

pub fn listen_drops() -> Option<u64> {
    parse_listen_drops(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

/// This tool.
pub fn own() -> ProcSample {
    sample("self").unwrap_or_default()
}

/// The server under test, when `--pid` was given.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    pub pid: u32,
}

impl Server {
    pub fn sample(&self) -> Option<ProcSample> {
        sample(&self.pid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line() {
        let line = "1234 (beam.smp (x) y) S 1 1234 1234 0 -1 4194560 5000 0 0 0 \
                    250 75 0 0 20 0 30 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_ticks(line), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn status_rss() {
        let status = "Name:\tprosody\nVmPeak:\t  99 kB\nVmRSS:\t   45678 kB\nThreads:\t1\n";
        assert_eq!(parse_status_rss_kb(status), Some(45678));
        assert_eq!(parse_status_rss_kb("Name: x\n"), None);
        assert_eq!(parse_status_peak_kb("VmHWM:\t  777 kB\n"), Some(777));
    }

    #[test]
    fn netstat_listen_drops() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPHPHits\n\
                    TcpExt: 0 60 61 5\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_listen_drops(text), Some(61));
        assert_eq!(parse_listen_drops("IpExt: a\nIpExt: 1\n"), None);
    }

    #[test]
    fn reads_itself() {
        let s = sample("self").expect("/proc/self");
        assert!(s.rss_kb > 0);
        assert!(clock_ticks() >= 1);
    }
}
