//! The label set of one entry while it moves through a pipeline, and the per-stream cache of
//! result label sets.
//!
//! Labels come from three sources, as in Loki: the stream's labels, the entry's structured
//! metadata and the labels parsers and `label_format` add ("parsed"). A name lives in one source
//! at a time; setting a parsed label hides a stream or metadata label of the same name, and a
//! metadata label hides a stream label. `__error__` and `__error_details__` are kept apart and
//! appear as parsed labels in results.
//!
//! Everything added while processing a line is written into one reusable string arena, so
//! processing a line allocates nothing once the buffers have grown.

use std::collections::HashMap;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use crate::labels::{Label, Labels, SharedLabels};

use super::ResultLabels;

/// The label Loki sets when a stage fails on a line.
pub(crate) const ERROR_LABEL: &str = "__error__";
/// The label holding the failing stage's message.
pub(crate) const ERROR_DETAILS_LABEL: &str = "__error_details__";
/// Suffix of a parsed (or metadata) label whose name is already taken.
pub(crate) const DUPLICATE_SUFFIX: &str = "_extracted";

/// Where an added label comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    /// Structured metadata of the entry.
    Metadata,
    /// Extracted by a parser or written by `label_format`.
    Parsed,
}

/// A byte range of the arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Debug, Clone, Copy)]
struct Added {
    cat: Category,
    name: Span,
    value: Span,
}

/// One label of the final set, by where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelRef {
    Base(u32),
    Added(u32),
    Err,
    Details,
}

/// The labels of the entry being processed: the stream's labels plus what stages changed.
#[derive(Debug, Clone)]
pub(crate) struct LineLabels {
    base: SharedLabels,
    arena: String,
    added: Vec<Added>,
    deleted: Vec<Span>,
    err: Option<Span>,
    err_details: Option<Span>,
    /// Bit i set: the i-th required label of the parser hints was extracted from this line.
    pub(crate) hint_mask: u64,
    /// A one-word Bloom filter of the names in `added`, to skip most scans.
    added_bloom: u64,
    /// The same for the stream's labels.
    base_bloom: u64,
}

/// The Bloom bit of a label name.
#[inline]
fn bloom_bit(name: &str) -> u64 {
    let b = name.as_bytes();
    let (first, last) = (b.first().copied().unwrap_or(0), b.last().copied().unwrap_or(0));
    1u64 << ((b.len() as u64).wrapping_mul(7).wrapping_add(u64::from(first)).wrapping_add(u64::from(last) * 3) & 63)
}

impl LineLabels {
    pub(crate) fn new(base: SharedLabels) -> Self {
        let base_bloom = base.iter().fold(0, |m, l| m | bloom_bit(&l.name));
        Self {
            base_bloom,
            added_bloom: 0,
            base,
            arena: String::with_capacity(256),
            added: Vec::with_capacity(16),
            deleted: Vec::new(),
            err: None,
            err_details: None,
            hint_mask: 0,
        }
    }

    /// Forgets everything the previous line added.
    pub(crate) fn reset(&mut self) {
        self.arena.clear();
        self.added.clear();
        self.deleted.clear();
        self.err = None;
        self.err_details = None;
        self.hint_mask = 0;
        self.added_bloom = 0;
    }

    /// The stream's labels.
    pub(crate) fn base(&self) -> &SharedLabels {
        &self.base
    }

    fn push(&mut self, s: &str) -> Span {
        let start = self.arena.len() as u32;
        self.arena.push_str(s);
        Span { start, end: self.arena.len() as u32 }
    }

    fn text(&self, sp: Span) -> &str {
        &self.arena[sp.range()]
    }

    #[inline]
    fn find_added(&self, name: &str) -> Option<usize> {
        if self.added_bloom & bloom_bit(name) == 0 {
            return None;
        }
        self.added.iter().position(|a| self.text(a.name) == name)
    }

    /// Whether nothing was added, deleted or failed: the result is the stream's labels.
    pub(crate) fn is_unchanged(&self) -> bool {
        self.added.is_empty() && self.deleted.is_empty() && self.err.is_none() && self.err_details.is_none()
    }

