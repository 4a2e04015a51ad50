//! Parsing of stream selectors, pipelines, label filters and log ranges.

use super::ast::*;
use super::error::ParseError;
use super::goregex::{Anchor, GoRegex, capture_names};
use super::ip::{INVALID_OPERATION, IpPattern};
use super::lexer::{Flag, TokVal};
use super::parser::Parser;
use super::pattern::{validate_filter_pattern, validate_parser_pattern};
use super::template;
use super::token::Tok;

/// Loki's message for a selector without a matcher that excludes the empty value.
pub(crate) const ERR_NO_EQUALITY_MATCHER: &str = "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";

/// Where a pipeline is parsed: a log query, or the inside of a range aggregation where
/// `| unwrap` may end it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Log,
    Range,
}

impl Parser<'_> {
    /// A log query: a selector and its pipeline.
    pub(crate) fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let matchers = self.selector()?;
        let stages = self.pipeline(Ctx::Log)?;
        Ok(LogExpr { matchers, stages })
    }

    /// `{name op "value", ...}`; an empty selector parses and is reported after parsing.
    pub(crate) fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        let offset = self.tok().start;
        self.expect(Tok::LBrace, &[Tok::LBrace])?;
        let mut matchers = Vec::new();
        if self.kind() == Tok::RBrace {
            self.bump();
        } else {
            let mut expected: &[Tok] = &[Tok::Ident, Tok::RBrace];
            loop {
                let name = self.expect_ident(expected)?;
                matchers.push(self.matcher_after_name(name)?);
                match self.kind() {
                    Tok::RBrace => {
                        self.bump();
                        break;
                    }
                    Tok::Comma => {
                        self.bump();
                        expected = &[Tok::Ident];
                    }
                    _ => return Err(self.unexpected(&[Tok::RBrace, Tok::Comma])),
                }
            }
        }
        if !matchers.iter().any(|m| !m.matches("")) {
            self.defer(ERR_NO_EQUALITY_MATCHER, offset);
        }
        Ok(matchers)
    }

    /// The operator and value of a matcher whose name was just read.
    fn matcher_after_name(&mut self, name: String) -> Result<Matcher, ParseError> {
        let op = match self.kind() {
            Tok::Eq => MatchOp::Eq,
            Tok::Neq => MatchOp::Neq,
            Tok::Re => MatchOp::Re,
            Tok::Nre => MatchOp::Nre,
            _ => return Err(self.unexpected(&[Tok::Eq, Tok::Re, Tok::Nre, Tok::Neq])),
        };
        self.bump();
        let offset = self.tok().start;
        let value = self.expect_str(&[Tok::Str])?;
        new_matcher(name, op, value, offset)
    }

    fn pipeline(&mut self, ctx: Ctx) -> Result<Vec<Stage>, ParseError> {
        let mut stages = Vec::new();
        loop {
            match self.kind() {
                Tok::PipeExact | Tok::Neq | Tok::PipeMatch | Tok::Nre | Tok::PipePattern | Tok::Npa => {
                    self.line_filter(&mut stages)?;
                }
                Tok::Pipe => {
                    if ctx == Ctx::Range && self.kind_at(1) == Tok::Unwrap {
                        return Ok(stages);
                    }
                    let stage_offset = self.tok().start;
                    self.bump();
                    let stage = self.pipe_stage()?;
                    self.check_stage(&stage, stage_offset);
                    stages.push(stage);
                }
                _ => return Ok(stages),
            }
        }
    }

    /// A stage after `|`.
    fn pipe_stage(&mut self) -> Result<Stage, ParseError> {
        let offset = self.tok().start;
        Ok(match self.kind() {
            Tok::Json => {
                self.bump();
                Stage::Json(self.extractions()?)
            }
            Tok::Logfmt => {
                self.bump();
                let mut p = LogfmtParser::default();
                while self.kind() == Tok::ParserFlag {
                    match self.bump().val {
                        TokVal::Flag(Flag::Strict) => p.strict = true,
                        TokVal::Flag(Flag::KeepEmpty) => p.keep_empty = true,
                        _ => {}
                    }
                }
                p.extractions = self.extractions()?;
                Stage::Logfmt(p)
            }
            Tok::Regexp => {
                self.bump();
                let source = self.expect_str(&[Tok::Str])?;
                let regex = regexp_parser(&source)
                    .map_err(|e| ParseError::invalid(format!("invalid regexp parser: {e}"), offset))?;
                Stage::Regexp(RegexpParser { source, regex })
            }
            Tok::Pattern => {
                self.bump();
                let source = self.expect_str(&[Tok::Str])?;
                let pattern = validate_parser_pattern(&source)
                    .map_err(|e| ParseError::invalid(format!("invalid pattern parser: {e}"), offset))?;
                Stage::Pattern(PatternParser { source, pattern })
            }
            Tok::Unpack => {
                self.bump();
                Stage::Unpack
            }
            Tok::Decolorize => {
                self.bump();
                Stage::Decolorize
            }
            Tok::LineFmt => {
                self.bump();
                Stage::LineFormat(self.expect_str(&[Tok::Str])?)
            }
            Tok::LabelFmt => {
                self.bump();
                let mut fmts = Vec::new();
                loop {
                    let name = self.expect_ident(&[Tok::Ident])?;
                    self.expect(Tok::Eq, &[Tok::Eq])?;
                    let f = match self.kind() {
                        Tok::Ident => {
                            let value = self.text().to_string();
                            self.bump();
                            LabelFmt { name, value, rename: true }
                        }
                        Tok::Str => LabelFmt { name, value: self.expect_str(&[])?, rename: false },
                        _ => return Err(self.unexpected(&[Tok::Ident, Tok::Str])),
                    };
                    fmts.push(f);
                    if self.kind() != Tok::Comma {
                        break;
                    }
                    self.bump();
                }
                Stage::LabelFormat(fmts)
            }
            Tok::Drop | Tok::Keep => {
                let keep = self.bump().kind == Tok::Keep;
                let mut items = Vec::new();
                loop {
                    let name = self.expect_ident(&[Tok::Ident])?;
                    if matches!(self.kind(), Tok::Eq | Tok::Neq | Tok::Re | Tok::Nre) {
                        items.push(NamedMatcher::Matcher(self.matcher_after_name(name)?));
                    } else {
                        items.push(NamedMatcher::Name(name));
                    }
                    if self.kind() != Tok::Comma {
                        break;
                    }
                    self.bump();
                }
                if keep { Stage::Keep(items) } else { Stage::Drop(items) }
            }
            Tok::Ident | Tok::LParen => Stage::LabelFilter(self.label_filter(0)?),
            _ => return Err(self.unexpected(&[])),
        })
    }

    /// `label="expr", label, ...` after `json`/`logfmt`; empty when none follows.
    fn extractions(&mut self) -> Result<Vec<Extraction>, ParseError> {
        let mut out = Vec::new();
        if self.kind() != Tok::Ident {
            return Ok(out);
        }
        loop {
            let label = self.expect_ident(&[Tok::Ident])?;
            let expr = if self.kind() == Tok::Eq {
                self.bump();
                self.expect_str(&[Tok::Str])?
            } else {
                label.clone()
            };
            out.push(Extraction { label, expr });
            if self.kind() != Tok::Comma {
                return Ok(out);
            }
            self.bump();
        }
    }

    /// A line filter with its `or` alternatives, appended as one stage, or as one stage per
    /// alternative for negative operators (Loki's `!= "a" or "b"` is `!= "a" != "b"`).
    fn line_filter(&mut self, stages: &mut Vec<Stage>) -> Result<(), ParseError> {
        let offset = self.tok().start;
        let op = match self.bump().kind {
            Tok::PipeExact => LineFilterOp::Contains,
            Tok::Neq => LineFilterOp::NotContains,
            Tok::PipeMatch => LineFilterOp::Match,
            Tok::Nre => LineFilterOp::NotMatch,
            Tok::PipePattern => LineFilterOp::Pattern,
            _ => LineFilterOp::NotPattern,
        };
        let mut alternatives = vec![self.line_match()?];
        while self.kind() == Tok::Or {
            self.bump();
            alternatives.push(self.line_match()?);
        }
        let mut new_stages = Vec::new();
        if op.is_negative() {
            for alt in alternatives {
                new_stages.push(LineFilter { op, alternatives: vec![alt] });
            }
        } else {
            new_stages.push(LineFilter { op, alternatives });
        }
        for mut f in new_stages {
            if let Err(e) = compile_line_filter(&mut f) {
                let stage = Stage::LineFilter(f);
                self.defer(format!("stage '{stage}' : {e}"), offset);
                stages.push(stage);
            } else {
                stages.push(Stage::LineFilter(f));
            }
        }
        Ok(())
    }

    fn line_match(&mut self) -> Result<LineMatch, ParseError> {
        match self.kind() {
            Tok::Str => Ok(LineMatch::Text { text: self.expect_str(&[])?, regex: None, pattern: None }),
            Tok::Ip => Ok(LineMatch::Ip(self.ip_call()?)),
            _ => Err(self.unexpected(&[Tok::Str, Tok::Ip])),
        }
    }

    /// `ip("...")` at the `ip` token; returns the pattern.
    fn ip_call(&mut self) -> Result<String, ParseError> {
        self.bump();
        self.expect(Tok::LParen, &[Tok::LParen])?;
        let pattern = self.expect_str(&[Tok::Str])?;
        self.expect(Tok::RParen, &[Tok::RParen])?;
        Ok(pattern)
    }

    /// Label filters joined by `and`, `or`, `,` and juxtaposition, with Loki's precedence: `or`
    /// binds loosest, `and` tighter; `,` and juxtaposition take everything to their right (the
    /// grammar's shift preference), so `a, b or c` is `a and (b or c)`.
    pub(crate) fn label_filter(&mut self, min_prec: u8) -> Result<LabelFilter, ParseError> {
        self.nested(|p| p.label_filter_unbounded(min_prec))
    }

    fn label_filter_unbounded(&mut self, min_prec: u8) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_primary()?;
        loop {
            match self.kind() {
                Tok::Comma | Tok::Ident | Tok::LParen => {
                    if self.kind() == Tok::Comma {
                        self.bump();
                        if !matches!(self.kind(), Tok::Ident | Tok::LParen) {
                            return Err(self.unexpected(&[Tok::Ident, Tok::LParen]));
                        }
                    }
                    let rhs = self.label_filter(0)?;
                    lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
                }
                Tok::And if min_prec <= 2 => {
                    self.bump();
                    if !matches!(self.kind(), Tok::Ident | Tok::LParen) {
                        return Err(self.unexpected(&[Tok::Ident, Tok::LParen]));
                    }
                    let rhs = self.label_filter(3)?;
                    lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
                }
                Tok::Or if min_prec <= 1 => {
                    self.bump();
                    if !matches!(self.kind(), Tok::Ident | Tok::LParen) {
                        return Err(self.unexpected(&[Tok::Ident, Tok::LParen]));
                    }
                    let rhs = self.label_filter(2)?;
                    lhs = LabelFilter::Or(Box::new(lhs), Box::new(rhs));
                }
                _ => return Ok(lhs),
            }
        }
    }

    fn label_filter_primary(&mut self) -> Result<LabelFilter, ParseError> {
        if self.kind() == Tok::LParen {
            self.bump();
            let inner = self.label_filter(0)?;
            self.expect(Tok::RParen, &[])?;
            return Ok(inner);
        }
        let name = self.expect_ident(&[Tok::Ident, Tok::LParen])?;
        let op_kind = self.kind();
        let cmp = match op_kind {
            Tok::Eq | Tok::CmpEq => CmpOp::Eq,
            Tok::Neq => CmpOp::Neq,
            Tok::Gt => CmpOp::Gt,
            Tok::Gte => CmpOp::Gte,
            Tok::Lt => CmpOp::Lt,
            Tok::Lte => CmpOp::Lte,
            Tok::Re | Tok::Nre => return Ok(LabelFilter::Matcher(self.matcher_after_name(name)?)),
            _ => return Err(self.unexpected(&[])),
        };
        self.bump();
        let value_kind = self.kind();
        match value_kind {
            Tok::Str if matches!(op_kind, Tok::Eq | Tok::Neq) => {
                let offset = self.tok().start;
                let value = self.expect_str(&[])?;
                let op = if op_kind == Tok::Eq { MatchOp::Eq } else { MatchOp::Neq };
                Ok(LabelFilter::Matcher(new_matcher(name, op, value, offset)?))
            }
            Tok::Ip if matches!(op_kind, Tok::Eq | Tok::Neq) => {
                let pattern = self.ip_call()?;
                Ok(LabelFilter::Ip { name, negated: op_kind == Tok::Neq, pattern })
            }
            Tok::Duration => {
                let value = match self.bump().val {
                    TokVal::Duration(d) => d,
                    _ => 0,
                };
                Ok(LabelFilter::Duration { name, op: cmp, value })
            }
            Tok::Bytes => {
                let value = match self.bump().val {
                    TokVal::Bytes(b) => b,
                    _ => 0,
                };
                Ok(LabelFilter::Bytes { name, op: cmp, value })
            }
            Tok::Number | Tok::Add | Tok::Sub => {
                let value = self.literal()?;
                Ok(LabelFilter::Number { name, op: cmp, value })
            }
            _ => Err(self.unexpected(&[])),
        }
    }

    /// The argument of a range aggregation: a selector with a pipeline, an optional unwrap, a
    /// range and an optional offset, in any of the orders Loki accepts.
    pub(crate) fn log_range(&mut self) -> Result<LogRange, ParseError> {
        if self.kind() == Tok::LParen {
            self.bump();
            if self.kind() == Tok::LParen {
                let inner = self.log_range()?;
                self.expect(Tok::RParen, &[Tok::RParen])?;
                return Ok(inner);
            }
            if self.kind() != Tok::LBrace {
                return Err(self.unexpected(&[Tok::LBrace, Tok::LParen]));
            }
            let matchers = self.selector()?;
            let stages = self.pipeline(Ctx::Range)?;
            let unwrap = self.opt_unwrap()?;
            if self.kind() == Tok::RParen {
                // `( selector [pipeline] [unwrap] ) [range] [offset]`.
                self.bump();
                let range = self.range_token(&[Tok::Range])?;
                let offset = self.opt_offset()?;
                let bare = stages.is_empty() && unwrap.is_none();
                let unwrap = if bare { self.opt_unwrap()? } else { unwrap };
                return Ok(LogRange { selector: LogExpr { matchers, stages }, range, offset, unwrap });
            }
            // `( logRangeExpr )`.
            let inner = self.finish_log_range(matchers, stages, unwrap)?;
            self.expect(Tok::RParen, &[Tok::RParen])?;
            return Ok(inner);
        }
        let matchers = self.selector()?;
        let stages = self.pipeline(Ctx::Range)?;
        let unwrap = self.opt_unwrap()?;
        self.finish_log_range(matchers, stages, unwrap)
    }

    /// After `selector [pipeline] [unwrap]`: the range, the offset and, when nothing preceded the
    /// range, a pipeline and unwrap after it.
    fn finish_log_range(
        &mut self,
        matchers: Vec<Matcher>,
        mut stages: Vec<Stage>,
        mut unwrap: Option<Unwrap>,
    ) -> Result<LogRange, ParseError> {
        let expected: &[Tok] = if unwrap.is_some() { &[Tok::Range, Tok::Pipe] } else { &[] };
        let range = self.range_token(expected)?;
        let offset = self.opt_offset()?;
        if stages.is_empty() && unwrap.is_none() {
            stages = self.pipeline(Ctx::Range)?;
            unwrap = self.opt_unwrap()?;
        }
        Ok(LogRange { selector: LogExpr { matchers, stages }, range, offset, unwrap })
    }

    fn range_token(&mut self, expected: &[Tok]) -> Result<i64, ParseError> {
        match self.expect(Tok::Range, expected)?.val {
            TokVal::Duration(d) => Ok(d),
            _ => Ok(0),
        }
    }

    fn opt_offset(&mut self) -> Result<i64, ParseError> {
        if self.kind() != Tok::Offset {
            return Ok(0);
        }
        self.bump();
        match self.expect(Tok::Duration, &[Tok::Duration])?.val {
            TokVal::Duration(d) => Ok(d),
            _ => Ok(0),
        }
    }

    /// `| unwrap [conv(]label[)]` and the label filters after it, if the next tokens are one.
    fn opt_unwrap(&mut self) -> Result<Option<Unwrap>, ParseError> {
        if !(self.kind() == Tok::Pipe && self.kind_at(1) == Tok::Unwrap) {
            return Ok(None);
        }
        self.bump();
        self.bump();
        let conversion = match self.kind() {
            Tok::Ident => None,
            Tok::BytesConv => Some(Conversion::Bytes),
            Tok::DurationConv => Some(Conversion::Duration),
            Tok::DurationSecondsConv => Some(Conversion::DurationSeconds),
            _ => {
                return Err(self.unexpected(&[
                    Tok::Ident,
                    Tok::BytesConv,
                    Tok::DurationConv,
                    Tok::DurationSecondsConv,
                ]));
            }
        };
        let label = if conversion.is_some() {
            self.bump();
            self.expect(Tok::LParen, &[Tok::LParen])?;
            let label = self.expect_ident(&[Tok::Ident])?;
            self.expect(Tok::RParen, &[Tok::RParen])?;
            label
        } else {
            self.expect_ident(&[Tok::Ident])?
        };
        let mut post_filters = Vec::new();
        while self.kind() == Tok::Pipe {
            let stage_offset = self.tok().start;
            self.bump();
            if !matches!(self.kind(), Tok::Ident | Tok::LParen) {
                return Err(self.unexpected(&[Tok::Ident, Tok::LParen]));
            }
            let f = self.label_filter(0)?;
            self.check_label_filter_ips(&f, stage_offset);
            post_filters.push(f);
        }
        Ok(Some(Unwrap { label, conversion, post_filters }))
    }

    /// Checks Loki performs when it builds a stage: invalid `ip()` patterns, `label_format`
    /// conflicts and template syntax. Reported as Loki does: `stage '<stage>' : <error>`.
    fn check_stage(&mut self, stage: &Stage, offset: usize) {
        match stage {
            Stage::LabelFilter(f) => self.check_label_filter_ips(f, offset),
            Stage::LabelFormat(fmts) => {
                let mut err = None;
                for (i, f) in fmts.iter().enumerate() {
                    if f.name == "__error__" {
                        err = Some(format!("{} cannot be formatted", f.name));
                    } else if fmts[..i].iter().any(|g| g.name == f.name) {
                        err =
                            Some(format!("multiple label name '{}' not allowed in a single format operation", f.name));
                    }
                    if err.is_some() {
                        break;
                    }
                }
                if err.is_none() {
                    err = fmts.iter().filter(|f| !f.rename).find_map(|f| {
                        template::parse(&f.value).err().map(|e| format!("invalid template for label '{}': {e}", f.name))
                    });
                }
                if let Some(e) = err {
                    self.defer(format!("stage '{stage}' : {e}"), offset);
                }
            }
            Stage::LineFormat(t) => {
                if let Err(e) = template::parse(t) {
                    self.defer(format!("stage '{stage}' : invalid line template: {e}"), offset);
                }
            }
            _ => {}
        }
    }

    fn check_label_filter_ips(&mut self, f: &LabelFilter, offset: usize) {
        let mut bad = false;
        visit_ips(f, &mut |p| bad |= IpPattern::parse(p).is_err());
        if bad {
            self.defer(format!("stage '| {f}' : {}", super::ip::INVALID_PATTERN), offset);
        }
    }
}

