//! Merging scanned units into the query's result: per stream, the units in direction order up to
//! the one that reached the limit; across streams, Loki's `readStreams` — the first `limit`
//! entries of the merged sequence that the interval rule returns, grouped by result labels.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::Query;
use super::scan::{Greedy, OutEntry, UnitOutput};
use crate::entry::Direction;
use crate::labels::SharedLabels;
use crate::query::EvalError;
use crate::query::pipeline::ResultLabels;
use crate::query::value::{LogEntry, StreamResult};

/// Result labels seen across all units: each distinct [`ResultLabels`] (a *variant*) and the
/// result stream (*group*, keyed by the full label set) it belongs to.
#[derive(Default)]
struct Registry {
    variants: Vec<ResultLabels>,
    /// Group of each variant.
    group_of: Vec<usize>,
    /// Variants by hash of their full label set.
    by_hash: HashMap<u64, Vec<usize>>,
    /// Full label set of each group.
    groups: Vec<SharedLabels>,
    group_index: HashMap<SharedLabels, usize>,
}

impl Registry {
    fn variant(&mut self, labels: &ResultLabels) -> usize {
        let bucket = self.by_hash.entry(labels.hash).or_default();
        if let Some(&v) = bucket.iter().find(|&&v| self.variants[v] == *labels) {
            return v;
        }
        let v = self.variants.len();
        bucket.push(v);
        let group = match self.group_index.get(&labels.all) {
            Some(&g) => g,
            None => {
                self.groups.push(labels.all.clone());
                self.group_index.insert(labels.all.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        self.variants.push(labels.clone());
        self.group_of.push(group);
        v
    }
}

/// Merges the scanned units (`outputs[stream][unit]`, `None` for units not scanned) into the
/// sorted result streams.
pub(super) fn merge(
    query: &Query,
    labels: Vec<SharedLabels>,
    outputs: Vec<Vec<Option<UnitOutput>>>,
) -> Result<Vec<StreamResult>, EvalError> {
    let mut registry = Registry::default();
    let mut streams: Vec<Vec<OutEntry>> = Vec::with_capacity(outputs.len());
    for (s, units) in outputs.into_iter().enumerate() {
        let mut entries = Vec::new();
        for (u, unit) in units.into_iter().enumerate() {
            let Some(unit) = unit else {
                return Err(EvalError::Internal(format!("log query lost unit {u} of stream {}", labels[s])));
            };
            let global: Vec<u32> = unit.variants.iter().map(|v| registry.variant(v) as u32).collect();
            entries.extend(unit.entries.into_iter().map(|e| OutEntry { variant: global[e.variant as usize], ..e }));
            if unit.reached_limit {
                break;
            }
        }
        // Units stop on their own count; the stream as a whole may need fewer entries.
        let mut greedy = Greedy::new(query.direction, query.interval, query.limit);
        if let Some(cut) = entries.iter().position(|e| {
            greedy.offer(e.ts);
            greedy.full()
        }) {
            entries.truncate(cut + 1);
        }
        streams.push(entries);
    }

    // Result streams sort by their label string; ties on the timestamp go the same way.
    let names: Vec<String> = registry.groups.iter().map(|l| l.to_string()).collect();
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| names[a].cmp(&names[b]));
    let mut rank = vec![0u32; names.len()];
    for (r, &g) in order.iter().enumerate() {
        rank[g] = r as u32;
    }

    // Direction-ordered merge of the streams: a min-heap on (timestamp key, rank, stream).
    let ts_key = |ts: i64| match query.direction {
        Direction::Forward => ts,
        // `!` reverses the order of i64 without overflow.
        Direction::Backward => !ts,
    };
    let mut heap: BinaryHeap<Reverse<(i64, u32, usize)>> = BinaryHeap::with_capacity(streams.len());
    let mut pos = vec![0usize; streams.len()];
    for (s, entries) in streams.iter().enumerate() {
        if let Some(e) = entries.first() {
            heap.push(Reverse((ts_key(e.ts), rank[registry.group_of[e.variant as usize]], s)));
        }
    }
    let mut grouped: Vec<Vec<LogEntry>> = vec![Vec::new(); names.len()];
    let mut greedy = Greedy::new(query.direction, query.interval, query.limit);
    while !greedy.full() {
        let Some(Reverse((_, _, s))) = heap.pop() else {
            break;
        };
        let e = &streams[s][pos[s]];
        pos[s] += 1;
        if let Some(next) = streams[s].get(pos[s]) {
            heap.push(Reverse((ts_key(next.ts), rank[registry.group_of[next.variant as usize]], s)));
        }
        if greedy.offer(e.ts) {
            let v = &registry.variants[e.variant as usize];
            grouped[registry.group_of[e.variant as usize]].push(LogEntry {
                ts: e.ts,
                line: e.line.clone(),
                structured_metadata: v.structured_metadata.clone(),
                parsed: v.parsed.clone(),
            });
        }
    }

    let mut result = Vec::new();
    for g in order {
        let entries = std::mem::take(&mut grouped[g]);
        if entries.is_empty() {
            continue;
        }
        // Every variant of a group shares the full label set; the stream labels come from the
        // first variant seen (they are the same unless a pipeline moved labels between
        // categories differently per line).
        let stream_labels = registry
            .group_of
            .iter()
            .position(|&vg| vg == g)
            .map_or_else(|| registry.groups[g].clone(), |v| registry.variants[v].stream.clone());
        result.push(StreamResult { labels: registry.groups[g].clone(), stream_labels, entries });
    }
    Ok(result)
}

/// The streams of a `categorize-labels` response: result streams regrouped by their stream
/// labels alone (each entry keeps its structured metadata and parsed labels), entries of merged
/// groups in direction order, groups sorted by label string. What Loki returns when the client
/// asks for categorized labels: a label that only a parser or the metadata adds no longer splits
/// a stream.
pub fn categorize(streams: Vec<StreamResult>, direction: Direction) -> Vec<StreamResult> {
    let mut groups: BTreeMap<String, (StreamResult, bool)> = BTreeMap::new();
    for s in streams {
        match groups.entry(s.stream_labels.to_string()) {
            std::collections::btree_map::Entry::Occupied(mut g) => {
                let (group, merged) = g.get_mut();
                group.entries.extend(s.entries);
                *merged = true;
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                let group = StreamResult {
                    labels: s.stream_labels.clone(),
                    stream_labels: s.stream_labels,
                    entries: s.entries,
                };
                v.insert((group, false));
            }
        }
    }
    groups
        .into_values()
        .map(|(mut group, merged)| {
            if merged {
                // Stable: entries with equal timestamps keep the order of the streams they came
                // from, which is the order of the merged sequence.
                match direction {
                    Direction::Forward => group.entries.sort_by_key(|e| e.ts),
                    Direction::Backward => group.entries.sort_by_key(|e| Reverse(e.ts)),
                }
            }
            group
        })
        .collect()
}
