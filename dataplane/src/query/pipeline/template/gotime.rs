//! Go `time.Time` as templates see it: formatting and parsing with Go's reference-time layouts
//! (`2006-01-02T15:04:05Z07:00`), and `Time.String()`. Zones are fixed offsets; names other
//! than UTC are not resolved (there is no time zone database), as when Go cannot load one.

use std::fmt::Write;

/// An instant with the zone it is shown in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GoTime {
    /// Seconds since the Unix epoch.
    pub(crate) secs: i64,
    /// Nanoseconds within the second.
    pub(crate) nanos: u32,
    /// Seconds east of UTC.
    pub(crate) offset: i32,
    /// The zone abbreviation (`UTC`), empty for an unnamed offset.
    pub(crate) zone: String,
}

/// Seconds from 0001-01-01 to the Unix epoch: Go's zero time.
const ZERO_SECS: i64 = -62_135_596_800;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

impl GoTime {
    /// The instant `nanos` after the epoch, in UTC.
    pub(crate) fn from_unix_nanos(nanos: i128) -> GoTime {
        let secs = nanos.div_euclid(1_000_000_000) as i64;
        let n = nanos.rem_euclid(1_000_000_000) as u32;
        GoTime { secs, nanos: n, offset: 0, zone: "UTC".to_string() }
    }

    /// Go's zero `time.Time` (what a failed parse returns).
    pub(crate) fn zero() -> GoTime {
        GoTime { secs: ZERO_SECS, nanos: 0, offset: 0, zone: "UTC".to_string() }
    }

    /// The current time.
    pub(crate) fn now() -> GoTime {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        GoTime { secs: d.as_secs() as i64, nanos: d.subsec_nanos(), offset: 0, zone: "UTC".to_string() }
    }

    pub(crate) fn unix_nanos(&self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    pub(crate) fn unix_millis(&self) -> i64 {
        (self.unix_nanos().div_euclid(1_000_000)) as i64
    }

    fn local_fields(&self) -> Fields {
        let local = self.secs.saturating_add(i64::from(self.offset));
        let days = local.div_euclid(86_400);
        let rem = local.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let weekday = (days + 4).rem_euclid(7) as usize;
        let yday = days - days_from_civil(y, 1, 1) + 1;
        Fields {
            year: y,
            month: m,
            day: d,
            hour: (rem / 3600) as u32,
            min: (rem % 3600 / 60) as u32,
            sec: (rem % 60) as u32,
            weekday,
            yday: yday as u32,
        }
    }

    /// Go's `Time.String()`: `2006-01-02 15:04:05.999999999 -0700 MST`.
    pub(crate) fn go_string(&self) -> String {
        self.format("2006-01-02 15:04:05.999999999 -0700 MST")
    }

    /// Formats with a Go layout.
    pub(crate) fn format(&self, layout: &str) -> String {
        let f = self.local_fields();
        let mut out = String::with_capacity(layout.len() + 10);
        let mut rest = layout;
        while !rest.is_empty() {
            let (prefix, tok, after) = next_chunk(rest);
            out.push_str(prefix);
            rest = after;
            let Some(tok) = tok else { break };
            self.format_token(&mut out, tok, &f);
        }
        out
    }

    fn format_token(&self, out: &mut String, tok: Tok, f: &Fields) {
        match tok {
            Tok::LongYear => {
                let _ = write!(out, "{:04}", f.year);
            }
            Tok::Year => {
                let _ = write!(out, "{:02}", f.year.rem_euclid(100));
            }
            Tok::LongMonth => out.push_str(MONTHS[f.month as usize - 1]),
            Tok::Month => out.push_str(&MONTHS[f.month as usize - 1][..3]),
            Tok::NumMonth => {
                let _ = write!(out, "{}", f.month);
            }
            Tok::ZeroMonth => {
                let _ = write!(out, "{:02}", f.month);
            }
            Tok::LongWeekDay => out.push_str(DAYS[f.weekday]),
            Tok::WeekDay => out.push_str(&DAYS[f.weekday][..3]),
            Tok::Day => {
                let _ = write!(out, "{}", f.day);
            }
            Tok::UnderDay => {
                let _ = write!(out, "{:>2}", f.day);
            }
            Tok::ZeroDay => {
                let _ = write!(out, "{:02}", f.day);
            }
            Tok::UnderYearDay => {
                let _ = write!(out, "{:>3}", f.yday);
            }
            Tok::ZeroYearDay => {
                let _ = write!(out, "{:03}", f.yday);
            }
            Tok::Hour => {
                let _ = write!(out, "{:02}", f.hour);
            }
            Tok::Hour12 | Tok::ZeroHour12 => {
                let h = match f.hour % 12 {
                    0 => 12,
                    h => h,
                };
                if tok == Tok::Hour12 {
                    let _ = write!(out, "{h}");
                } else {
                    let _ = write!(out, "{h:02}");
                }
            }
            Tok::Minute => {
                let _ = write!(out, "{}", f.min);
            }
            Tok::ZeroMinute => {
                let _ = write!(out, "{:02}", f.min);
            }
            Tok::Second => {
                let _ = write!(out, "{}", f.sec);
            }
            Tok::ZeroSecond => {
                let _ = write!(out, "{:02}", f.sec);
            }
            Tok::PM => out.push_str(if f.hour >= 12 { "PM" } else { "AM" }),
            Tok::Pm => out.push_str(if f.hour >= 12 { "pm" } else { "am" }),
            Tok::Tz => {
                if self.zone.is_empty() {
                    let _ = write_offset(out, self.offset, false, false, false);
                } else {
                    out.push_str(&self.zone);
                }
            }
            Tok::Offset { z, colon, seconds, hours_only } => {
                if z && self.offset == 0 {
                    out.push('Z');
                } else if hours_only {
                    let sign = if self.offset < 0 { '-' } else { '+' };
                    let _ = write!(out, "{sign}{:02}", self.offset.unsigned_abs() / 3600);
                } else {
                    let _ = write_offset(out, self.offset, colon, seconds, true);
                }
            }
            Tok::Frac { sep, digits, trim } => {
                let s = format!("{:09}", self.nanos);
                let mut d = &s[..digits.min(9)];
                if trim {
                    d = d.trim_end_matches('0');
                    if d.is_empty() {
                        return;
                    }
                }
                out.push(sep);
                out.push_str(d);
            }
        }
    }
}

fn write_offset(out: &mut String, offset: i32, colon: bool, seconds: bool, _numeric: bool) -> std::fmt::Result {
    let sign = if offset < 0 { '-' } else { '+' };
    let a = offset.unsigned_abs();
    let (h, m, s) = (a / 3600, a % 3600 / 60, a % 60);
    let sep = if colon { ":" } else { "" };
    write!(out, "{sign}{h:02}{sep}{m:02}")?;
    if seconds {
        write!(out, "{sep}{s:02}")?;
    }
    Ok(())
}

struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    weekday: usize,
    yday: u32,
}

