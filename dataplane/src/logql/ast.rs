//! The LogQL abstract syntax tree.
//!
//! The tree keeps what the query says, normalised where Loki normalises (see `NOTES.md`):
//! `by ()` on a vector aggregation equals no grouping, `ignoring ()` equals no matching clause,
//! literal-only arithmetic is folded, and a negative `or` chain of line filters
//! (`!= "a" or "b"`) is a sequence of filters. Regular expressions are compiled once, at parse
//! time, and travel with the tree.

use super::goregex::GoRegex;
use super::pattern::Pattern;

/// A parsed LogQL query: a log query or a metric query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A log query: returns log lines.
    Log(LogExpr),
    /// A metric query: returns samples.
    Sample(SampleExpr),
}

/// A log query: a stream selector and the pipeline applied to the selected lines.
#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    /// The stream selector `{...}`; never empty once validated.
    pub matchers: Vec<Matcher>,
    /// Pipeline stages in query order.
    pub stages: Vec<Stage>,
}

/// A label matcher `name op "value"`, in a stream selector, a label filter, `drop` or `keep`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// How the value is compared.
    pub op: MatchOp,
    /// The string compared with, or the regex source for `=~`/`!~`.
    pub value: String,
    /// The compiled, fully anchored regex for `=~` and `!~` (`None` for `=` and `!=`), compiled
    /// once at parse time so evaluation never compiles again.
    pub regex: Option<GoRegex>,
}

impl Matcher {
    /// A matcher built outside the parser (one received from another process); a regex
    /// compiles exactly as the parser compiles it.
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Result<Matcher, super::ParseError> {
        super::pipeline::new_matcher(name.into(), op, value.into(), 0)
    }

    /// Whether the matcher accepts `value`. An absent label has the empty value.
    pub fn matches(&self, value: &str) -> bool {
        match (&self.op, &self.regex) {
            (MatchOp::Eq, _) => value == self.value,
            (MatchOp::Neq, _) => value != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(value),
            (MatchOp::Nre, Some(re)) => !re.is_match(value),
            // Regex matchers are only built with their regex.
            (MatchOp::Re | MatchOp::Nre, None) => false,
        }
    }
}

/// The operator of a label matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `=~`
    Re,
    /// `!~`
    Nre,
}

/// One stage of a log pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `|= "x"`, `!~ "re"`, `|> "<_> pattern"`, `|= ip("...")`, with `or` alternatives.
    LineFilter(LineFilter),
    /// `| json` or `| json a="path", b`.
    Json(Vec<Extraction>),
    /// `| logfmt`, with flags and optional extractions.
    Logfmt(LogfmtParser),
    /// `| regexp "(?P<name>...)"`.
    Regexp(RegexpParser),
    /// `| pattern "<name> ..."`.
    Pattern(PatternParser),
    /// `| unpack`.
    Unpack,
    /// `| line_format "{{.template}}"`; the template source.
    LineFormat(String),
    /// `| label_format a=b, c="{{.template}}"`.
    LabelFormat(Vec<LabelFmt>),
    /// `| decolorize`.
    Decolorize,
    /// `| drop a, b="v"`.
    Drop(Vec<NamedMatcher>),
    /// `| keep a, b="v"`.
    Keep(Vec<NamedMatcher>),
    /// `| a="b" and c > 5`.
    LabelFilter(LabelFilter),
}

/// A line filter with its alternatives.
///
/// A positive filter (`|=`, `|~`, `|>`) keeps a line matching any alternative. A negative or-chain
/// (`!= "a" or "b"`) is parsed into one negative filter per alternative, as Loki does, so a
/// negative filter here always has exactly one alternative.
#[derive(Debug, Clone, PartialEq)]
pub struct LineFilter {
    /// Which test the filter applies and whether it keeps or drops matches.
    pub op: LineFilterOp,
    /// At least one; more only for positive operators (`or` chains).
    pub alternatives: Vec<LineMatch>,
}

