//! Benchmark data shared by the benches: log lines shaped like the load generator's
//! (`shared/bench/loadgen.py`, `line_for`) — logfmt access lines and JSON job lines with random
//! words, trace ids and numbers — from a fixed seed.

#![allow(dead_code)]

pub const WORDS: [&str; 14] = [
    "connection",
    "timeout",
    "retry",
    "cache",
    "miss",
    "hit",
    "upstream",
    "backend",
    "queue",
    "flush",
    "commit",
    "rollback",
    "session",
    "token",
];
const LEVELS: [&str; 20] = [
    "info", "info", "info", "info", "info", "info", "info", "info", "info", "info", "info", "info", "info", "info",
    "warn", "warn", "warn", "error", "error", "debug",
];
const METHODS: [&str; 6] = ["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const PATHS: [&str; 7] = ["/api/v1/users", "/api/v1/orders", "/api/v1/items", "/healthz", "/login", "/search", "/cart"];

/// splitmix64: a tiny deterministic generator, enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
    pub fn words(&mut self, n: usize) -> String {
        (0..n).map(|_| self.pick(&WORDS)).collect::<Vec<_>>().join(" ")
    }
}

/// The load generator's apps and namespaces: stream `i` is `APPS[i % 8]` in `NAMESPACES[i / 8 % 2]`.
pub const APPS: [&str; 8] = ["api", "web", "worker", "db", "cache", "auth", "billing", "search"];
pub const NAMESPACES: [&str; 2] = ["prod", "staging"];

#[derive(Clone, Copy, Debug)]
pub enum Format {
    Logfmt,
    Json,
}

impl Format {
    /// The format of `app`'s lines in the load generator: JSON for the job-like apps.
    pub fn of_app(app: &str) -> Format {
        if app == "worker" || app == "billing" { Format::Json } else { Format::Logfmt }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Logfmt => "logfmt",
            Format::Json => "json",
        }
    }
}

pub fn line_for(rng: &mut Rng, format: Format) -> String {
    let level = rng.pick(&LEVELS);
    let status = match level {
        "info" | "debug" => 200,
        "warn" => [404, 429][rng.below(2) as usize],
        _ => [500, 502, 503][rng.below(3) as usize],
    };
    let duration = rng.range(1, 900);
    // The top bit set: a generated trace id never equals a benchmark's needle.
    let trace_id = format!("{:016x}", rng.next() | 1 << 63);
    match format {
        Format::Json => format!(
            r#"{{"level":"{level}","job":"{}","duration_ms":{duration},"trace_id":"{trace_id}","attempt":{},"msg":"{}"}}"#,
            rng.pick(&WORDS),
            rng.range(1, 5),
            rng.words(6)
        ),
        Format::Logfmt => format!(
            "level={level} method={} path={}/{} status={status} duration={duration}ms bytes={} trace_id={trace_id} msg=\"{}\"",
            rng.pick(&METHODS),
            rng.pick(&PATHS),
            rng.range(1, 99_999),
            rng.range(100, 90_000),
            rng.words(5)
        ),
    }
}

/// Entries totalling at least `raw` line bytes, timestamps 180-225 ms apart.
pub fn dataset(format: Format, raw: usize) -> (Vec<(i64, Vec<u8>)>, usize) {
    let mut rng = Rng(42);
    let mut ts = 1_700_000_000_000_000_000i64;
    let (mut out, mut total) = (Vec::new(), 0);
    while total < raw {
        ts += 180_000_000 + rng.below(45_000_000) as i64;
        let line = line_for(&mut rng, format).into_bytes();
        total += line.len();
        out.push((ts, line));
    }
    (out, total)
}
