//! LogQL: the query language of Loki, parsed into an AST and printed back.
//!
//! [`parse_expr`] accepts the whole language: stream selectors, line filters (`|=`, `!=`, `|~`,
//! `!~`, `|>`, `!>`, `or` chains, `ip()`), parsers (`json`, `logfmt`, `regexp`, `pattern`,
//! `unpack`), label filters, `line_format`, `label_format`, `drop`, `keep`, `decolorize`,
//! range aggregations with `unwrap` and `offset`, vector aggregations, binary operations with
//! vector matching, `label_replace`, `vector()` and literals. It follows Loki's grammar,
//! precedence and error messages; the `Display` impls print Loki's canonical `String()` form,
//! and `parse_expr(&e.to_string()) == Ok(e)` for every tree the parser produces.
//!
//! [`pretty`] gives the multi-line layout of Loki's `format_query` endpoint.
//!
//! Regular expressions are Go regexes, compiled once while parsing (see [`GoRegex`]).
//! Templates of `line_format`/`label_format` are kept as source text and checked for syntax.

#![warn(missing_docs)]

mod ast;
mod display;
mod error;
mod goregex;
mod ip;
mod lexer;
mod parser;
mod pattern;
mod pipeline;
mod pretty;
pub mod template;
mod template_lex;
mod token;
pub(crate) mod units;

#[cfg(test)]
mod tests;

pub use ast::*;
pub use error::{ParseError, ParseErrorKind};
pub use goregex::GoRegex;
pub use ip::IpPattern;
pub use parser::{MAX_NESTING_DEPTH, MAX_QUERY_BYTES};
pub use pattern::{Pattern, PatternNode};
pub use pretty::pretty;
pub(crate) use units::{parse_go_duration, parse_go_float};

/// Parses a LogQL query (log or metric) and validates it as Loki's `ParseExpr` does.
pub fn parse_expr(input: &str) -> Result<Expr, ParseError> {
    parser::Parser::new(input).parse_query()
}

/// Parses a metric query; a log query is an error (`only sample expression supported`).
pub fn parse_sample_expr(input: &str) -> Result<SampleExpr, ParseError> {
    match parse_expr(input)? {
        Expr::Sample(s) => Ok(s),
        Expr::Log(_) => Err(ParseError::wrong_type("only sample expression supported")),
    }
}

/// Parses a log query; a metric query is an error (`only log selector is supported`).
pub fn parse_log_selector(input: &str) -> Result<LogExpr, ParseError> {
    match parse_expr(input)? {
        Expr::Log(l) => Ok(l),
        Expr::Sample(_) => Err(ParseError::wrong_type("only log selector is supported")),
    }
}

/// Parses a bare stream selector such as a `match[]` parameter of `/series` (`{a="b"}`); a
/// pipeline or a metric query is an error (`only label matchers is supported`).
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, ParseError> {
    match parse_expr(input)? {
        Expr::Log(l) if l.stages.is_empty() => Ok(l.matchers),
        _ => Err(ParseError::wrong_type("only label matchers is supported")),
    }
}
