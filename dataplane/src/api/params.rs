//! Request parameters of Loki's read API, parsed with Loki's rules and error texts.

use crate::entry::Direction;
use crate::query::QueryParams;
use crate::timeutil::{now_nanos, parse_rfc3339};

/// Loki's default look-back of range queries and label lookups without `start`.
pub const DEFAULT_SINCE_NS: i64 = 3_600_000_000_000;
/// Default `limit` of log queries.
pub const DEFAULT_LIMIT: usize = 100;
/// Most points per series a range query may ask for.
pub const MAX_POINTS: i64 = 11_000;

/// Parameters from the query string and, for POST, a form body. As with Go's `FormValue`, the
/// first occurrence of a name wins.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses `a=b&c=d` pairs (URL-encoded) and appends them.
    pub fn extend_urlencoded(&mut self, raw: &[u8]) {
        self.0.extend(form_urlencoded_pairs(raw));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// Every value of a repeated parameter (`match[]`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty()).collect()
    }
}

fn form_urlencoded_pairs(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = match p.iter().position(|b| *b == b'=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &p[p.len()..]),
            };
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = std::str::from_utf8(&s[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A timestamp as Loki accepts it: nanoseconds (or seconds, with at most 10 digits) since the
/// epoch, float seconds, or RFC 3339.
pub fn parse_time(value: &str) -> Result<i64, String> {
    if value.contains('.')
        && let Ok(f) = value.parse::<f64>()
    {
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round() / 1000.0;
        return Ok((secs as i64).saturating_mul(1_000_000_000).saturating_add((frac * 1e9) as i64));
    }
    if let Ok(n) = value.parse::<i64>() {
        let digits = value.trim_start_matches('-').len();
        return Ok(if digits <= 10 { n.saturating_mul(1_000_000_000) } else { n });
    }
    parse_rfc3339(value).ok_or_else(|| format!("cannot parse \"{value}\" to a valid timestamp"))
}

/// A duration as float seconds (`30`, `1.5`) or a Prometheus duration (`1m30s`), in ns.
pub fn parse_seconds_or_duration(value: &str) -> Result<i64, String> {
    if let Ok(f) = value.parse::<f64>() {
        if !f.is_finite() {
            return Err(format!("cannot parse \"{value}\" to a valid duration"));
        }
        return Ok((f * 1e9).round() as i64);
    }
    crate::config::units::parse_duration(value)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .ok_or_else(|| format!("cannot parse \"{value}\" to a valid duration"))
}

fn parse_direction(value: Option<&str>) -> Result<Direction, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(Direction::Backward),
        Some("backward") => Ok(Direction::Backward),
        Some("forward") => Ok(Direction::Forward),
        Some(other) => Err(format!("invalid direction '{other}'")),
    }
}

fn parse_limit(value: Option<&str>) -> Result<usize, String> {
    match value {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n as usize),
            Ok(_) => Err("limit must be a positive value".into()),
            Err(_) => Err(format!("cannot parse \"{v}\" to a valid limit")),
        },
    }
}

/// `query`, required everywhere it is used.
pub fn query(p: &Params) -> Result<&str, String> {
    p.get("query").ok_or_else(|| "query parameter is required".to_string())
}

/// Parameters of `/loki/api/v1/query_range`.
pub fn range_params(p: &Params) -> Result<QueryParams, String> {
    let end = p.get("end").map(parse_time).transpose()?.unwrap_or_else(now_nanos);
    let start = p.get("start").map(parse_time).transpose()?.unwrap_or(end - DEFAULT_SINCE_NS);
    if end < start {
        return Err("end timestamp must not be before or equal to start time".into());
    }
    let step = match p.get("step") {
        Some(s) => parse_seconds_or_duration(s)?,
        None => default_step(start, end),
    };
    if step <= 0 {
        return Err("zero or negative query resolution step widths are not accepted. Try a positive integer".into());
    }
    if (end - start) / step > MAX_POINTS {
        return Err("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into());
    }
    let interval = match p.get("interval") {
        Some(s) => parse_seconds_or_duration(s)?,
        None => 0,
    };
    if interval < 0 {
        return Err("interval must be a positive value".into());
    }
    Ok(QueryParams {
        start,
        end,
        step,
        interval,
        direction: parse_direction(p.get("direction"))?,
        limit: parse_limit(p.get("limit"))?,
        instant: false,
    })
}

/// Parameters of `/loki/api/v1/query`.
pub fn instant_params(p: &Params) -> Result<QueryParams, String> {
    let t = p.get("time").map(parse_time).transpose()?.unwrap_or_else(now_nanos);
    Ok(QueryParams {
        start: t,
        end: t,
        step: 0,
        interval: 0,
        direction: parse_direction(p.get("direction"))?,
        limit: parse_limit(p.get("limit"))?,
        instant: true,
    })
}

/// `start`/`end` of label, series and index endpoints (default: the last hour).
pub fn time_range(p: &Params) -> Result<(i64, i64), String> {
    let end = p.get("end").map(parse_time).transpose()?.unwrap_or_else(now_nanos);
    let start = match (p.get("start"), p.get("since")) {
        (Some(s), _) => parse_time(s)?,
        (None, Some(since)) => end - parse_seconds_or_duration(since)?,
        (None, None) => end - DEFAULT_SINCE_NS,
    };
    if end < start {
        return Err("end timestamp must not be before or equal to start time".into());
    }
    Ok((start, end))
}

/// Loki's default step: a 250th of the range, at least one second.
pub fn default_step(start: i64, end: i64) -> i64 {
    let secs = ((end - start) as f64 / 1e9 / 250.0).floor().max(1.0);
    (secs * 1e9) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn times_in_every_form() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(parse_time("1700000000000000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(parse_time("1700000000.5").unwrap(), 1_700_000_000_500_000_000);
        assert_eq!(parse_time("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000_000_000);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn range_defaults_and_errors() {
        let q = range_params(&params(&[("start", "1000"), ("end", "2000")])).unwrap();
        assert_eq!((q.start, q.end), (1_000_000_000_000, 2_000_000_000_000));
        assert_eq!(q.step, 4_000_000_000, "a 250th of 1000s");
        assert_eq!(q.limit, 100);
        assert_eq!(q.direction, Direction::Backward);
        let e = range_params(&params(&[("start", "2000"), ("end", "1000")])).unwrap_err();
        assert_eq!(e, "end timestamp must not be before or equal to start time");
        let e = range_params(&params(&[("start", "1000"), ("end", "2000"), ("step", "0")])).unwrap_err();
        assert!(e.starts_with("zero or negative query resolution step"), "{e}");
        let e = range_params(&params(&[("start", "0"), ("end", "1000000"), ("step", "1")])).unwrap_err();
        assert!(e.starts_with("exceeded maximum resolution of 11,000 points"), "{e}");
        let q = range_params(&params(&[("start", "1000"), ("end", "2000"), ("step", "1m"), ("direction", "FORWARD")]))
            .unwrap();
        assert_eq!(q.step, 60_000_000_000);
        assert_eq!(q.direction, Direction::Forward);
        assert_eq!(range_params(&params(&[("limit", "0")])).unwrap_err(), "limit must be a positive value");
    }

    #[test]
    fn form_bodies_decode() {
        let mut p = Params::default();
        p.extend_urlencoded(b"query=%7Bjob%3D%22a%22%7D+%7C%3D+%22x%22&limit=5");
        assert_eq!(p.get("query"), Some("{job=\"a\"} |= \"x\""));
        assert_eq!(p.get("limit"), Some("5"));
    }
}