    /// The value of a label (not the error labels), as later stages see it.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        if let Some(i) = self.find_added(name) {
            return Some(self.text(self.added[i].value));
        }
        if !self.deleted.is_empty() && self.deleted.iter().any(|d| self.text(*d) == name) {
            return None;
        }
        if self.base_bloom & bloom_bit(name) == 0 {
            return None;
        }
        self.base.get(name)
    }

    /// `get` that also sees `__error__` and `__error_details__`, as templates do.
    pub(crate) fn get_with_errors(&self, name: &str) -> Option<&str> {
        match name {
            ERROR_LABEL => self.err.map(|s| self.text(s)),
            ERROR_DETAILS_LABEL => self.err_details.map(|s| self.text(s)),
            _ => self.get(name),
        }
    }

    /// Whether the stream's own labels (ignoring deletions) hold `name`.
    pub(crate) fn base_has(&self, name: &str) -> bool {
        self.base_bloom & bloom_bit(name) != 0 && self.base.iter().any(|l| l.name == name)
    }

    /// Whether a parsed label called `name` would collide with a stream label or structured
    /// metadata and must take the `_extracted` suffix.
    pub(crate) fn parsed_conflicts(&self, name: &str) -> bool {
        self.base_has(name) || self.added.iter().any(|a| a.cat == Category::Metadata && self.text(a.name) == name)
    }

    /// Whether `name` is already a parsed label of this line (set by a parser or
    /// `label_format`): parsers do not overwrite it, so the first value of a key wins.
    pub(crate) fn extracted_by_parser(&self, name: &str) -> bool {
        self.find_added(name).is_some_and(|i| self.added[i].cat == Category::Parsed)
    }

    /// Adds one structured metadata pair: a name held by a stream label takes the `_extracted`
    /// suffix; `__error__`/`__error_details__` set the error.
    pub(crate) fn add_metadata(&mut self, name: &str, value: &str) {
        if self.base_has(name) {
            let name_sp = self.push(name);
            self.arena.push_str(DUPLICATE_SUFFIX);
            let name_sp = Span { start: name_sp.start, end: self.arena.len() as u32 };
            let value_sp = self.push(value);
            self.set_spans(Category::Metadata, name_sp, value_sp);
            return;
        }
        match name {
            ERROR_LABEL => self.set_err(value),
            ERROR_DETAILS_LABEL => self.set_err_details(value),
            _ => {
                let name_sp = self.push(name);
                let value_sp = self.push(value);
                self.set_spans(Category::Metadata, name_sp, value_sp);
            }
        }
    }

    /// Sets a label with Loki's precedence: a parsed label replaces a metadata or stream label of
    /// the same name; a metadata label never replaces a parsed one.
    pub(crate) fn set(&mut self, cat: Category, name: &str, value: &str) {
        let name_sp = self.push(name);
        let value_sp = self.push(value);
        self.set_spans(cat, name_sp, value_sp);
    }

    /// Sets a parsed label extracted by a parser: `name` plus `_extracted` when `suffix`, the
    /// value written by `write` into the arena. Skipped when a parser already set that name for
    /// this line (the first occurrence of a key wins).
    pub(crate) fn set_extracted(&mut self, name: &str, suffix: bool, write: impl FnOnce(&mut String)) {
        self.set_parsed_with(name, suffix, true, write);
    }

    /// Sets a parsed label (`name`, plus `_extracted` when `suffix`) whose value `write` appends
    /// to the arena. With `first_wins` (implicit parsers), an existing parsed label is left
    /// alone.
    pub(crate) fn set_parsed_with(
        &mut self,
        name: &str,
        suffix: bool,
        first_wins: bool,
        write: impl FnOnce(&mut String),
    ) {
        let start = self.arena.len() as u32;
        self.arena.push_str(name);
        if suffix {
            self.arena.push_str(DUPLICATE_SUFFIX);
        }
        let name_sp = Span { start, end: self.arena.len() as u32 };
        if first_wins && self.extracted_by_parser(self.text(name_sp)) {
            self.arena.truncate(start as usize);
            return;
        }
        let vstart = self.arena.len() as u32;
        write(&mut self.arena);
        let value_sp = Span { start: vstart, end: self.arena.len() as u32 };
        self.set_spans(Category::Parsed, name_sp, value_sp);
    }

    fn set_spans(&mut self, cat: Category, name: Span, value: Span) {
        // A name lives in one source at a time, so at most one entry matches.
        match self.find_added(&self.arena[name.range()]) {
            Some(i) => {
                let a = &mut self.added[i];
                if a.cat == cat {
                    a.value = value;
                } else if cat == Category::Parsed {
                    // A parsed label hides a metadata label of the same name.
                    *a = Added { cat, name, value };
                }
                // A metadata label never replaces a parsed one.
            }
            None => {
                self.added_bloom |= bloom_bit(&self.arena[name.range()]);
                self.added.push(Added { cat, name, value });
            }
        }
    }

    /// Deletes a label from every source.
    pub(crate) fn del(&mut self, name: &str) {
        self.added.retain(|a| &self.arena[a.name.range()] != name);
        let sp = self.push(name);
        self.deleted.push(sp);
    }

    /// Keeps only the labels `keep` accepts (the error labels always stay), as `keep` does.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str, &str) -> bool) {
        let mut drop_base = Vec::new();
        for (i, l) in self.base.iter().enumerate() {
            let visible = !self.deleted.iter().any(|d| self.text(*d) == l.name) && self.find_added(&l.name).is_none();
            if visible && !keep(&l.name, &l.value) {
                drop_base.push(i);
            }
        }
        let mut k = 0;
        while k < self.added.len() {
            let a = self.added[k];
            if keep(self.text(a.name), self.text(a.value)) {
                k += 1;
            } else {
                self.added.remove(k);
                self.deleted.push(a.name);
            }
        }
        for i in drop_base {
            let base = self.base.clone();
            let sp = self.push(&base.as_slice()[i].name);
            self.deleted.push(sp);
        }
    }

    /// Makes `self` a copy of `other`, reusing its buffers.
    pub(crate) fn copy_from(&mut self, other: &LineLabels) {
        if !Arc::ptr_eq(&self.base, &other.base) {
            self.base = other.base.clone();
            self.base_bloom = other.base_bloom;
        }
        self.added_bloom = other.added_bloom;
        self.arena.clear();
        self.arena.push_str(&other.arena);
        self.added.clear();
        self.added.extend_from_slice(&other.added);
        self.deleted.clear();
        self.deleted.extend_from_slice(&other.deleted);
        self.err = other.err;
        self.err_details = other.err_details;
        self.hint_mask = other.hint_mask;
    }

    pub(crate) fn set_err(&mut self, err: &str) {
        self.err = Some(self.push(err));
    }

    pub(crate) fn set_err_details(&mut self, details: &str) {
        self.err_details = Some(self.push(details));
    }

    /// The error, `""` when none.
    pub(crate) fn err(&self) -> &str {
        self.err.map_or("", |s| self.text(s))
    }

    /// The error details, `""` when none.
    pub(crate) fn err_details(&self) -> &str {
        self.err_details.map_or("", |s| self.text(s))
    }

    pub(crate) fn has_err(&self) -> bool {
        self.err.is_some_and(|s| s.start != s.end)
    }

    pub(crate) fn reset_err(&mut self) {
        self.err = None;
    }

    pub(crate) fn reset_err_details(&mut self) {
        self.err_details = None;
    }

    /// The final labels in name order (stream labels not hidden or deleted, metadata, parsed,
    /// then the error labels when set).
    pub(crate) fn collect(&self, out: &mut Vec<LabelRef>) {
        out.clear();
        for (i, l) in self.base.iter().enumerate() {
            if self.deleted.iter().any(|d| self.text(*d) == l.name) || self.find_added(&l.name).is_some() {
                continue;
            }
            out.push(LabelRef::Base(i as u32));
        }
        for i in 0..self.added.len() {
            out.push(LabelRef::Added(i as u32));
        }
        if self.err.is_some_and(|s| s.start != s.end) {
            out.push(LabelRef::Err);
        }
        if self.err_details.is_some_and(|s| s.start != s.end) {
            out.push(LabelRef::Details);
        }
        if !self.added.is_empty() || self.err.is_some() || self.err_details.is_some() {
            out.sort_by(|a, b| self.name(*a).cmp(self.name(*b)));
        }
    }

    pub(crate) fn name(&self, r: LabelRef) -> &str {
        match r {
            LabelRef::Base(i) => &self.base.as_slice()[i as usize].name,
            LabelRef::Added(i) => self.text(self.added[i as usize].name),
            LabelRef::Err => ERROR_LABEL,
            LabelRef::Details => ERROR_DETAILS_LABEL,
        }
    }

    pub(crate) fn value(&self, r: LabelRef) -> &str {
        match r {
            LabelRef::Base(i) => &self.base.as_slice()[i as usize].value,
            LabelRef::Added(i) => self.text(self.added[i as usize].value),
            LabelRef::Err => self.err(),
            LabelRef::Details => self.err_details(),
        }
    }

    fn source(&self, r: LabelRef) -> Source {
        match r {
            LabelRef::Base(_) => Source::Stream,
            LabelRef::Added(i) => match self.added[i as usize].cat {
                Category::Metadata => Source::Metadata,
                Category::Parsed => Source::Parsed,
            },
            LabelRef::Err | LabelRef::Details => Source::Parsed,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Stream,
    Metadata,
    Parsed,
}

/// Which labels a result keeps (sample extraction may group early, as Loki does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Every label.
    All,
    /// Only these names (sorted); an entry with `__error__` keeps every label.
    By(Vec<String>),
    /// Every label except these; an entry with `__error__` keeps every label.
    Without(Vec<String>),
    /// No label at all, unless the entry failed.
    Nothing,
}