/// A layout element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    LongYear,
    Year,
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    PM,
    Pm,
    Tz,
    Offset { z: bool, colon: bool, seconds: bool, hours_only: bool },
    Frac { sep: char, digits: usize, trim: bool },
}

fn starts_lower(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

/// Splits a layout into literal text, the next element and the rest (Go's `nextStdChunk`).
fn next_chunk(layout: &str) -> (&str, Option<Tok>, &str) {
    let b = layout.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &layout[i..];
        let found: Option<(Tok, usize)> = match b[i] {
            b'J' if rest.starts_with("January") => Some((Tok::LongMonth, 7)),
            b'J' if rest.starts_with("Jan") && !starts_lower(&rest[3..]) => Some((Tok::Month, 3)),
            b'M' if rest.starts_with("Monday") => Some((Tok::LongWeekDay, 6)),
            b'M' if rest.starts_with("Mon") && !starts_lower(&rest[3..]) => Some((Tok::WeekDay, 3)),
            b'M' if rest.starts_with("MST") => Some((Tok::Tz, 3)),
            b'0' if rest.len() >= 2 && (b'1'..=b'6').contains(&rest.as_bytes()[1]) => Some((
                match rest.as_bytes()[1] {
                    b'1' => Tok::ZeroMonth,
                    b'2' => Tok::ZeroDay,
                    b'3' => Tok::ZeroHour12,
                    b'4' => Tok::ZeroMinute,
                    b'5' => Tok::ZeroSecond,
                    _ => Tok::Year,
                },
                2,
            )),
            b'0' if rest.starts_with("002") => Some((Tok::ZeroYearDay, 3)),
            b'1' if rest.starts_with("15") => Some((Tok::Hour, 2)),
            b'1' => Some((Tok::NumMonth, 1)),
            b'2' if rest.starts_with("2006") => Some((Tok::LongYear, 4)),
            b'2' => Some((Tok::Day, 1)),
            b'_' if rest.starts_with("_2006") => {
                return (&layout[..i + 1], Some(Tok::LongYear), &layout[i + 5..]);
            }
            b'_' if rest.starts_with("_2") => Some((Tok::UnderDay, 2)),
            b'_' if rest.starts_with("__2") => Some((Tok::UnderYearDay, 3)),
            b'3' => Some((Tok::Hour12, 1)),
            b'4' => Some((Tok::Minute, 1)),
            b'5' => Some((Tok::Second, 1)),
            b'P' if rest.starts_with("PM") => Some((Tok::PM, 2)),
            b'p' if rest.starts_with("pm") => Some((Tok::Pm, 2)),
            b'-' | b'Z' => offset_token(rest),
            b'.' | b',' if rest.len() > 1 && matches!(rest.as_bytes()[1], b'0' | b'9') => {
                let ch = rest.as_bytes()[1];
                let mut j = 1;
                while j < rest.len() && rest.as_bytes()[j] == ch {
                    j += 1;
                }
                if rest.as_bytes().get(j).is_some_and(u8::is_ascii_digit) {
                    None
                } else {
                    Some((Tok::Frac { sep: b[i] as char, digits: j - 1, trim: ch == b'9' }, j))
                }
            }
            _ => None,
        };
        if let Some((tok, len)) = found {
            return (&layout[..i], Some(tok), &layout[i + len..]);
        }
        i += 1;
    }
    (layout, None, "")
}