fn visit_ips(f: &LabelFilter, visit: &mut impl FnMut(&str)) {
    match f {
        LabelFilter::Ip { pattern, .. } => visit(pattern),
        LabelFilter::And(a, b) | LabelFilter::Or(a, b) => {
            visit_ips(a, visit);
            visit_ips(b, visit);
        }
        _ => {}
    }
}

/// Builds a matcher, compiling regexes as Prometheus does (`^(?s:re)$`). A bad regex fails the
/// parse immediately with Go's message and no position, as in Loki.
pub(crate) fn new_matcher(name: String, op: MatchOp, value: String, offset: usize) -> Result<Matcher, ParseError> {
    let regex = match op {
        MatchOp::Re | MatchOp::Nre => {
            Some(GoRegex::compile(&value, Anchor::FullDotAll, false).map_err(|e| ParseError::invalid(e, offset))?)
        }
        MatchOp::Eq | MatchOp::Neq => None,
    };
    Ok(Matcher { name, op, value, regex })
}

/// Compiles the regexes and patterns of a line filter and checks its `ip()` alternatives.
fn compile_line_filter(f: &mut LineFilter) -> Result<(), String> {
    let op = f.op;
    for alt in &mut f.alternatives {
        match alt {
            LineMatch::Ip(p) => {
                if !matches!(op, LineFilterOp::Contains | LineFilterOp::NotContains) {
                    return Err(INVALID_OPERATION.to_string());
                }
                IpPattern::parse(p).map_err(str::to_string)?;
            }
            LineMatch::Text { text, regex, pattern } => match op {
                LineFilterOp::Match | LineFilterOp::NotMatch => {
                    *regex = Some(GoRegex::compile(text, Anchor::None, false)?)
                }
                LineFilterOp::Pattern | LineFilterOp::NotPattern => *pattern = Some(validate_filter_pattern(text)?),
                LineFilterOp::Contains | LineFilterOp::NotContains => {}
            },
        }
    }
    Ok(())
}

/// Loki's `regexp` parser rules: a valid Go regex with at least one group, whose names are valid
/// label names and unique.
fn regexp_parser(source: &str) -> Result<GoRegex, String> {
    let names = capture_names(source)?;
    if names.is_empty() {
        return Err("at least one named capture must be supplied".to_string());
    }
    let mut seen: Vec<&str> = Vec::new();
    for n in names.iter().filter(|n| !n.is_empty()) {
        if n.as_bytes()[0].is_ascii_digit() {
            return Err(format!("invalid extracted label name '{n}'"));
        }
        if seen.contains(&n.as_str()) {
            return Err(format!("duplicate extracted label name '{n}'"));
        }
        seen.push(n);
    }
    GoRegex::compile(source, Anchor::None, true)
}