/// What a line filter alternative matches.
#[derive(Debug, Clone, PartialEq)]
pub enum LineMatch {
    /// A plain string: a substring for `|=`/`!=`, a regex for `|~`/`!~`, a pattern for `|>`/`!>`.
    Text {
        /// The literal as written.
        text: String,
        /// The compiled regex for regex filters, compiled at parse time.
        regex: Option<GoRegex>,
        /// The parsed pattern for pattern filters.
        pattern: Option<Pattern>,
    },
    /// `ip("...")`: lines containing an IP address in the range (only `|=` and `!=`).
    Ip(String),
}

/// The operator of a line filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineFilterOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`
    Match,
    /// `!~`
    NotMatch,
    /// `|>`
    Pattern,
    /// `!>`
    NotPattern,
}

impl LineFilterOp {
    /// Whether the operator drops the lines that match.
    pub fn is_negative(self) -> bool {
        matches!(self, LineFilterOp::NotContains | LineFilterOp::NotMatch | LineFilterOp::NotPattern)
    }
}

/// One `label="expression"` (or bare `label`) of `json` and `logfmt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extraction {
    /// The label to write.
    pub label: String,
    /// The JSON path or logfmt key to read; equal to `label` for the bare form.
    pub expr: String,
}

/// `| logfmt [--strict] [--keep-empty] [extractions]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogfmtParser {
    /// `--strict`: a malformed line is an error instead of a partial parse.
    pub strict: bool,
    /// `--keep-empty`: keys with an empty value become labels with an empty value.
    pub keep_empty: bool,
    /// Only these keys are extracted; empty means all keys.
    pub extractions: Vec<Extraction>,
}

/// `| regexp "..."` with its compiled regex and capture names.
#[derive(Debug, Clone, PartialEq)]
pub struct RegexpParser {
    /// The regex source as written in the query.
    pub source: String,
    /// The compiled regex (unanchored, capture names preserved).
    pub regex: GoRegex,
}

/// `| pattern "..."` with its parsed form.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternParser {
    /// The source as written in the query.
    pub source: String,
    /// The parsed pattern.
    pub pattern: Pattern,
}

/// One `dst=src` rename or `dst="{{template}}"` of `label_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFmt {
    /// The label written.
    pub name: String,
    /// The source label (rename) or the template source.
    pub value: String,
    /// Whether `value` names a label (`dst=src`) rather than being a template (`dst="..."`).
    pub rename: bool,
}

/// One entry of `drop`/`keep`: a bare label name or a matcher on the label's value.
#[derive(Debug, Clone, PartialEq)]
pub enum NamedMatcher {
    /// A bare label name: the label is dropped (kept) whatever its value.
    Name(String),
    /// A string comparison `name op "value"` (also the only filter that tests `__error__`).
    Matcher(Matcher),
}

/// A label filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilter {
    /// `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`: compares strings; the only filter that
    /// can test `__error__`.
    Matcher(Matcher),
    /// `name=ip("...")` or `name!=ip("...")`.
    Ip {
        /// The label holding the address.
        name: String,
        /// True for `!=`.
        negated: bool,
        /// The `ip()` pattern (address, range or CIDR), validated at parse time.
        pattern: String,
    },
    /// `name > 5s`: the label's value parsed as a Go duration.
    Duration {
        /// The label compared.
        name: String,
        /// The comparison.
        op: CmpOp,
        /// Nanoseconds.
        value: i64,
    },
    /// `name > 10KB`: the label's value parsed as a byte size.
    Bytes {
        /// The label compared.
        name: String,
        /// The comparison.
        op: CmpOp,
        /// Bytes.
        value: u64,
    },
    /// `name > 5`: the label's value parsed as a float.
    Number {
        /// The label compared.
        name: String,
        /// The comparison.
        op: CmpOp,
        /// The number compared with.
        value: f64,
    },
    /// `a and b`, `a, b`, `a b`.
    And(Box<LabelFilter>, Box<LabelFilter>),
    /// `a or b`.
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

