//! Source-address spreading: one local address has only ~28k ephemeral ports towards one
//! server port, so many sessions bind their sockets to several loopback addresses in turn
//! (`--source 127.0.0.2-127.0.0.9` or a comma list). All of 127.0.0.0/8 reaches `lo` on
//! Linux without configuration.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Most addresses one `--source` may name (a typo like 127.0.0.1-127.255.0.0 is refused).
const MAX_SOURCES: u32 = 65_536;

/// Parses `A`, `A-B` (IPv4, inclusive) and comma lists of those.
pub fn parse_sources(s: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            None => out.push(
                part.parse::<IpAddr>()
                    .map_err(|_| format!("{part:?} is not an IP address"))?,
            ),
            Some((a, b)) => {
                let a: Ipv4Addr = a
                    .trim()
                    .parse()
                    .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
                let b: Ipv4Addr = b
                    .trim()
                    .parse()
                    .map_err(|_| format!("{b:?} is not an IPv4 address"))?;
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a {
                    return Err(format!("range {part:?} ends before it starts"));
                }
                if b - a >= MAX_SOURCES {
                    return Err(format!("range {part:?} is too large"));
                }
                out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
            }
        }
        if out.len() > MAX_SOURCES as usize {
            return Err("too many source addresses".into());
        }
    }
    if out.is_empty() {
        return Err("no address given".into());
    }
    Ok(out)
}

/// Hands out source addresses round-robin (None when no `--source` was given: the kernel
/// picks).
#[derive(Debug, Default)]
pub struct Sources {
    addrs: Vec<IpAddr>,
    next: AtomicUsize,
}

impl Sources {
    pub fn new(addrs: Vec<IpAddr>) -> Self {
        Sources {
            addrs,
            next: AtomicUsize::new(0),
        }
    }

    pub fn next(&self) -> Option<IpAddr> {
        if self.addrs.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Relaxed) % self.addrs.len();
        Some(self.addrs[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges_and_lists() {
        assert_eq!(
            parse_sources("127.0.0.2-127.0.0.4").as_deref(),
            Ok(&[ip("127.0.0.2"), ip("127.0.0.3"), ip("127.0.0.4")][..])
        );
        assert_eq!(
            parse_sources("127.0.0.1, ::1,127.0.1.255-127.0.2.0").as_deref(),
            Ok(&[
                ip("127.0.0.1"),
                ip("::1"),
                ip("127.0.1.255"),
                ip("127.0.2.0")
            ][..])
        );
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_sources("127.0.0.1-10.0.0.1").is_err());
        assert!(parse_sources("localhost").is_err());
        assert!(parse_sources(" , ").is_err());
        assert!(parse_sources("1.0.0.0-2.0.0.0").is_err());
    }

    #[test]
    fn round_robin() {
        let s = Sources::new(vec![ip("127.0.0.2"), ip("127.0.0.3")]);
        let got: Vec<_> = (0..3).map(|_| s.next()).collect();
        assert_eq!(
            got,
            [
                Some(ip("127.0.0.2")),
                Some(ip("127.0.0.3")),
                Some(ip("127.0.0.2"))
            ]
        );
        assert_eq!(Sources::default().next(), None);
    }
}
