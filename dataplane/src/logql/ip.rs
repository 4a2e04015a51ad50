//! Patterns of the `ip("...")` line and label filters: a single address, an inclusive range
//! `a-b`, or a CIDR prefix `a/n`, IPv4 or IPv6.

use std::net::IpAddr;

/// The error text Loki gives for a pattern it cannot parse.
pub(crate) const INVALID_PATTERN: &str = "ip: invalid pattern";
/// The error text Loki gives for `ip()` with an operator other than `|=`/`!=` (`=`/`!=`).
pub(crate) const INVALID_OPERATION: &str = "ip: invalid operation";

/// A parsed `ip()` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPattern {
    /// One address.
    Single(IpAddr),
    /// Inclusive bounds of the same family.
    Range(IpAddr, IpAddr),
    /// A CIDR prefix `addr/bits`.
    Cidr {
        /// The network address.
        addr: IpAddr,
        /// The prefix length.
        bits: u8,
    },
}

impl IpPattern {
    /// Parses a pattern; the error is Loki's message.
    pub fn parse(pattern: &str) -> Result<IpPattern, &'static str> {
        if let Some((a, b)) = pattern.split_once('-') {
            let (a, b) = (parse_addr(a.trim())?, parse_addr(b.trim())?);
            if a.is_ipv4() != b.is_ipv4() || a > b {
                return Err(INVALID_PATTERN);
            }
            return Ok(IpPattern::Range(a, b));
        }
        if let Some((addr, bits)) = pattern.split_once('/') {
            let addr: IpAddr = addr.parse().map_err(|_| INVALID_PATTERN)?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let valid_digits =
                !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit()) && (bits == "0" || !bits.starts_with('0'));
            let bits: u8 = bits.parse().ok().filter(|b| valid_digits && *b <= max).ok_or(INVALID_PATTERN)?;
            return Ok(IpPattern::Cidr { addr, bits });
        }
        parse_addr(pattern).map(IpPattern::Single)
    }

    /// Whether `ip` falls inside the pattern.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match *self {
            IpPattern::Single(a) => a == ip,
            IpPattern::Range(lo, hi) => lo.is_ipv4() == ip.is_ipv4() && lo <= ip && ip <= hi,
            IpPattern::Cidr { addr, bits } => match (addr, ip) {
                (IpAddr::V4(net), IpAddr::V4(ip)) => {
                    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
                    u32::from(net) & mask == u32::from(ip) & mask
                }
                (IpAddr::V6(net), IpAddr::V6(ip)) => {
                    let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
                    u128::from(net) & mask == u128::from(ip) & mask
                }
                _ => false,
            },
        }
    }
}

fn parse_addr(s: &str) -> Result<IpAddr, &'static str> {
    s.parse().map_err(|_| INVALID_PATTERN)
}