/// Most distinct label sets a stream keeps before the cache starts over.
const MAX_CACHED_RESULTS: usize = 4096;
/// Keyed lookups after which the hit rate is checked.
const WINDOW: u32 = 512;
/// Lookups done without the cache once it stopped paying off (almost every line had new
/// labels, e.g. a parser extracting a request id).
const BYPASS: u32 = 8192;
/// The index [`ResultCache::resolve`] returns for the uncached slot.
const SLOT: usize = usize::MAX;
/// The index of the stream's unchanged labels.
const UNCHANGED: usize = usize::MAX - 1;

/// Result label sets of one stream, so that lines producing the same labels share one
/// [`ResultLabels`] (and one `Arc<Labels>`). Consecutive lines with the same labels always
/// share; when nearly every line has new labels the hash map is skipped for a while.
#[derive(Debug, Default)]
pub(crate) struct ResultCache {
    entries: Vec<ResultLabels>,
    /// The serialized key of each entry (its hash is `xxh3_64(key)`).
    keys: Vec<Box<[u8]>>,
    by_hash: HashMap<u64, usize>,
    last: Option<usize>,
    /// The result of lines that changed no label.
    unchanged: Option<ResultLabels>,
    /// The result built while bypassing the map, and its key.
    slot: Option<ResultLabels>,
    slot_key: Vec<u8>,
    lookups: u32,
    hits: u32,
    bypass: u32,
    refs: Vec<LabelRef>,
    key: Vec<u8>,
}