/// A comparison of a numeric, duration or bytes label filter. `=` and `==` are both `Eq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
}

impl CmpOp {
    /// Applies the comparison.
    pub fn compare<T: PartialOrd>(self, lhs: T, rhs: T) -> bool {
        match self {
            CmpOp::Eq => lhs == rhs,
            CmpOp::Neq => lhs != rhs,
            CmpOp::Gt => lhs > rhs,
            CmpOp::Gte => lhs >= rhs,
            CmpOp::Lt => lhs < rhs,
            CmpOp::Lte => lhs <= rhs,
        }
    }
}

/// A metric query.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleExpr {
    /// `count_over_time(...)`, `rate(...)`, ...
    RangeAggregation(RangeAggregation),
    /// `sum(...)`, `topk(...)`, ...
    VectorAggregation(VectorAggregation),
    /// `a + b`, `a > bool b`, `a and on (x) b`, ...
    BinOp(BinOp),
    /// A number; arithmetic between two literals is folded into one.
    Literal(Number),
    /// `vector(3)`: a one-sample vector without labels.
    Vector(Number),
    /// `label_replace(...)`.
    LabelReplace(LabelReplace),
}

/// A float compared bit-for-bit, so that a folded `NaN` equals itself in tree comparisons.
#[derive(Debug, Clone, Copy)]
pub struct Number(pub f64);

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits() || (self.0.is_nan() && other.0.is_nan())
    }
}

/// `op([param,] log_range) [by|without (...)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeAggregation {
    /// The range operation.
    pub op: RangeOp,
    /// The log query and window the operation reads.
    pub range: LogRange,
    /// φ of `quantile_over_time`; `None` for every other operation.
    pub param: Option<f64>,
    /// Only operations over unwrapped values that keep labels (`avg`, `min`, `max`, `stddev`,
    /// `stdvar`, `quantile`, `first`, `last` `_over_time`) accept a grouping.
    pub grouping: Option<Grouping>,
}

/// The range operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RangeOp {
    /// `count_over_time`: number of lines.
    CountOverTime,
    /// `rate`: lines (or unwrapped values) per second.
    Rate,
    /// `rate_counter`: per-second rate of an unwrapped counter, with resets.
    RateCounter,
    /// `bytes_over_time`: bytes of the lines.
    BytesOverTime,
    /// `bytes_rate`: bytes per second.
    BytesRate,
    /// `avg_over_time` of unwrapped values.
    AvgOverTime,
    /// `sum_over_time` of unwrapped values.
    SumOverTime,
    /// `min_over_time` of unwrapped values.
    MinOverTime,
    /// `max_over_time` of unwrapped values.
    MaxOverTime,
    /// `stdvar_over_time` of unwrapped values.
    StdvarOverTime,
    /// `stddev_over_time` of unwrapped values.
    StddevOverTime,
    /// `quantile_over_time(φ, ...)` of unwrapped values.
    QuantileOverTime,
    /// `first_over_time`: the first unwrapped value.
    FirstOverTime,
    /// `last_over_time`: the last unwrapped value.
    LastOverTime,
    /// `absent_over_time`: 1 where the selector has no line.
    AbsentOverTime,
}

impl RangeOp {
    /// Every range operation.
    pub const ALL: [RangeOp; 15] = [
        RangeOp::CountOverTime,
        RangeOp::Rate,
        RangeOp::RateCounter,
        RangeOp::BytesOverTime,
        RangeOp::BytesRate,
        RangeOp::AvgOverTime,
        RangeOp::SumOverTime,
        RangeOp::MinOverTime,
        RangeOp::MaxOverTime,
        RangeOp::StdvarOverTime,
        RangeOp::StddevOverTime,
        RangeOp::QuantileOverTime,
        RangeOp::FirstOverTime,
        RangeOp::LastOverTime,
        RangeOp::AbsentOverTime,
    ];

