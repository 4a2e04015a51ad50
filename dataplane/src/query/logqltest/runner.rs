//! Running scripts against a [`Harness`] and reporting per file.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::compare::{check, render_expected, render_outcome};
use super::script::{Command, Eval, LoadLine, Script, ScriptError, parse_script};
use super::{EvalFailure, Harness};
use crate::entry::Entry;
use crate::labels::Labels;

/// Totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Script files run (or tried).
    pub files: usize,
    /// Evals that matched their expectation.
    pub passed: usize,
    /// Evals that did not.
    pub failed: usize,
    /// Files that could not be read or parsed; none of their evals ran.
    pub broken_files: usize,
}

impl Summary {
    /// Whether every eval of every file passed.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.broken_files == 0
    }
}

/// The outcome of one eval that did not match.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// `file:line`.
    pub location: String,
    /// The eval line.
    pub eval: String,
    /// Why it does not match.
    pub reason: String,
    /// The expectation, in script syntax.
    pub expected: Vec<String>,
    /// What the query returned, in script syntax.
    pub got: Vec<String>,
}

/// The outcome of one script.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    /// The script's file name.
    pub name: String,
    /// Evals run.
    pub evals: usize,
    /// The evals that did not match.
    pub failures: Vec<EvalReport>,
    /// Set when the file could not be read or parsed.
    pub error: Option<ScriptError>,
}

/// The `*.logqltest` files of `paths`: a directory stands for its scripts, sorted by name; a
/// file for itself. A directory that cannot be listed is an error.
pub fn expand(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "logqltest"))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Runs every script of `paths` (see [`expand`]) against `harness`, writing one line per file
/// (`PASS name (N evals)` / `FAIL name (k of N failed)`), a short diff under each failed eval,
/// and a last line `N passed, M failed` counting evals (a file that cannot be read or parsed
/// counts as one failure). Errors are those of writing to `out` or listing a directory.
pub async fn run(paths: &[PathBuf], harness: &mut dyn Harness, out: &mut impl Write) -> io::Result<Summary> {
    let mut summary = Summary::default();
    for path in expand(paths)? {
        let report = run_file(&path, harness).await;
        summary.files += 1;
        if report.error.is_some() {
            summary.broken_files += 1;
        } else {
            summary.failed += report.failures.len();
            summary.passed += report.evals - report.failures.len();
        }
        write_report(out, &report)?;
    }
    writeln!(out, "{} passed, {} failed", summary.passed, summary.failed + summary.broken_files)?;
    Ok(summary)
}

/// Reads, parses and runs one script.
pub async fn run_file(path: &Path, harness: &mut dyn Harness) -> FileReport {
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let error =
                ScriptError { file: name.clone(), line: 0, message: format!("cannot read {}: {e}", path.display()) };
            return FileReport { name, error: Some(error), ..FileReport::default() };
        }
    };
    match parse_script(&name, &text) {
        Ok(script) => run_script(&script, harness).await,
        Err(error) => FileReport { name, error: Some(error), ..FileReport::default() },
    }
}

/// The streams loaded so far, in first-load order: entries of equal labels go to one stream,
/// and a `flush` starts new ones (a stream's later entries then come as a separate item with the
/// same labels, to be stored as a separate chunk).
#[derive(Debug, Default)]
struct Loaded {
    streams: Vec<(Labels, Vec<Entry>)>,
    /// (labels, flush generation) -> index into `streams`.
    index: HashMap<(Labels, usize), usize>,
    generation: usize,
}

impl Loaded {
    fn add(&mut self, lines: &[LoadLine]) {
        for l in lines {
            let key = (l.labels.clone(), self.generation);
            let i = *self.index.entry(key).or_insert_with(|| {
                self.streams.push((l.labels.clone(), Vec::new()));
                self.streams.len() - 1
            });
            self.streams[i].1.extend(l.entries.iter().cloned());
        }
    }
}

/// Runs a parsed script: data is handed to the harness before the first eval after a change.
pub async fn run_script(script: &Script, harness: &mut dyn Harness) -> FileReport {
    let mut report = FileReport { name: script.name.clone(), ..FileReport::default() };
    let mut loaded = Loaded::default();
    // Each script starts from no data.
    let mut changed = true;
    let mut load_error: Option<String> = None;
    for command in &script.commands {
        match command {
            Command::Clear => {
                loaded = Loaded::default();
                changed = true;
            }
            Command::Flush => loaded.generation += 1,
            Command::Load(lines) => {
                loaded.add(lines);
                changed = true;
            }
            Command::Eval(eval) => {
                if changed {
                    load_error = harness.load(loaded.streams.clone()).await.err();
                    changed = false;
                }
                report.evals += 1;
                let outcome = match &load_error {
                    Some(e) => Err(EvalFailure::Harness(format!("loading the data failed: {e}"))),
                    None => harness.eval(&eval.query, &eval.params()).await,
                };
                if let Err(reason) = check(eval, &outcome) {
                    report.failures.push(failure(&script.name, eval, reason, &outcome));
                }
            }
        }
    }
    report
}

fn failure(file: &str, eval: &Eval, reason: String, outcome: &Result<crate::query::Value, EvalFailure>) -> EvalReport {
    EvalReport {
        location: format!("{file}:{}", eval.line),
        eval: eval.text.clone(),
        reason,
        expected: render_expected(eval),
        got: render_outcome(eval, outcome),
    }
}

/// Writes a file's status line and its failures.
pub fn write_report(out: &mut impl Write, report: &FileReport) -> io::Result<()> {
    if let Some(e) = &report.error {
        return writeln!(out, "FAIL {} (script error: {e})", report.name);
    }
    if report.failures.is_empty() {
        return writeln!(out, "PASS {} ({} evals)", report.name, report.evals);
    }
    writeln!(out, "FAIL {} ({} of {} failed)", report.name, report.failures.len(), report.evals)?;
    for f in &report.failures {
        writeln!(out, "  {}: {}", f.location, f.eval)?;
        writeln!(out, "    {}", f.reason)?;
        writeln!(out, "    expected:")?;
        for l in &f.expected {
            writeln!(out, "      {l}")?;
        }
        writeln!(out, "    got:")?;
        for l in &f.got {
            writeln!(out, "      {l}")?;
        }
    }
    Ok(())
}
