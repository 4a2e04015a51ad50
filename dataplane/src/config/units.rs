//! Unit types for configuration: byte sizes (`256KB`, `1.5MiB`) and durations (`1h30m`, `1w`).
//!
//! Both parse the spellings Loki's configuration uses and print back in a form that parses to
//! the same value, so `/config` output can be fed back as a config file.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes. Parses plain integers and human sizes with decimal (`KB` = 1000) and binary
/// (`KiB` = 1024) units, like Loki's flags; prints the shortest exact form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }

    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }

    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: f64 = num.parse().map_err(|_| format!("invalid byte size {s:?}"))?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "ki" | "kib" => 1024.0,
            "mi" | "mib" => 1024.0 * 1024.0,
            "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
            "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => return Err(format!("invalid byte size {s:?}: unknown unit {unit:?}")),
        };
        let v = num * mult;
        if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
            return Err(format!("invalid byte size {s:?}"));
        }
        Ok(Self(v.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Largest magnitude first; at equal magnitude the decimal unit (Loki's spelling) wins.
        const UNITS: [(u64, &str); 8] = [
            (1_000_000_000_000, "TB"),
            (1 << 40, "TiB"),
            (1_000_000_000, "GB"),
            (1 << 30, "GiB"),
            (1_000_000, "MB"),
            (1 << 20, "MiB"),
            (1_000, "KB"),
            (1 << 10, "KiB"),
        ];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Float(f) if f >= 0.0 && f.is_finite() => Ok(Self(f.round() as u64)),
            Raw::Float(f) => Err(serde::de::Error::custom(format!("invalid byte size {f}"))),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written like Prometheus and Loki write them: `1h30m`, `500ms`, `1w`, `2d`, `0s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn millis(n: u64) -> Self {
        Self(Duration::from_millis(n))
    }

    pub const fn secs(n: u64) -> Self {
        Self(Duration::from_secs(n))
    }

    pub const fn mins(n: u64) -> Self {
        Self(Duration::from_secs(n * 60))
    }

    pub const fn hours(n: u64) -> Self {
        Self(Duration::from_secs(n * 3600))
    }

    pub const fn get(self) -> Duration {
        self.0
    }

    pub fn as_nanos_i64(self) -> i64 {
        i64::try_from(self.0.as_nanos()).unwrap_or(i64::MAX)
    }
}

/// Parses a Go/Prometheus duration: a sequence of `<number><unit>` with units `ns us µs ms s m h
/// d w y`. A bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 7.0 * 86400.0,
            "y" => 365.0 * 86400.0,
            "" => return Err(format!("invalid duration {s:?}: missing unit")),
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        total += n * secs;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(format!("invalid duration {s:?}: out of range"));
    }
    Ok(Duration::from_nanos((total * 1e9).round() as u64))
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ns = self.0.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        const UNITS: [(u128, &str); 7] = [
            (7 * 86_400_000_000_000, "w"),
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
        ];
        for (size, unit) in UNITS {
            if ns >= size {
                write!(f, "{}{unit}", ns / size)?;
                ns %= size;
            }
        }
        if ns > 0 {
            write!(f, "{ns}ns")?;
        }
        Ok(())
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(0) => Ok(Dur(Duration::ZERO)),
            Raw::Int(n) => Err(serde::de::Error::custom(format!("invalid duration {n}: missing unit (e.g. {n}s)"))),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_decimal_and_binary_units() {
        assert_eq!("256KB".parse::<ByteSize>().unwrap(), ByteSize(256_000));
        assert_eq!("256KiB".parse::<ByteSize>().unwrap(), ByteSize(262_144));
        assert_eq!("1.5MB".parse::<ByteSize>().unwrap(), ByteSize(1_500_000));
        assert_eq!("1572864".parse::<ByteSize>().unwrap(), ByteSize(1_572_864));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
    }

    #[test]
    fn byte_sizes_print_back_to_the_same_value() {
        for v in [0, 1, 1000, 1024, 256_000, 262_144, 1_572_864, 3_000_000, 123_457] {
            let s = ByteSize(v).to_string();
            assert_eq!(s.parse::<ByteSize>().unwrap(), ByteSize(v), "{s}");
        }
        assert_eq!(ByteSize(262_144).to_string(), "256KiB");
    }

    #[test]
    fn durations_parse_go_and_prometheus_forms() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1w").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn durations_print_back_to_the_same_value() {
        for s in ["0s", "1w", "1d2h", "1h30m", "10m", "1s500ms", "250us", "7ns"] {
            let d: Dur = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
    }
}