    /// The function name in queries.
    pub fn name(self) -> &'static str {
        match self {
            RangeOp::CountOverTime => "count_over_time",
            RangeOp::Rate => "rate",
            RangeOp::RateCounter => "rate_counter",
            RangeOp::BytesOverTime => "bytes_over_time",
            RangeOp::BytesRate => "bytes_rate",
            RangeOp::AvgOverTime => "avg_over_time",
            RangeOp::SumOverTime => "sum_over_time",
            RangeOp::MinOverTime => "min_over_time",
            RangeOp::MaxOverTime => "max_over_time",
            RangeOp::StdvarOverTime => "stdvar_over_time",
            RangeOp::StddevOverTime => "stddev_over_time",
            RangeOp::QuantileOverTime => "quantile_over_time",
            RangeOp::FirstOverTime => "first_over_time",
            RangeOp::LastOverTime => "last_over_time",
            RangeOp::AbsentOverTime => "absent_over_time",
        }
    }

    /// The operation of a lower-case function name.
    pub fn from_name(name: &str) -> Option<RangeOp> {
        RangeOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// A log query over a time window, the input of a range aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRange {
    /// The selector and pipeline producing the lines.
    pub selector: LogExpr,
    /// The window length in nanoseconds (`[5m]`); a multiple of a millisecond.
    pub range: i64,
    /// `offset` in nanoseconds; 0 when absent.
    pub offset: i64,
    /// `| unwrap label` turning a label's value into the sample value.
    pub unwrap: Option<Unwrap>,
}

/// `| unwrap [conversion(]label[)]` followed by label filters applied after the conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct Unwrap {
    /// The label whose value becomes the sample value.
    pub label: String,
    /// How the value is converted to a float; plain float parsing when absent.
    pub conversion: Option<Conversion>,
    /// Label filters after the unwrap (e.g. `| __error__=""` to drop conversion errors).
    pub post_filters: Vec<LabelFilter>,
}

/// How `unwrap` converts a label value to a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conversion {
    /// `bytes(label)`: a humanized byte size.
    Bytes,
    /// `duration(label)`: a Go duration, in seconds.
    Duration,
    /// `duration_seconds(label)`: same as `duration`.
    DurationSeconds,
}

impl Conversion {
    /// The conversion's name in queries.
    pub fn name(self) -> &'static str {
        match self {
            Conversion::Bytes => "bytes",
            Conversion::Duration => "duration",
            Conversion::DurationSeconds => "duration_seconds",
        }
    }
}

/// `by (...)` or `without (...)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grouping {
    /// `without` (drop these labels) rather than `by` (keep only these).
    pub without: bool,
    /// The label names.
    pub labels: Vec<String>,
}

/// `op [by|without (...)] ([param,] expr)`; the grouping may also follow the parentheses.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorAggregation {
    /// The aggregation.
    pub op: VectorOp,
    /// The aggregated or transformed expression.
    pub expr: Box<SampleExpr>,
    /// k of `topk`, `bottomk` and `approx_topk` (always > 0); `None` for other operations.
    pub param: Option<i64>,
    /// `by ()` when the query has no grouping: aggregate everything into one series.
    pub grouping: Grouping,
}

/// The vector aggregation operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VectorOp {
    /// `sum`.
    Sum,
    /// `avg`.
    Avg,
    /// `count`.
    Count,
    /// `max`.
    Max,
    /// `min`.
    Min,
    /// `stddev`.
    Stddev,
    /// `stdvar`.
    Stdvar,
    /// `bottomk(k, ...)`.
    Bottomk,
    /// `topk(k, ...)`.
    Topk,
    /// `sort`: ascending by value.
    Sort,
    /// `sort_desc`: descending by value.
    SortDesc,
    /// `approx_topk(k, ...)`: a sketch-based `topk` (instant queries only).
    ApproxTopk,
}