fn offset_token(rest: &str) -> Option<(Tok, usize)> {
    let z = rest.starts_with('Z');
    let body = &rest[1..];
    let forms: [(&str, bool, bool, bool); 5] = [
        ("070000", false, true, false),
        ("07:00:00", true, true, false),
        ("0700", false, false, false),
        ("07:00", true, false, false),
        ("07", false, false, true),
    ];
    forms.iter().find(|(f, ..)| body.starts_with(f)).map(|(f, colon, seconds, hours_only)| {
        (Tok::Offset { z, colon: *colon, seconds: *seconds, hours_only: *hours_only }, 1 + f.len())
    })
}

/// Days since the epoch of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses `value` with a Go layout, in the zone of `offset`/`zone` unless the value names an
/// offset. The error reads like Go's `parsing time ...` messages.
pub(crate) fn parse(layout: &str, value: &str, offset: i32, zone: &str) -> Result<GoTime, String> {
    let err = || format!("parsing time {:?} as {:?}: cannot parse", value, layout);
    let (mut year, mut month, mut day, mut hour, mut min, mut sec, mut nanos) =
        (1i64, 1u32, 1u32, 0u32, 0u32, 0u32, 0u32);
    let mut pm: Option<bool> = None;
    let mut zone_offset: Option<i32> = None;
    let mut zone_name: Option<String> = None;
    let mut lay = layout;
    let mut v = value;
    loop {
        let (prefix, tok, after) = next_chunk(lay);
        v = v.strip_prefix(prefix).ok_or_else(err)?;
        lay = after;
        let Some(tok) = tok else { break };
        let num = |v: &mut &str, min_digits: usize, max_digits: usize| -> Result<u32, String> {
            let n = v.bytes().take(max_digits).take_while(u8::is_ascii_digit).count();
            if n < min_digits {
                return Err(err());
            }
            let x = v[..n].parse().map_err(|_| err())?;
            *v = &v[n..];
            Ok(x)
        };
        match tok {
            Tok::LongYear => year = i64::from(num(&mut v, 4, 4)?),
            Tok::Year => {
                let y = i64::from(num(&mut v, 2, 2)?);
                year = if y >= 69 { 1900 + y } else { 2000 + y };
            }
            Tok::LongMonth | Tok::Month => {
                let i = MONTHS
                    .iter()
                    .position(|m| {
                        let name = if tok == Tok::Month { &m[..3] } else { m };
                        v.get(..name.len()).is_some_and(|p| p.eq_ignore_ascii_case(name))
                    })
                    .ok_or_else(err)?;
                v = &v[if tok == Tok::Month { 3 } else { MONTHS[i].len() }..];
                month = i as u32 + 1;
            }
            Tok::NumMonth | Tok::ZeroMonth => month = num(&mut v, if tok == Tok::ZeroMonth { 2 } else { 1 }, 2)?,
            Tok::LongWeekDay | Tok::WeekDay => {
                let i = DAYS
                    .iter()
                    .position(|d| {
                        let name = if tok == Tok::WeekDay { &d[..3] } else { d };
                        v.get(..name.len()).is_some_and(|p| p.eq_ignore_ascii_case(name))
                    })
                    .ok_or_else(err)?;
                v = &v[if tok == Tok::WeekDay { 3 } else { DAYS[i].len() }..];
            }
            Tok::Day | Tok::ZeroDay => day = num(&mut v, if tok == Tok::ZeroDay { 2 } else { 1 }, 2)?,
            Tok::UnderDay => {
                v = v.strip_prefix(' ').unwrap_or(v);
                day = num(&mut v, 1, 2)?;
            }
            Tok::UnderYearDay | Tok::ZeroYearDay => {
                v = v.trim_start_matches(' ');
                num(&mut v, 1, 3)?;
            }
            Tok::Hour => hour = num(&mut v, 2, 2)?,
            Tok::Hour12 | Tok::ZeroHour12 => hour = num(&mut v, if tok == Tok::ZeroHour12 { 2 } else { 1 }, 2)?,
            Tok::Minute | Tok::ZeroMinute => min = num(&mut v, if tok == Tok::ZeroMinute { 2 } else { 1 }, 2)?,
            Tok::Second | Tok::ZeroSecond => {
                sec = num(&mut v, if tok == Tok::ZeroSecond { 2 } else { 1 }, 2)?;
                // Go accepts a fractional second after the seconds even if the layout has none.
                if let Some(rest) = v.strip_prefix(['.', ','])
                    && !lay.starts_with(['.', ','])
                    && rest.starts_with(|c: char| c.is_ascii_digit())
                {
                    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
                    nanos = frac_nanos(&rest[..n]);
                    v = &rest[n..];
                }
            }
            Tok::PM | Tok::Pm => {
                let p = v.get(..2).ok_or_else(err)?;
                pm = Some(match p.to_ascii_uppercase().as_str() {
                    "PM" => true,
                    "AM" => false,
                    _ => return Err(err()),
                });
                v = &v[2..];
            }
            Tok::Tz => {
                let n = v.bytes().take_while(u8::is_ascii_uppercase).count();
                if n < 3 {
                    return Err(err());
                }
                zone_name = Some(v[..n].to_string());
                if &v[..n] == "UTC" || &v[..n] == "GMT" {
                    zone_offset = Some(0);
                }
                v = &v[n..];
            }
            Tok::Offset { z, colon, seconds, hours_only } => {
                if z && v.starts_with('Z') {
                    v = &v[1..];
                    zone_offset = Some(0);
                    continue;
                }
                let sign = match v.as_bytes().first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return Err(err()),
                };
                v = &v[1..];
                let h = num(&mut v, 2, 2)? as i32;
                let mut m = 0;
                let mut s = 0;
                if !hours_only {
                    if colon {
                        v = v.strip_prefix(':').ok_or_else(err)?;
                    }
                    m = num(&mut v, 2, 2)? as i32;
                    if seconds {
                        if colon {
                            v = v.strip_prefix(':').ok_or_else(err)?;
                        }
                        s = num(&mut v, 2, 2)? as i32;
                    }
                }
                zone_offset = Some(sign * (h * 3600 + m * 60 + s));
            }
            Tok::Frac { digits, trim, .. } => {
                let n = v.bytes().take_while(u8::is_ascii_digit).count();
                if !trim && n != digits {
                    return Err(err());
                }
                nanos = frac_nanos(&v[..n]);
                v = &v[n..];
            }
        }
    }
    if !v.is_empty() {
        return Err(format!("parsing time {value:?}: extra text: {v:?}"));
    }
    if let Some(pm) = pm {
        if hour > 12 {
            return Err(err());
        }
        hour = match (pm, hour) {
            (true, h) if h < 12 => h + 12,
            (false, 12) => 0,
            (_, h) => h,
        };
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 59 {
        return Err(format!("parsing time {value:?}: day out of range"));
    }
    let off = zone_offset.unwrap_or(offset);
    let local = days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + min * 60 + sec);
    let zone = match (&zone_name, zone_offset) {
        (Some(n), _) => n.clone(),
        (None, Some(0)) => "UTC".to_string(),
        (None, Some(_)) => String::new(),
        (None, None) => zone.to_string(),
    };
    Ok(GoTime { secs: local - i64::from(off), nanos, offset: off, zone })
}

fn frac_nanos(digits: &str) -> u32 {
    let mut n = 0u32;
    for (i, c) in digits.bytes().take(9).enumerate() {
        n += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
    }
    n
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}
