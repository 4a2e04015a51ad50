//! Recursive-descent parser for LogQL expressions: binary operations (precedence climbing),
//! aggregations, literals, `vector()` and `label_replace()`. Selectors, pipelines and log ranges
//! are in `pipeline.rs`.
//!
//! Errors follow Loki's two phases. Grammar and lexical errors, and the errors Loki raises while
//! building a node (an invalid matcher regex, an invalid `regexp`/`pattern` parser), stop parsing
//! at once. Errors Loki finds when validating a complete tree (binary-operation legs,
//! aggregation parameters and groupings, empty selectors, stage errors) are recorded and
//! reported only when the whole query parsed.

use super::ast::*;
use super::error::ParseError;
use super::goregex::{Anchor, GoRegex};
use super::lexer::{TokVal, Token, tokenize};
use super::token::Tok;
use super::units::{fmt_go_float_6, parse_go_float};

/// Loki rejects queries of this many bytes or more.
pub const MAX_QUERY_BYTES: usize = 5120;

/// Deepest nesting a query may have: parentheses, aggregations, binary operations and label
/// filter `and`/`or` chains each add a level. Parsing, printing and evaluating recurse once per
/// level, and a query of [`MAX_QUERY_BYTES`] can otherwise nest over 2500 levels, which
/// overflows the 2 MiB stack of a tokio worker. Loki has no such limit (Go stacks grow); real
/// queries stay far below it.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Bound on the parser's own recursion, looser than [`MAX_NESTING_DEPTH`] because the printed
/// form of a tree may take several parser levels per tree level (`((a + b) + c)`: parentheses
/// and the right operand of each operation), and printed queries must parse back.
const MAX_PARSE_RECURSION: usize = 2 * MAX_NESTING_DEPTH;

/// A parsed operand: a log query is only valid where the grammar allows it, and a binary
/// operation with a log leg is reported after parsing.
pub(crate) enum Node {
    Log(LogExpr),
    Sample(SampleExpr),
}

