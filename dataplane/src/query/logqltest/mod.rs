//! Loki's `.logqltest` conformance scripts: parser, checker and runner.
//!
//! A script loads log streams and evaluates queries against expected results (see [`script`]
//! for the format). The runner is backend-agnostic: it hands the loaded streams and each query
//! to a [`Harness`] — [`MemoryHarness`] evaluates in process over a [`MemorySource`]; a harness
//! that pushes through the distributor into an ingester and the object store runs the same
//! scripts against the real read path.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use norn::query::logqltest::{MemoryHarness, run};
//! let mut harness = MemoryHarness::default();
//! let summary = run(&["scripts/".into()], &mut harness, &mut std::io::stdout()).await?;
//! assert!(summary.ok());
//! # Ok(())
//! # }
//! ```

mod compare;
mod lex;
pub mod runner;
pub mod script;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;

pub use compare::{check, values_equal};
pub use runner::{FileReport, Summary, run, run_file, run_script};
pub use script::{Script, ScriptError, parse_script};

use crate::entry::Entry;
use crate::labels::{Labels, write_go_quoted};
use crate::logql::parse_expr;
use crate::query::{Engine, EvalLimits, MemorySource, QueryParams, Value};

/// Why an eval produced no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalFailure {
    /// The query was refused: a parse or evaluation error, with the text a user would see.
    /// This is what `expect fail` matches.
    #[error("{0}")]
    Query(String),
    /// The harness itself failed (loading data, transport): never an expected failure.
    #[error("harness: {0}")]
    Harness(String),
}

/// A backend the runner evaluates scripts against.
///
/// Times are nanoseconds since the Unix epoch exactly as the script gives them (offsets from
/// t=0); a harness whose ingestion refuses old timestamps has to be configured to accept them
/// rather than shift them.
#[async_trait]
pub trait Harness: Send {
    /// Replaces all data with `streams`: labels (sorted, no empty values) and entries in load
    /// order (not necessarily sorted by time). Called before the first eval of a script and
    /// before each eval that follows a `clear` or `load`. The same label set can appear more
    /// than once when the script used `flush`: each item is then meant to be a separate chunk.
    async fn load(&mut self, streams: Vec<(Labels, Vec<Entry>)>) -> Result<(), String>;

    /// Evaluates `query` with `params` (what a script's eval translates to, see
    /// [`script::Eval::params`]).
    async fn eval(&mut self, query: &str, params: &QueryParams) -> Result<Value, EvalFailure>;
}

/// Evaluates scripts in process: data in a [`MemorySource`], queries through
/// [`parse_expr`] and [`Engine`].
pub struct MemoryHarness {
    source: Arc<MemorySource>,
    engine: Engine,
}

impl MemoryHarness {
    /// A harness with no data that evaluates with `engine`.
    pub fn new(engine: Engine) -> Self {
        MemoryHarness { source: Arc::new(MemorySource::default()), engine }
    }
}

impl Default for MemoryHarness {
    fn default() -> Self {
        MemoryHarness::new(Engine::new(EvalLimits::default()))
    }
}

#[async_trait]
impl Harness for MemoryHarness {
    async fn load(&mut self, streams: Vec<(Labels, Vec<Entry>)>) -> Result<(), String> {
        self.source = Arc::new(MemorySource::new(streams));
        Ok(())
    }

    async fn eval(&mut self, query: &str, params: &QueryParams) -> Result<Value, EvalFailure> {
        let expr = parse_expr(query).map_err(|e| EvalFailure::Query(e.to_string()))?;
        self.engine.query(self.source.clone(), &expr, params).await.map_err(|e| EvalFailure::Query(e.to_string()))
    }
}

/// `s` as a Go double-quoted string, for reports.
fn go_quote_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    // Writing to a String cannot fail.
    let _ = write_go_quoted(&mut out, s);
    out
}
