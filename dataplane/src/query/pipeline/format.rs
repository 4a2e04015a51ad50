//! Stages that rewrite the line or the labels: `line_format`, `label_format`, `decolorize`,
//! `drop` and `keep`.

use std::sync::OnceLock;

use regex::bytes::Regex;

use crate::logql::{LabelFmt, NamedMatcher};

use super::labels::{Category, ERROR_DETAILS_LABEL, ERROR_LABEL, LabelRef, LineLabels};
use super::template::{CompiledTemplate, Data, Env};

/// Loki's `__error__` value when a template fails.
pub(crate) const TEMPLATE_ERROR: &str = "TemplateFormatErr";

/// The labels as template data.
pub(crate) struct LabelsData<'a>(pub(crate) &'a LineLabels);

impl Data for LabelsData<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.0.get_with_errors(name)
    }

    fn entries(&self) -> Vec<(String, String)> {
        let mut refs: Vec<LabelRef> = Vec::new();
        self.0.collect(&mut refs);
        refs.iter().map(|r| (self.0.name(*r).to_string(), self.0.value(*r).to_string())).collect()
    }
}

/// A compiled `| line_format "..."`.
#[derive(Debug, Clone)]
pub(crate) struct LineFormatStage {
    tmpl: CompiledTemplate,
}

impl LineFormatStage {
    pub(crate) fn new(src: &str) -> Result<Self, String> {
        let tmpl = CompiledTemplate::new("line", src).map_err(|e| format!("invalid line template: {e}"))?;
        Ok(Self { tmpl })
    }

    pub(crate) fn fields(&self, out: &mut Vec<String>) {
        self.tmpl.fields(out);
    }

    /// Writes the new line into `out`; false (and `__error__` set) when the template fails, in
    /// which case the line is unchanged.
    pub(crate) fn process(&self, ts: i64, line: &[u8], labels: &mut LineLabels, out: &mut String) -> bool {
        out.clear();
        if let Some(key) = self.tmpl.simple_key() {
            if let Some(v) = labels.get(key) {
                out.push_str(v);
            }
            return true;
        }
        let res = self.tmpl.execute(&Env { data: &LabelsData(labels), line, ts }, out);
        match res {
            Ok(()) => true,
            Err(e) => {
                labels.set_err(TEMPLATE_ERROR);
                labels.set_err_details(&e);
                false
            }
        }
    }
}

#[derive(Debug, Clone)]
enum FmtKind {
    Rename(String),
    Template(CompiledTemplate),
}

/// A compiled `| label_format ...`.
#[derive(Debug, Clone)]
pub(crate) struct LabelFormatStage {
    fmts: Vec<(String, FmtKind)>,
    /// Templates read the labels as they were when the first template of the stage ran.
    snapshot: bool,
}

impl LabelFormatStage {
    pub(crate) fn new(fmts: &[LabelFmt]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(fmts.len());
        for (i, f) in fmts.iter().enumerate() {
            if f.name == ERROR_LABEL {
                return Err(format!("{} cannot be formatted", f.name));
            }
            if fmts[..i].iter().any(|g| g.name == f.name) {
                return Err(format!("multiple label name '{}' not allowed in a single format operation", f.name));
            }
            let kind = if f.rename {
                FmtKind::Rename(f.value.clone())
            } else {
                FmtKind::Template(
                    CompiledTemplate::new("label", &f.value)
                        .map_err(|e| format!("invalid template for label '{}': {e}", f.name))?,
                )
            };
            out.push((f.name.clone(), kind));
        }
        let first_template = out.iter().position(|(_, k)| matches!(k, FmtKind::Template(_)));
        let snapshot = first_template.is_some_and(|i| i + 1 < out.len());
        Ok(Self { fmts: out, snapshot })
    }

    pub(crate) fn fields(&self, out: &mut Vec<String>) {
        for (_, k) in &self.fmts {
            match k {
                FmtKind::Rename(src) => out.push(src.clone()),
                FmtKind::Template(t) => t.fields(out),
            }
        }
    }

    pub(crate) fn process(
        &self,
        ts: i64,
        line: &[u8],
        labels: &mut LineLabels,
        snap: &mut LineLabels,
        out: &mut String,
    ) {
        let mut snapped = false;
        for (name, kind) in &self.fmts {
            match kind {
                FmtKind::Rename(src) => {
                    if let Some(v) = labels.get(src) {
                        out.clear();
                        out.push_str(v);
                        labels.set(Category::Parsed, name, out);
                        labels.del(src);
                    }
                }
                FmtKind::Template(t) => {
                    if self.snapshot && !snapped {
                        snap.copy_from(labels);
                        snapped = true;
                    }
                    out.clear();
                    let data = if self.snapshot { &*snap } else { &*labels };
                    let res = t.execute(&Env { data: &LabelsData(data), line, ts }, out);
                    match res {
                        Ok(()) => labels.set(Category::Parsed, name, out),
                        Err(e) => {
                            labels.set_err(TEMPLATE_ERROR);
                            labels.set_err_details(&e);
                        }
                    }
                }
            }
        }
    }
}

/// The ANSI escape sequences `decolorize` removes.
fn ansi() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"[\x1B\x{9B}][\[\]()#;?]*(?:(?:(?:[a-zA-Z0-9]*(?:;[a-zA-Z0-9]*)*)?\x07)|(?:(?:[0-9]{1,4}(?:;[0-9]{0,4})*)?[0-9A-PRZcf-ntqry=><~]))",
        )
        // A constant pattern, covered by the tests.
        .expect("the ANSI pattern compiles")
    })
}

/// Writes the line without ANSI colour codes into `out`; false when it has none.
pub(crate) fn decolorize(line: &[u8], out: &mut Vec<u8>) -> bool {
    let re = ansi();
    if !re.is_match(line) {
        return false;
    }
    out.clear();
    let mut last = 0;
    for m in re.find_iter(line) {
        out.extend_from_slice(&line[last..m.start()]);
        last = m.end();
    }
    out.extend_from_slice(&line[last..]);
    true
}

/// `| drop a, b="v"`: removes labels by name, or by name and value; `__error__` and
/// `__error_details__` can be dropped too.
pub(crate) fn drop_labels(items: &[NamedMatcher], labels: &mut LineLabels) {
    for item in items {
        match item {
            NamedMatcher::Name(n) if n == ERROR_LABEL => labels.reset_err(),
            NamedMatcher::Name(n) if n == ERROR_DETAILS_LABEL => labels.reset_err_details(),
            NamedMatcher::Name(n) => {
                if labels.get(n).is_some() {
                    labels.del(n);
                }
            }
            NamedMatcher::Matcher(m) if m.name == ERROR_LABEL => {
                if m.matches(labels.err()) {
                    labels.reset_err();
                }
            }
            NamedMatcher::Matcher(m) if m.name == ERROR_DETAILS_LABEL => {
                if m.matches(labels.err_details()) {
                    labels.reset_err_details();
                }
            }
            NamedMatcher::Matcher(m) => {
                if m.matches(labels.get(&m.name).unwrap_or("")) {
                    labels.del(&m.name);
                }
            }
        }
    }
}

/// `| keep a, b="v"`: removes every label not listed (or whose value does not match); the
/// error labels stay.
pub(crate) fn keep_labels(items: &[NamedMatcher], labels: &mut LineLabels) {
    if items.is_empty() {
        return;
    }
    labels.retain(|name, value| {
        items.iter().any(|k| match k {
            NamedMatcher::Name(n) => n == name,
            NamedMatcher::Matcher(m) => m.name == name && m.matches(value),
        })
    });
}