pub(crate) struct Parser<'a> {
    pub(crate) src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    /// The first error found while validating, reported if parsing otherwise succeeds.
    deferred: Option<ParseError>,
    /// Recursion depth of [`Self::nested`] calls, bounded by [`MAX_PARSE_RECURSION`].
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a str) -> Parser<'a> {
        Parser { src, toks: tokenize(src), pos: 0, deferred: None, depth: 0 }
    }

    /// Parses a whole query.
    pub(crate) fn parse_query(mut self) -> Result<Expr, ParseError> {
        if self.src.len() >= MAX_QUERY_BYTES {
            return Err(ParseError::invalid(
                format!("input size too long ({} > {})", self.src.len(), MAX_QUERY_BYTES),
                0,
            ));
        }
        let node = self.expr(0)?;
        if self.kind() != Tok::Eof {
            return Err(self.unexpected(&[]));
        }
        if let Some(err) = self.deferred {
            return Err(err);
        }
        // Chains such as `a + b + c` and `x="1" or y="2" or ...` are parsed in a loop, so the
        // tree can be deeper than the parser's recursion was.
        let depth = match &node {
            Node::Log(l) => log_depth(l),
            Node::Sample(s) => sample_depth(s),
        };
        if depth > MAX_NESTING_DEPTH {
            return Err(too_deep(0));
        }
        Ok(match node {
            Node::Log(l) => Expr::Log(l),
            Node::Sample(s) => Expr::Sample(s),
        })
    }

    /// Runs `f` one recursion level deeper; an error past [`MAX_PARSE_RECURSION`].
    pub(crate) fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, ParseError>) -> Result<T, ParseError> {
        if self.depth >= MAX_PARSE_RECURSION {
            return Err(too_deep(self.tok().start));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    // ---- token helpers -------------------------------------------------------------------

    pub(crate) fn tok(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    pub(crate) fn kind(&self) -> Tok {
        self.tok().kind
    }

    pub(crate) fn kind_at(&self, ahead: usize) -> Tok {
        self.toks.get(self.pos + ahead).map_or(Tok::Eof, |t| t.kind)
    }

    pub(crate) fn text(&self) -> &'a str {
        let t = self.tok();
        &self.src[t.start..t.end]
    }

    /// Consumes the current token, taking its value.
    pub(crate) fn bump(&mut self) -> Token {
        let i = self.pos.min(self.toks.len() - 1);
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        let t = &mut self.toks[i];
        Token {
            kind: t.kind,
            start: t.start,
            end: t.end,
            line: t.line,
            col: t.col,
            line_valid: t.line_valid,
            val: std::mem::replace(&mut t.val, TokVal::None),
        }
    }

    /// Consumes a token of kind `kind` or fails listing `expected`.
    pub(crate) fn expect(&mut self, kind: Tok, expected: &[Tok]) -> Result<Token, ParseError> {
        if self.kind() == kind { Ok(self.bump()) } else { Err(self.unexpected(expected)) }
    }

    /// Consumes a string token and returns its value.
    pub(crate) fn expect_str(&mut self, expected: &[Tok]) -> Result<String, ParseError> {
        let t = self.expect(Tok::Str, expected)?;
        Ok(match t.val {
            TokVal::Str(s) => s,
            _ => String::new(),
        })
    }

    /// Consumes an identifier and returns its text.
    pub(crate) fn expect_ident(&mut self, expected: &[Tok]) -> Result<String, ParseError> {
        if self.kind() == Tok::Ident {
            let s = self.text().to_string();
            self.bump();
            Ok(s)
        } else {
            Err(self.unexpected(expected))
        }
    }

    /// Loki's `syntax error: unexpected X[, expecting A or B]` for the current token. Loki lists
    /// the expected tokens only when there are at most four.
    pub(crate) fn unexpected(&self, expected: &[Tok]) -> ParseError {
        let t = self.tok();
        let line = if t.line_valid { t.line } else { 0 };
        if let TokVal::Error(msg) = &t.val {
            return ParseError::syntax(line, t.col, msg.clone(), t.start);
        }
        let mut msg = format!("syntax error: unexpected {}", t.kind.name());
        let mut exp: Vec<Tok> = expected.to_vec();
        exp.sort_by_key(|k| k.loki_order());
        exp.dedup_by_key(|k| k.loki_order());
        if !exp.is_empty() && exp.len() <= 4 {
            for (i, k) in exp.iter().enumerate() {
                msg.push_str(if i == 0 { ", expecting " } else { " or " });
                msg.push_str(k.name());
            }
        }
        ParseError::syntax(line, t.col, msg, t.start)
    }

    /// Records an error found while validating; the first one wins.
    pub(crate) fn defer(&mut self, msg: impl Into<String>, offset: usize) {
        if self.deferred.is_none() {
            self.deferred = Some(ParseError::invalid(msg, offset));
        }
    }

    // ---- expressions ---------------------------------------------------------------------

    /// Precedence climbing over binary operators; `min_prec` is the lowest precedence accepted.
    pub(crate) fn expr(&mut self, min_prec: u8) -> Result<Node, ParseError> {
        self.nested(|p| p.expr_unbounded(min_prec))
    }

    fn expr_unbounded(&mut self, min_prec: u8) -> Result<Node, ParseError> {
        let mut lhs = self.unary()?;
        while let Some(op) = binop_kind(self.kind()) {
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            let offset = self.tok().start;
            self.bump();
            let modifier = self.bin_modifier()?;
            let rhs = self.expr(if op.right_assoc() { prec } else { prec + 1 })?;
            lhs = self.binop(op, modifier, lhs, rhs, offset);
        }
        Ok(lhs)
    }

    /// Builds a binary operation the way Loki does: log legs and literal legs of set operators
    /// are errors, and two literal legs fold into one literal.
    fn binop(&mut self, op: BinOpKind, modifier: BinOpModifier, lhs: Node, rhs: Node, offset: usize) -> Node {
        let placeholder = || Node::Sample(SampleExpr::Vector(Number(0.0)));
        let sym = op.symbol();
        let lhs = match lhs {
            Node::Log(l) => {
                self.defer(
                    format!("unexpected type for left leg of binary operation ({sym}): {}", go_type(&l)),
                    offset,
                );
                return placeholder();
            }
            Node::Sample(s) => s,
        };
        let rhs = match rhs {
            Node::Log(l) => {
                self.defer(
                    format!("unexpected type for right leg of binary operation ({sym}): {}", go_type(&l)),
                    offset,
                );
                return placeholder();
            }
            Node::Sample(s) => s,
        };
        let lit = |s: &SampleExpr| match s {
            SampleExpr::Literal(n) => Some(n.0),
            _ => None,
        };
        if op.is_set_op() {
            if let Some(v) = lit(&lhs) {
                self.defer(
                    format!(
                        "unexpected literal for left leg of logical/set binary operation ({sym}): {}",
                        fmt_go_float_6(v)
                    ),
                    offset,
                );
                return placeholder();
            }
            if let Some(v) = lit(&rhs) {
                self.defer(
                    format!(
                        "unexpected literal for right leg of logical/set binary operation ({sym}): {}",
                        fmt_go_float_6(v)
                    ),
                    offset,
                );
                return placeholder();
            }
        }
        if let (Some(l), Some(r)) = (lit(&lhs), lit(&rhs))
            && let Some(v) = op.apply_scalar(l, r)
        {
            return Node::Sample(SampleExpr::Literal(Number(v)));
        }
        Node::Sample(SampleExpr::BinOp(BinOp { op, lhs: Box::new(lhs), rhs: Box::new(rhs), modifier }))
    }

    /// `[bool] [on|ignoring (labels) [group_left|group_right [(labels)]]]`.
    fn bin_modifier(&mut self) -> Result<BinOpModifier, ParseError> {
        let mut m = BinOpModifier::default();
        if self.kind() == Tok::Bool {
            self.bump();
            m.return_bool = true;
        }
        if matches!(self.kind(), Tok::On | Tok::Ignoring) {
            m.matching.on = self.bump().kind == Tok::On;
            self.expect(Tok::LParen, &[Tok::LParen])?;
            m.matching.labels = self.label_list()?;
            if matches!(self.kind(), Tok::GroupLeft | Tok::GroupRight) {
                m.matching.card =
                    if self.bump().kind == Tok::GroupLeft { Cardinality::ManyToOne } else { Cardinality::OneToMany };
                // Like Loki's parser, `(` right after a group modifier always opens its label
                // list.
                if self.kind() == Tok::LParen {
                    self.bump();
                    m.matching.include = self.label_list()?;
                }
            }
        }
        Ok(m)
    }

    /// The labels of `(a, b)` after the opening parenthesis, through the closing one.
    pub(crate) fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        let mut labels = Vec::new();
        if self.kind() == Tok::RParen {
            self.bump();
            return Ok(labels);
        }
        labels.push(self.expect_ident(&[Tok::Ident, Tok::RParen])?);
        loop {
            match self.kind() {
                Tok::RParen => {
                    self.bump();
                    return Ok(labels);
                }
                Tok::Comma => {
                    self.bump();
                    labels.push(self.expect_ident(&[Tok::Ident])?);
                }
                _ => return Err(self.unexpected(&[Tok::Comma, Tok::RParen])),
            }
        }
    }

    /// `by (...)` or `without (...)`.
    fn grouping(&mut self) -> Result<Grouping, ParseError> {
        let without = self.bump().kind == Tok::Without;
        self.expect(Tok::LParen, &[Tok::LParen])?;
        Ok(Grouping { without, labels: self.label_list()? })
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        match self.kind() {
            Tok::LBrace => Ok(Node::Log(self.log_expr()?)),
            Tok::LParen => {
                self.bump();
                let inner = self.expr(0)?;
                self.expect(Tok::RParen, &[])?;
                Ok(inner)
            }
            Tok::Number | Tok::Add | Tok::Sub => Ok(Node::Sample(SampleExpr::Literal(Number(self.literal()?)))),
            Tok::Ident if special_float(self.text()).is_some() => {
                Ok(Node::Sample(SampleExpr::Literal(Number(self.literal()?))))
            }
            Tok::RangeFn(op) => self.range_aggregation(op).map(Node::Sample),
            Tok::VectorFn(op) => self.vector_aggregation(op).map(Node::Sample),
            Tok::LabelReplace => self.label_replace().map(Node::Sample),
            Tok::Vector => self.vector().map(Node::Sample),
            _ => Err(self.unexpected(&[])),
        }
    }

    /// `NUMBER`, `+NUMBER` or `-NUMBER` (and, as an extension, `NaN`/`Inf` so that printed folded
    /// literals parse back). A malformed number is reported after parsing, as Loki does.
    pub(crate) fn literal(&mut self) -> Result<f64, ParseError> {
        let mut negative = false;
        if matches!(self.kind(), Tok::Add | Tok::Sub) {
            negative = self.bump().kind == Tok::Sub;
            if !(self.kind() == Tok::Number || (self.kind() == Tok::Ident && special_float(self.text()).is_some())) {
                return Err(self.unexpected(&[Tok::Number]));
            }
        }
        let text = self.text();
        let offset = self.tok().start;
        let v = if let Some(v) = special_float(text).filter(|_| self.kind() == Tok::Ident) {
            self.bump();
            v
        } else {
            self.expect(Tok::Number, &[Tok::Number])?;
            match parse_go_float(text) {
                Ok(v) => v,
                Err(e) => {
                    self.defer(format!("unable to parse literal as a float: {}", e.go_message(text)), offset);
                    0.0
                }
            }
        };
        Ok(if negative { -v } else { v })
    }

    fn vector(&mut self) -> Result<SampleExpr, ParseError> {
        self.bump();
        self.expect(Tok::LParen, &[Tok::LParen])?;
        let text = self.text();
        let offset = self.tok().start;
        self.expect(Tok::Number, &[Tok::Number])?;
        self.expect(Tok::RParen, &[Tok::RParen])?;
        let v = match parse_go_float(text) {
            Ok(v) => v,
            Err(e) => {
                self.defer(format!("unable to parse vectorExpr as a float: {}", e.go_message(text)), offset);
                0.0
            }
        };
        Ok(SampleExpr::Vector(Number(v)))
    }

    /// A sample expression where the grammar requires one (inside aggregations and
    /// `label_replace`); a log query there fails at the token after it, as in Loki.
    fn sample_operand(&mut self) -> Result<SampleExpr, ParseError> {
        match self.expr(0)? {
            Node::Sample(s) => Ok(s),
            Node::Log(_) => Err(self.unexpected(&[])),
        }
    }

    fn vector_aggregation(&mut self, op: VectorOp) -> Result<SampleExpr, ParseError> {
        let offset = self.tok().start;
        self.bump();
        let mut grouping = None;
        if matches!(self.kind(), Tok::By | Tok::Without) {
            grouping = Some(self.grouping()?);
        }
        self.expect(Tok::LParen, &[Tok::LParen])?;
        let mut param: Option<&'a str> = None;
        if self.kind() == Tok::Number && self.kind_at(1) == Tok::Comma {
            param = Some(self.text());
            self.bump();
            self.bump();
        }
        let expr = self.sample_operand()?;
        self.expect(Tok::RParen, &[])?;
        if grouping.is_none() && matches!(self.kind(), Tok::By | Tok::Without) {
            grouping = Some(self.grouping()?);
        }
        let name = op.name();
        let mut k = None;
        if op.takes_param() {
            match param {
                None => self.defer(format!("parameter required for operation {name}"), offset),
                Some(p) => match go_atoi(p) {
                    None => self.defer(format!("invalid parameter {name}({p},"), offset),
                    Some(v) if v <= 0 => {
                        self.defer(format!("invalid parameter (must be greater than 0) {name}({p}"), offset);
                    }
                    Some(v) => k = Some(v),
                },
            }
            if op == VectorOp::ApproxTopk && grouping.is_some() {
                self.defer(format!("grouping not allowed for {name} aggregation"), offset);
            }
        } else if let Some(p) = param {
            self.defer(format!("unsupported parameter for operation {name}({p},"), offset);
        }
        let grouping = grouping.unwrap_or_default();
        if matches!(op, VectorOp::Sort | VectorOp::SortDesc) && !grouping.labels.is_empty() {
            self.defer("sort and sort_desc doesn't allow grouping by ", offset);
        }
        Ok(SampleExpr::VectorAggregation(VectorAggregation { op, expr: Box::new(expr), param: k, grouping }))
    }

    fn range_aggregation(&mut self, op: RangeOp) -> Result<SampleExpr, ParseError> {
        let offset = self.tok().start;
        self.bump();
        self.expect(Tok::LParen, &[Tok::LParen])?;
        let mut param: Option<&'a str> = None;
        if self.kind() == Tok::Number {
            param = Some(self.text());
            self.bump();
            self.expect(Tok::Comma, &[Tok::Comma])?;
        } else if !matches!(self.kind(), Tok::LBrace | Tok::LParen) {
            return Err(self.unexpected(&[Tok::Number, Tok::LBrace, Tok::LParen]));
        }
        let range = self.log_range()?;
        self.expect(Tok::RParen, &[Tok::RParen])?;
        let grouping = if matches!(self.kind(), Tok::By | Tok::Without) { Some(self.grouping()?) } else { None };
        let name = op.name();
        let mut phi = None;
        match param {
            Some(p) if op != RangeOp::QuantileOverTime => {
                self.defer(format!("parameter {p} not supported for operation {name}"), offset);
            }
            Some(p) => match parse_go_float(p) {
                Ok(v) => phi = Some(v),
                Err(e) => self.defer(format!("invalid parameter for operation {name}: {}", e.go_message(p)), offset),
            },
            None if op == RangeOp::QuantileOverTime => {
                self.defer(format!("parameter required for operation {name}"), offset);
            }
            None => {}
        }
        if let Some(msg) = validate_range_op(op, grouping.is_some(), range.unwrap.is_some()) {
            self.defer(msg, offset);
        }
        Ok(SampleExpr::RangeAggregation(RangeAggregation { op, range, param: phi, grouping }))
    }

    fn label_replace(&mut self) -> Result<SampleExpr, ParseError> {
        let offset = self.tok().start;
        self.bump();
        self.expect(Tok::LParen, &[Tok::LParen])?;
        let expr = self.sample_operand()?;
        self.expect(Tok::Comma, &[])?;
        let dst = self.expect_str(&[Tok::Str])?;
        self.expect(Tok::Comma, &[Tok::Comma])?;
        let replacement = self.expect_str(&[Tok::Str])?;
        self.expect(Tok::Comma, &[Tok::Comma])?;
        let src = self.expect_str(&[Tok::Str])?;
        self.expect(Tok::Comma, &[Tok::Comma])?;
        let regex_offset = self.tok().start;
        let regex_source = self.expect_str(&[Tok::Str])?;
        self.expect(Tok::RParen, &[Tok::RParen])?;
        // Loki compiles `^(?:re)$` as one Go regex, so errors quote that whole string.
        // Capture names are kept for `$name` references in the replacement; Go allows a name
        // twice, Rust does not, so such a regex falls back to numbered groups only.
        let anchored = format!("^(?:{regex_source})$");
        let regex = match GoRegex::compile(&anchored, Anchor::None, true)
            .or_else(|_| GoRegex::compile(&anchored, Anchor::None, false))
        {
            Ok(re) => re,
            Err(e) => {
                self.defer(format!("invalid regex in label_replace: {e}"), regex_offset);
                GoRegex::new("").unwrap_or_else(|_| unreachable_regex())
            }
        };
        let _ = offset;
        Ok(SampleExpr::LabelReplace(LabelReplace { expr: Box::new(expr), dst, replacement, src, regex_source, regex }))
    }
}