impl ResultCache {
    /// The result at an index [`resolve`](Self::resolve) returned.
    pub(crate) fn get(&self, i: usize) -> &ResultLabels {
        let found = match i {
            SLOT => self.slot.as_ref(),
            UNCHANGED => self.unchanged.as_ref(),
            _ => self.entries.get(i),
        };
        // `resolve` only returns indices of results it holds.
        found.or(self.unchanged.as_ref()).or(self.entries.first()).expect("resolve returned a held result")
    }

    /// The index of the result for the labels' current state.
    pub(crate) fn resolve(&mut self, labels: &LineLabels, sel: &Selection) -> usize {
        let sel = if labels.has_err() { &Selection::All } else { sel };
        let unchanged = *sel == Selection::All && labels.is_unchanged();
        if unchanged && self.unchanged.is_some() {
            return UNCHANGED;
        }
        let mut refs = std::mem::take(&mut self.refs);
        if *sel == Selection::Nothing {
            refs.clear();
        } else {
            labels.collect(&mut refs);
        }
        match sel {
            Selection::All => {}
            Selection::By(names) => refs.retain(|r| names.iter().any(|n| n == labels.name(*r))),
            Selection::Without(names) => refs.retain(|r| !names.iter().any(|n| n == labels.name(*r))),
            Selection::Nothing => refs.clear(),
        }
        self.key.clear();
        self.key.push(0xff);
        for r in &refs {
            self.key.extend_from_slice(labels.name(*r).as_bytes());
            self.key.push(0xfe);
            self.key.extend_from_slice(labels.value(*r).as_bytes());
            self.key.push(0xff);
        }
        let i = if unchanged {
            self.unchanged = Some(build(labels, &refs, xxh3_64(&self.key)));
            UNCHANGED
        } else {
            self.lookup(labels, &refs)
        };
        self.refs = refs;
        i
    }