impl VectorOp {
    /// Every vector aggregation.
    pub const ALL: [VectorOp; 12] = [
        VectorOp::Sum,
        VectorOp::Avg,
        VectorOp::Count,
        VectorOp::Max,
        VectorOp::Min,
        VectorOp::Stddev,
        VectorOp::Stdvar,
        VectorOp::Bottomk,
        VectorOp::Topk,
        VectorOp::Sort,
        VectorOp::SortDesc,
        VectorOp::ApproxTopk,
    ];

    /// The function name in queries.
    pub fn name(self) -> &'static str {
        match self {
            VectorOp::Sum => "sum",
            VectorOp::Avg => "avg",
            VectorOp::Count => "count",
            VectorOp::Max => "max",
            VectorOp::Min => "min",
            VectorOp::Stddev => "stddev",
            VectorOp::Stdvar => "stdvar",
            VectorOp::Bottomk => "bottomk",
            VectorOp::Topk => "topk",
            VectorOp::Sort => "sort",
            VectorOp::SortDesc => "sort_desc",
            VectorOp::ApproxTopk => "approx_topk",
        }
    }

    /// The operation of a lower-case function name.
    pub fn from_name(name: &str) -> Option<VectorOp> {
        VectorOp::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Whether the operation takes the `k` parameter.
    pub fn takes_param(self) -> bool {
        matches!(self, VectorOp::Topk | VectorOp::Bottomk | VectorOp::ApproxTopk)
    }
}

/// A binary operation between two metric expressions (at least one of them not a literal).
#[derive(Debug, Clone, PartialEq)]
pub struct BinOp {
    /// The operator.
    pub op: BinOpKind,
    /// The left operand.
    pub lhs: Box<SampleExpr>,
    /// The right operand.
    pub rhs: Box<SampleExpr>,
    /// `bool`, vector matching and grouping modifiers.
    pub modifier: BinOpModifier,
}

/// The binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOpKind {
    /// `or`: union.
    Or,
    /// `and`: intersection.
    And,
    /// `unless`: difference.
    Unless,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (by zero: NaN).
    Div,
    /// `%` (by zero: NaN).
    Mod,
    /// `^`
    Pow,
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
}

impl BinOpKind {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOpKind::Or => "or",
            BinOpKind::And => "and",
            BinOpKind::Unless => "unless",
            BinOpKind::Add => "+",
            BinOpKind::Sub => "-",
            BinOpKind::Mul => "*",
            BinOpKind::Div => "/",
            BinOpKind::Mod => "%",
            BinOpKind::Pow => "^",
            BinOpKind::Eq => "==",
            BinOpKind::Neq => "!=",
            BinOpKind::Gt => ">",
            BinOpKind::Gte => ">=",
            BinOpKind::Lt => "<",
            BinOpKind::Lte => "<=",
        }
    }

    /// `and`, `or` and `unless`.
    pub fn is_set_op(self) -> bool {
        matches!(self, BinOpKind::Or | BinOpKind::And | BinOpKind::Unless)
    }

    /// `==`, `!=`, `>`, `>=`, `<`, `<=`.
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOpKind::Eq | BinOpKind::Neq | BinOpKind::Gt | BinOpKind::Gte | BinOpKind::Lt | BinOpKind::Lte)
    }

    /// Binding power: higher binds tighter (`or` < `and`/`unless` < comparisons < `+ -` <
    /// `* / %` < `^`).
    pub fn precedence(self) -> u8 {
        match self {
            BinOpKind::Or => 1,
            BinOpKind::And | BinOpKind::Unless => 2,
            BinOpKind::Eq | BinOpKind::Neq | BinOpKind::Gt | BinOpKind::Gte | BinOpKind::Lt | BinOpKind::Lte => 3,
            BinOpKind::Add | BinOpKind::Sub => 4,
            BinOpKind::Mul | BinOpKind::Div | BinOpKind::Mod => 5,
            BinOpKind::Pow => 6,
        }
    }

    /// `^` is the only right-associative operator.
    pub fn right_assoc(self) -> bool {
        self == BinOpKind::Pow
    }

    /// Applies the operator to two scalars, as Loki folds literals: division and modulo by zero
    /// give NaN, comparisons give 1 or 0. Set operators are not defined on scalars.
    pub fn apply_scalar(self, l: f64, r: f64) -> Option<f64> {
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        Some(match self {
            BinOpKind::Add => l + r,
            BinOpKind::Sub => l - r,
            BinOpKind::Mul => l * r,
            BinOpKind::Div => {
                if r == 0.0 {
                    f64::NAN
                } else {
                    l / r
                }
            }
            BinOpKind::Mod => {
                if r == 0.0 {
                    f64::NAN
                } else {
                    l % r
                }
            }
            BinOpKind::Pow => l.powf(r),
            BinOpKind::Eq => b(l == r),
            BinOpKind::Neq => b(l != r),
            BinOpKind::Gt => b(l > r),
            BinOpKind::Gte => b(l >= r),
            BinOpKind::Lt => b(l < r),
            BinOpKind::Lte => b(l <= r),
            BinOpKind::Or | BinOpKind::And | BinOpKind::Unless => return None,
        })
    }
}