/// A regex for error paths; compiling the empty pattern cannot fail.
fn unreachable_regex() -> GoRegex {
    GoRegex::new("").expect("the empty regex compiles")
}

/// Loki's validation of a range aggregation's grouping and unwrap.
pub(crate) fn validate_range_op(op: RangeOp, grouped: bool, unwrapped: bool) -> Option<String> {
    use RangeOp::*;
    let name = op.name();
    if grouped
        && !matches!(
            op,
            AvgOverTime
                | StddevOverTime
                | StdvarOverTime
                | QuantileOverTime
                | MaxOverTime
                | MinOverTime
                | FirstOverTime
                | LastOverTime
        )
    {
        return Some(format!("grouping not allowed for {name} aggregation"));
    }
    if unwrapped {
        if matches!(op, CountOverTime | BytesOverTime | BytesRate) {
            return Some(format!("invalid aggregation {name} with unwrap"));
        }
        return None;
    }
    if matches!(op, BytesOverTime | BytesRate | CountOverTime | Rate | AbsentOverTime) {
        None
    } else {
        Some(format!("invalid aggregation {name} without unwrap"))
    }
}

fn binop_kind(t: Tok) -> Option<BinOpKind> {
    Some(match t {
        Tok::Or => BinOpKind::Or,
        Tok::And => BinOpKind::And,
        Tok::Unless => BinOpKind::Unless,
        Tok::Add => BinOpKind::Add,
        Tok::Sub => BinOpKind::Sub,
        Tok::Mul => BinOpKind::Mul,
        Tok::Div => BinOpKind::Div,
        Tok::Mod => BinOpKind::Mod,
        Tok::Pow => BinOpKind::Pow,
        Tok::CmpEq => BinOpKind::Eq,
        Tok::Neq => BinOpKind::Neq,
        Tok::Gt => BinOpKind::Gt,
        Tok::Gte => BinOpKind::Gte,
        Tok::Lt => BinOpKind::Lt,
        Tok::Lte => BinOpKind::Lte,
        _ => return None,
    })
}

