//! Drain (He et al., "Drain: An Online Log Parsing Approach with Fixed Depth Tree", ICWS 2017):
//! lines are split into tokens and sorted into clusters of the same length and first token; a
//! line joins the most similar cluster of its group when enough of its tokens equal the
//! cluster's template, and the template's differing tokens become the wildcard `<_>`.
//!
//! Templates are written so that they work as LogQL pattern filters (`|> "<template>"`): tokens
//! are split on single spaces and joined back with them, and a token that could read as a
//! capture (`<...>`) is always a wildcard.

use std::borrow::Cow;
use std::collections::HashMap;

/// The wildcard of a template, LogQL's unnamed capture.
pub const WILDCARD: &str = "<_>";

/// Drain's settings.
#[derive(Clone, Copy, Debug)]
pub struct DrainConfig {
    /// Fraction of a line's tokens that must equal a template's for the line to join it.
    pub similarity: f64,
    /// Most clusters kept; lines that would need another are not clustered.
    pub max_clusters: usize,
    /// Lines with more tokens than this are not clustered.
    pub max_tokens: usize,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self { similarity: 0.3, max_clusters: 300, max_tokens: 128 }
    }
}

/// One template and how many lines joined it.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub tokens: Vec<String>,
    pub lines: u64,
}

impl Cluster {
    /// The template as a LogQL pattern.
    pub fn pattern(&self) -> String {
        self.tokens.join(" ")
    }
}

/// The clusters of one stream.
#[derive(Debug, Default)]
pub struct Drain {
    cfg: DrainConfig,
    clusters: Vec<Cluster>,
    /// (token count, hash of the first token or of the wildcard) → clusters of that group.
    groups: HashMap<(usize, u64), Vec<usize>>,
}

impl Drain {
    pub fn new(cfg: DrainConfig) -> Self {
        Self { cfg, clusters: Vec::new(), groups: HashMap::new() }
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// Clusters `line`; the index of its cluster, or `None` when it was not clustered (too many
    /// tokens, no room for a new cluster, not UTF-8). Allocates only for a new cluster or a
    /// changed template.
    pub fn train(&mut self, line: &[u8]) -> Option<usize> {
        let text = std::str::from_utf8(line).ok()?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.bytes().filter(|b| *b == b' ').count() >= self.cfg.max_tokens {
            return None;
        }
        let tokens: Vec<Cow<'_, str>> = text.split(' ').map(mask).collect();
        let key = (tokens.len(), group_hash(&tokens[0]));
        let candidates = self.groups.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let mut best: Option<(usize, f64, usize)> = None;
        for &i in candidates {
            let (sim, params) = similarity(&self.clusters[i].tokens, &tokens);
            if sim >= self.cfg.similarity && best.is_none_or(|(_, s, p)| sim > s || (sim == s && params > p)) {
                best = Some((i, sim, params));
            }
        }
        if let Some((i, _, _)) = best {
            let c = &mut self.clusters[i];
            for (t, new) in c.tokens.iter_mut().zip(&tokens) {
                if t.as_str() != new.as_ref() {
                    *t = merge(t, new);
                }
            }
            c.lines += 1;
            return Some(i);
        }
        if self.clusters.len() >= self.cfg.max_clusters {
            return None;
        }
        self.clusters.push(Cluster { tokens: tokens.into_iter().map(Cow::into_owned).collect(), lines: 1 });
        let i = self.clusters.len() - 1;
        self.groups.entry(key).or_default().push(i);
        Some(i)
    }
}

/// A token as it enters a template: numbers and anything that could read as a capture become
/// wildcards (`key=` prefixes are kept: `took=12ms` → `took=<_>`).
fn mask(token: &str) -> Cow<'_, str> {
    if token.bytes().any(|b| b == b'<' || b == b'>') {
        return Cow::Borrowed(WILDCARD);
    }
    if !token.bytes().any(|b| b.is_ascii_digit()) {
        return Cow::Borrowed(token);
    }
    match token.split_once('=') {
        Some((key, _)) if !key.is_empty() && !key.bytes().any(|b| b.is_ascii_digit()) => {
            Cow::Owned(format!("{key}={WILDCARD}"))
        }
        _ => Cow::Borrowed(WILDCARD),
    }
}

/// The hash a group is keyed by: of the first token, or of the wildcard for tokens that vary.
fn group_hash(t: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(if t.contains(WILDCARD) { WILDCARD.as_bytes() } else { t.as_bytes() })
}

/// Fraction of positions where the template equals the line (wildcards count as no match) and
/// the number of wildcards, Drain's tie-breaker.
fn similarity(template: &[String], line: &[Cow<'_, str>]) -> (f64, usize) {
    let mut same = 0usize;
    let mut params = 0usize;
    for (t, l) in template.iter().zip(line) {
        if t == WILDCARD {
            params += 1;
        } else if t.as_str() == l.as_ref() {
            same += 1;
        }
    }
    (same as f64 / line.len().max(1) as f64, params)
}

/// Two differing tokens as one template token: `key=<_>` when they share a `key=`, `<_>` otherwise.
fn merge(a: &str, b: &str) -> String {
    match (a.split_once('='), b.split_once('=')) {
        (Some((ka, _)), Some((kb, _))) if ka == kb && !ka.is_empty() => format!("{ka}={WILDCARD}"),
        _ => WILDCARD.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(lines: &[&str]) -> Vec<(String, u64)> {
        let mut d = Drain::new(DrainConfig::default());
        for l in lines {
            d.train(l.as_bytes());
        }
        d.clusters().iter().map(|c| (c.pattern(), c.lines)).collect()
    }

    #[test]
    fn similar_lines_share_a_template() {
        let got = patterns(&[
            "user alice logged in from 10.0.0.1",
            "user bob logged in from 10.0.0.2",
            "user carol logged in from 10.0.0.3",
            "connection closed by peer",
            "connection reset by peer",
        ]);
        assert_eq!(
            got,
            vec![("user <_> logged in from <_>".to_string(), 3), ("connection <_> by peer".to_string(), 2)]
        );
    }

    #[test]
    fn logfmt_values_with_numbers_keep_their_keys() {
        let got = patterns(&[
            "level=info msg=\"request done\" status=200 took=12ms",
            "level=info msg=\"request done\" status=404 took=3ms",
        ]);
        assert_eq!(got, vec![("level=info msg=\"request done\" status=<_> took=<_>".to_string(), 2)]);
    }

    #[test]
    fn different_lengths_and_dissimilar_lines_stay_apart() {
        let got = patterns(&["a b c d", "a b c", "w x y z"]);
        assert_eq!(got.len(), 3, "{got:?}");
        let mut d = Drain::new(DrainConfig { max_clusters: 1, ..DrainConfig::default() });
        assert_eq!(d.train(b"one two"), Some(0));
        assert_eq!(d.train(b"three four five"), None, "no room for a second cluster");
        assert_eq!(d.train(&[0xff, 0xfe]), None);
    }

    #[test]
    fn captures_in_lines_cannot_leak_into_templates() {
        let got = patterns(&["GET <html> page"]);
        assert_eq!(got[0].0, "GET <_> page");
    }
}