/// `bool`, `on`/`ignoring` and `group_left`/`group_right` of a binary operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BinOpModifier {
    /// `bool`: comparisons return 0/1 instead of filtering.
    pub return_bool: bool,
    /// How series of both sides are paired.
    pub matching: VectorMatching,
}

/// How series of the two sides are paired.
///
/// The default (`on == false`, no labels) matches on all labels; `ignoring ()` is the same.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VectorMatching {
    /// `on (...)` when true, `ignoring (...)` when false.
    pub on: bool,
    /// The labels of `on`/`ignoring`.
    pub labels: Vec<String>,
    /// One-to-one, or many-to-one/one-to-many with `group_left`/`group_right`.
    pub card: Cardinality,
    /// The extra labels of `group_left (...)`/`group_right (...)` copied from the "one" side.
    pub include: Vec<String>,
}

/// Cardinality of a vector match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cardinality {
    #[default]
    /// No group modifier: each series matches at most one on the other side.
    OneToOne,
    /// `group_left`
    ManyToOne,
    /// `group_right`
    OneToMany,
}

/// `label_replace(expr, "dst", "replacement", "src", "regex")`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelReplace {
    /// The aggregated or transformed expression.
    pub expr: Box<SampleExpr>,
    /// The label written.
    pub dst: String,
    /// The replacement, with `$1`-style references to regex groups.
    pub replacement: String,
    /// The label the regex is matched against.
    pub src: String,
    /// The regex as written.
    pub regex_source: String,
    /// Compiled and fully anchored (`^(?:...)$`), as Loki compiles it.
    pub regex: GoRegex,
}

impl Expr {
    /// Every stream selector of the query, left to right.
    pub fn selectors(&self) -> Vec<&LogExpr> {
        let mut out = Vec::new();
        match self {
            Expr::Log(l) => out.push(l),
            Expr::Sample(s) => s.collect_selectors(&mut out),
        }
        out
    }
}

impl SampleExpr {
    /// Every stream selector under this expression, left to right.
    pub fn selectors(&self) -> Vec<&LogExpr> {
        let mut out = Vec::new();
        self.collect_selectors(&mut out);
        out
    }

    fn collect_selectors<'a>(&'a self, out: &mut Vec<&'a LogExpr>) {
        match self {
            SampleExpr::RangeAggregation(r) => out.push(&r.range.selector),
            SampleExpr::VectorAggregation(v) => v.expr.collect_selectors(out),
            SampleExpr::BinOp(b) => {
                b.lhs.collect_selectors(out);
                b.rhs.collect_selectors(out);
            }
            SampleExpr::LabelReplace(l) => l.expr.collect_selectors(out),
            SampleExpr::Literal(_) | SampleExpr::Vector(_) => {}
        }
    }
}