/// The Go type name Loki prints for a log leg of a binary operation.
fn go_type(l: &LogExpr) -> &'static str {
    if l.stages.is_empty() { "*syntax.MatchersExpr" } else { "*syntax.PipelineExpr" }
}

/// `NaN` and `Inf` (any case), accepted where a number literal is.
fn special_float(text: &str) -> Option<f64> {
    if text.eq_ignore_ascii_case("nan") {
        Some(f64::NAN)
    } else if text.eq_ignore_ascii_case("inf") {
        Some(f64::INFINITY)
    } else {
        None
    }
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits fitting in an `i64`.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn too_deep(offset: usize) -> ParseError {
    ParseError::invalid(format!("query is nested too deeply (more than {MAX_NESTING_DEPTH} levels)"), offset)
}

/// Depth of a metric query's tree: every aggregation and binary operation is a level, plus the
/// depth of the label filters of the log queries it reads.
fn sample_depth(e: &SampleExpr) -> usize {
    1 + match e {
        SampleExpr::RangeAggregation(r) => {
            let post = r.range.unwrap.iter().flat_map(|u| &u.post_filters).map(filter_depth).max();
            log_depth(&r.range.selector).max(post.unwrap_or(0))
        }
        SampleExpr::VectorAggregation(v) => sample_depth(&v.expr),
        SampleExpr::BinOp(b) => sample_depth(&b.lhs).max(sample_depth(&b.rhs)),
        SampleExpr::LabelReplace(l) => sample_depth(&l.expr),
        SampleExpr::Literal(_) | SampleExpr::Vector(_) => 0,
    }
}

/// Depth of a log query: that of its deepest label filter expression.
fn log_depth(l: &LogExpr) -> usize {
    let filters = l.stages.iter().filter_map(|s| match s {
        Stage::LabelFilter(f) => Some(filter_depth(f)),
        _ => None,
    });
    1 + filters.max().unwrap_or(0)
}

fn filter_depth(f: &LabelFilter) -> usize {
    1 + match f {
        LabelFilter::And(a, b) | LabelFilter::Or(a, b) => filter_depth(a).max(filter_depth(b)),
        _ => 0,
    }
}