    fn lookup(&mut self, labels: &LineLabels, refs: &[LabelRef]) -> usize {
        if self.bypass > 0 {
            self.bypass -= 1;
            if self.slot.is_none() || self.slot_key != self.key {
                self.slot = Some(build(labels, refs, xxh3_64(&self.key)));
                self.slot_key.clone_from(&self.key);
            }
            return SLOT;
        }
        if let Some(i) = self.last.filter(|&i| *self.keys[i] == *self.key) {
            return self.count(i, true);
        }
        let hash = xxh3_64(&self.key);
        if let Some(&i) = self.by_hash.get(&hash)
            && *self.keys[i] == *self.key
        {
            self.last = Some(i);
            return self.count(i, true);
        }
        if self.entries.len() >= MAX_CACHED_RESULTS {
            self.clear();
        }
        let i = self.entries.len();
        self.entries.push(build(labels, refs, hash));
        self.keys.push(self.key.as_slice().into());
        self.by_hash.entry(hash).or_insert(i);
        self.last = Some(i);
        self.count(i, false)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.keys.clear();
        self.by_hash.clear();
        self.last = None;
    }

    /// Tracks the hit rate; when almost every line had labels never seen before, building
    /// them directly is cheaper than keeping them, so the map is released and skipped for a
    /// while. Returns where the current result now lives.
    fn count(&mut self, i: usize, hit: bool) -> usize {
        self.lookups += 1;
        self.hits += u32::from(hit);
        if self.lookups < WINDOW {
            return i;
        }
        let useless = self.hits * 10 < self.lookups;
        self.lookups = 0;
        self.hits = 0;
        if !useless {
            return i;
        }
        let current = self.entries.swap_remove(i);
        self.clear();
        self.slot = Some(current);
        self.slot_key.clone_from(&self.key);
        self.bypass = BYPASS;
        SLOT
    }
}

fn build(labels: &LineLabels, refs: &[LabelRef], hash: u64) -> ResultLabels {
    let label = |r: &LabelRef| Label::new(labels.name(*r), labels.value(*r));
    let base = labels.base();
    let stream_count = refs.iter().filter(|r| labels.source(**r) == Source::Stream).count();
    let whole_base = stream_count == base.len();
    let stream = if whole_base {
        base.clone()
    } else {
        Arc::new(Labels::from_vec(refs.iter().filter(|r| labels.source(**r) == Source::Stream).map(label).collect()))
    };
    let all = if whole_base && refs.len() == stream_count {
        base.clone()
    } else {
        Arc::new(Labels::from_vec(refs.iter().map(label).collect()))
    };
    let pick = |src: Source| -> Vec<Label> { refs.iter().filter(|r| labels.source(**r) == src).map(label).collect() };
    ResultLabels { all, hash, stream, structured_metadata: pick(Source::Metadata), parsed: pick(Source::Parsed) }
}
