//! The command line's lists: client addresses and cores, as single items and ranges.

use std::net::{IpAddr, Ipv4Addr};

/// `127.0.0.1-127.0.0.8` (last octet range) or `a,b,c`.
pub fn parse_ip_list(list: &str) -> Option<Vec<IpAddr>> {
    parse_ranges(list, |a, b| {
        let (a, b): (Ipv4Addr, Ipv4Addr) = (a.parse().ok()?, b.parse().ok()?);
        let (a, b) = (u32::from(a), u32::from(b));
        (a <= b && b - a <= 65_535).then(|| (a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))).collect())
    })
}

/// Parses a core list such as `0,2-4` into `[0, 2, 3, 4]`; `None` when malformed or empty.
pub fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    parse_ranges(list, |a, b| {
        let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
        (a <= b).then(|| (a..=b).collect())
    })
}

/// A comma list of single items and `a-b` ranges (expanded by `range`); `None` when any
/// part is malformed or nothing is listed.
fn parse_ranges<T: std::str::FromStr>(list: &str, range: impl Fn(&str, &str) -> Option<Vec<T>>) -> Option<Vec<T>> {
    let mut items = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => items.extend(range(a.trim(), b.trim())?),
            None => items.push(part.parse().ok()?),
        }
    }
    (!items.is_empty()).then_some(items)
}
