//! Parser for Go `text/template` templates, as used by `line_format` and `label_format`.
//!
//! It reproduces Go's lexer and parser (delimiters `{{ }}`, trim markers `{{-`/`-}}`, comments,
//! pipelines, `if`/`else`/`range`/`with`/`define`/`block`/`template`/`break`/`continue`,
//! variables, fields, literals) and Go's parse-time checks: undefined functions and variables,
//! unbalanced blocks, malformed actions. Errors read as Go prints them, e.g.
//! `template: line:1: function "nosuchfunc" not defined`. Execution is the evaluator's job; the
//! tree here is what it walks.

use std::fmt;

use super::template_lex::{It, Item, lex};
use super::units::parse_go_float;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The body of the template.
    pub root: Vec<Node>,
    /// Templates declared with `{{define "name"}}` or `{{block "name" ...}}`.
    pub defines: Vec<(String, Vec<Node>)>,
}

/// A node of a template body.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Literal text copied to the output.
    Text(String),
    /// `{{pipeline}}`: its value is printed (unless the pipeline declares variables).
    Action(Pipeline),
    /// `{{if ...}}`.
    If(Branch),
    /// `{{range ...}}`.
    Range(Branch),
    /// `{{with ...}}`.
    With(Branch),
    /// `{{template "name" pipeline}}`.
    Template {
        /// The template invoked.
        name: String,
        /// The value passed as its dot, if any.
        pipe: Option<Pipeline>,
    },
    /// `{{break}}` inside `range`.
    Break,
    /// `{{continue}}` inside `range`.
    Continue,
}

/// The pipeline, body and optional `else` body of `if`, `range` and `with`.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// The value tested or iterated.
    pub pipe: Pipeline,
    /// Nodes run when the pipeline is non-empty (for `range`: per element).
    pub body: Vec<Node>,
    /// `{{else if ...}}` is an `else` body holding a nested `If`.
    pub else_body: Option<Vec<Node>>,
}

/// `[$x := | $x =] command | command ...`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pipeline {
    /// Variables declared or assigned (with `$`).
    pub decl: Vec<String>,
    /// `=` rather than `:=`.
    pub is_assign: bool,
    /// Commands chained with `|`; each receives the previous result as its last argument.
    pub cmds: Vec<Command>,
}

/// A function call or a single value: its arguments, the first being the function when it is
/// an identifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The operands; a function call when the first is a function.
    pub args: Vec<Arg>,
}

/// An operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `.`
    Dot,
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// A number or character constant, with its integer and float values when it has them.
    Number {
        /// The literal as written.
        text: String,
        /// The value when it is an integer.
        int: Option<i64>,
        /// The value as a float, when it has one.
        float: Option<f64>,
    },
    /// A string literal, unquoted.
    Str(String),
    /// `.a.b` as `["a", "b"]`.
    Field(Vec<String>),
    /// `$x.a` as `["$x", "a"]`.
    Variable(Vec<String>),
    /// A function name.
    Function(String),
    /// `(pipeline)`.
    Pipe(Box<Pipeline>),
    /// `(pipeline).a.b` and other field accesses on a non-field operand.
    Chain(Box<Arg>, Vec<String>),
}

/// A template parse error, displayed as Go does: `template: NAME:LINE: MSG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The template name used in messages (`line` or `label` in Loki).
    pub name: String,
    /// 1-based line of the template where parsing failed.
    pub line: usize,
    /// What went wrong, in Go's words.
    pub msg: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template: {}:{}: {}", self.name, self.line, self.msg)
    }
}

impl std::error::Error for TemplateError {}

/// Go's builtin template functions.
const BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf", "println", "urlquery", "eq",
    "ge", "gt", "le", "lt", "ne",
];

/// The functions Loki adds to `line_format` and `label_format` templates.
pub const LOKI_FUNCTIONS: &[&str] = &[
    "ToLower",
    "ToUpper",
    "Replace",
    "Trim",
    "TrimLeft",
    "TrimRight",
    "TrimPrefix",
    "TrimSuffix",
    "TrimSpace",
    "regexReplaceAll",
    "regexReplaceAllLiteral",
    "count",
    "urldecode",
    "urlencode",
    "bytes",
    "duration",
    "duration_seconds",
    "unixEpochMillis",
    "unixEpochNanos",
    "toDateInZone",
    "unixToTime",
    "alignLeft",
    "alignRight",
    "b64enc",
    "b64dec",
    "lower",
    "upper",
    "title",
    "trunc",
    "substr",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "indent",
    "nindent",
    "replace",
    "repeat",
    "trim",
    "trimAll",
    "trimSuffix",
    "trimPrefix",
    "int",
    "float64",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "addf",
    "subf",
    "mulf",
    "divf",
    "max",
    "min",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round",
    "fromJson",
    "date",
    "toDate",
    "now",
    "unixEpoch",
    "default",
    "__line__",
    "__timestamp__",
];

/// Parses a `line_format` template (Go names it `line`).
pub fn parse(src: &str) -> Result<Template, TemplateError> {
    parse_named("line", src)
}

/// Parses a template whose errors name it `name` (Loki uses `line` and `label`).
pub fn parse_named(name: &str, src: &str) -> Result<Template, TemplateError> {
    let items = lex(src);
    let mut p = TParser { name, items, pos: 0, vars: vec!["$".to_string()], range_depth: 0, defines: Vec::new() };
    let root = p.top()?;
    Ok(Template { root, defines: p.defines })
}

fn is_function(name: &str) -> bool {
    BUILTINS.contains(&name) || LOKI_FUNCTIONS.contains(&name)
}

// ---- parser ---------------------------------------------------------------------------------

struct TParser<'a> {
    name: &'a str,
    items: Vec<Item>,
    pos: usize,
    vars: Vec<String>,
    range_depth: usize,
    defines: Vec<(String, Vec<Node>)>,
}

/// What ended a list of nodes.
enum Closer {
    End,
    Else,
    /// `{{else if ...}}` / `{{else with ...}}`: the keyword is the next token.
    ElseChain,
}

impl TParser<'_> {
    fn err(&self, msg: impl Into<String>) -> TemplateError {
        let line = self.items.get(self.pos.saturating_sub(1)).or_else(|| self.items.last()).map_or(1, |i| i.line);
        TemplateError { name: self.name.to_string(), line, msg: msg.into() }
    }

    fn next(&mut self) -> Item {
        let i = self.pos.min(self.items.len() - 1);
        self.pos = (self.pos + 1).min(self.items.len());
        self.items[i].clone()
    }

    fn peek(&self) -> &Item {
        &self.items[self.pos.min(self.items.len() - 1)]
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let t = self.next();
            if t.it != It::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let t = self.next_non_space();
        self.pos -= 1;
        t
    }

    fn unexpected(&self, t: &Item, context: &str) -> TemplateError {
        if let It::Error(e) = &t.it {
            return self.err(e.clone());
        }
        self.err(format!("unexpected {t} in {context}"))
    }

    fn expect_right_delim(&mut self, context: &str) -> Result<(), TemplateError> {
        let t = self.next_non_space();
        if t.it == It::RightDelim { Ok(()) } else { Err(self.unexpected(&t, context)) }
    }

    fn top(&mut self) -> Result<Vec<Node>, TemplateError> {
        let mut root = Vec::new();
        loop {
            if self.peek().it == It::Eof {
                return Ok(root);
            }
            if self.peek().it == It::LeftDelim {
                let save = self.pos;
                self.next();
                if self.next_non_space().it == It::Keyword("define") {
                    self.definition()?;
                    continue;
                }
                self.pos = save;
            }
            match self.text_or_action()? {
                Ok(node) => root.extend(node),
                Err(Closer::End) => return Err(self.err("unexpected {{end}}")),
                Err(Closer::Else | Closer::ElseChain) => {
                    return Err(self.err("unexpected {{else}}"));
                }
            }
        }
    }

    fn definition(&mut self) -> Result<(), TemplateError> {
        let t = self.next_non_space();
        let name = self.template_name(&t, "define clause")?;
        self.expect_right_delim("define clause")?;
        let (body, end) = self.item_list()?;
        if !matches!(end, Closer::End) {
            return Err(self.err("unexpected {{else}} in define clause"));
        }
        self.defines.push((name, body));
        Ok(())
    }

    /// A text node, an action, or the `end`/`else` that closes the current list.
    fn text_or_action(&mut self) -> Result<Result<Option<Node>, Closer>, TemplateError> {
        let t = self.next_non_space();
        match t.it {
            It::Text(s) => Ok(Ok(Some(Node::Text(s)))),
            It::LeftDelim => self.action(),
            _ => Err(self.unexpected(&t, "input")),
        }
    }

    fn item_list(&mut self) -> Result<(Vec<Node>, Closer), TemplateError> {
        let mut list = Vec::new();
        while self.peek_non_space().it != It::Eof {
            match self.text_or_action()? {
                Ok(n) => list.extend(n),
                Err(end) => return Ok((list, end)),
            }
        }
        Err(self.err("unexpected EOF"))
    }

    fn action(&mut self) -> Result<Result<Option<Node>, Closer>, TemplateError> {
        let t = self.next_non_space();
        match t.it {
            It::Keyword("block") => self.block().map(Ok),
            It::Keyword("break") | It::Keyword("continue") => {
                let is_break = t.it == It::Keyword("break");
                let word = if is_break { "break" } else { "continue" };
                let n = self.next_non_space();
                if n.it != It::RightDelim {
                    return Err(self.unexpected(&n, &format!("{{{{{word}}}}}")));
                }
                if self.range_depth == 0 {
                    return Err(self.err(format!("{{{{{word}}}}} outside {{{{range}}}}")));
                }
                Ok(Ok(Some(if is_break { Node::Break } else { Node::Continue })))
            }
            It::Keyword("else") => {
                let p = self.peek_non_space();
                if matches!(p.it, It::Keyword("if") | It::Keyword("with")) {
                    return Ok(Err(Closer::ElseChain));
                }
                self.expect_right_delim("else")?;
                Ok(Err(Closer::Else))
            }
            It::Keyword("end") => {
                self.expect_right_delim("end")?;
                Ok(Err(Closer::End))
            }
            It::Keyword(k @ ("if" | "range" | "with")) => self.control(k).map(|n| Ok(Some(n))),
            It::Keyword("template") => {
                let t = self.next_non_space();
                let name = self.template_name(&t, "template clause")?;
                let pipe = if self.peek_non_space().it == It::RightDelim {
                    self.next_non_space();
                    None
                } else {
                    Some(self.pipeline("template clause", &It::RightDelim)?)
                };
                Ok(Ok(Some(Node::Template { name, pipe })))
            }
            _ => {
                self.pos -= 1;
                let pipe = self.pipeline("command", &It::RightDelim)?;
                Ok(Ok(Some(Node::Action(pipe))))
            }
        }
    }

    fn block(&mut self) -> Result<Option<Node>, TemplateError> {
        let t = self.next_non_space();
        let name = self.template_name(&t, "block clause")?;
        let pipe = self.pipeline("block clause", &It::RightDelim)?;
        let (body, end) = self.item_list()?;
        if !matches!(end, Closer::End) {
            return Err(self.err("unexpected {{else}} in block clause"));
        }
        self.defines.push((name.clone(), body));
        Ok(Some(Node::Template { name, pipe: Some(pipe) }))
    }

    fn template_name(&self, t: &Item, context: &str) -> Result<String, TemplateError> {
        match &t.it {
            It::Str(s) | It::RawStr(s) => unquote(s).map_err(|e| self.err(e)),
            _ => Err(self.unexpected(t, context)),
        }
    }

    /// `if`, `range` and `with`, with their `else` (and `else if`/`else with`) branches.
    fn control(&mut self, context: &str) -> Result<Node, TemplateError> {
        let saved_vars = self.vars.len();
        let pipe = self.pipeline(context, &It::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let (body, end) = self.item_list()?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let else_body = match end {
            Closer::End => None,
            Closer::Else => {
                let (list, end) = self.item_list()?;
                if !matches!(end, Closer::End) {
                    return Err(self.err("expected end; found {{else}}"));
                }
                Some(list)
            }
            Closer::ElseChain => {
                // `{{else if x}}` is `{{else}}{{if x}}...{{end}}` sharing the outer `{{end}}`.
                let kw = self.next_non_space();
                let nested = match kw.it {
                    It::Keyword(k @ ("if" | "with")) if k == context => self.control(k)?,
                    It::Keyword(k) => return Err(self.err(format!("unexpected <{k}> in input"))),
                    _ => return Err(self.unexpected(&kw, "else")),
                };
                Some(vec![nested])
            }
        };
        self.vars.truncate(saved_vars);
        let branch = Branch { pipe, body, else_body };
        Ok(match context {
            "if" => Node::If(branch),
            "range" => Node::Range(branch),
            _ => Node::With(branch),
        })
    }

    fn pipeline(&mut self, context: &str, end: &It) -> Result<Pipeline, TemplateError> {
        let mut pipe = Pipeline::default();
        // Declarations: `$x :=`, `$x =`, or `$i, $e :=` in range.
        loop {
            let v = self.peek_non_space();
            let It::Variable(name) = &v.it else { break };
            let save = self.pos;
            self.next_non_space();
            let next = self.peek_non_space();
            match next.it {
                It::Assign | It::Declare => {
                    pipe.is_assign = next.it == It::Assign;
                    self.next_non_space();
                    pipe.decl.push(name.clone());
                    self.vars.push(name.clone());
                    break;
                }
                It::Char(',') => {
                    self.next_non_space();
                    pipe.decl.push(name.clone());
                    self.vars.push(name.clone());
                    if context == "range" && pipe.decl.len() < 2 {
                        if matches!(self.peek_non_space().it, It::Variable(_) | It::RightDelim | It::RParen) {
                            continue;
                        }
                        return Err(self.err("range can only initialize variables"));
                    }
                    return Err(self.err(format!("too many declarations in {context}")));
                }
                _ => {
                    self.pos = save;
                    break;
                }
            }
        }
        loop {
            let t = self.next_non_space();
            if &t.it == end {
                if pipe.cmds.is_empty() {
                    return Err(self.err(format!("missing value for {context}")));
                }
                for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
                    if matches!(
                        c.args.first(),
                        Some(Arg::Bool(_) | Arg::Dot | Arg::Nil | Arg::Number { .. } | Arg::Str(_))
                    ) {
                        return Err(self.err(format!("non executable command in pipeline stage {}", i + 1)));
                    }
                }
                return Ok(pipe);
            }
            match t.it {
                It::Bool(_)
                | It::CharConst(_)
                | It::Dot
                | It::Field(_)
                | It::Ident(_)
                | It::Number(_)
                | It::Keyword("nil")
                | It::RawStr(_)
                | It::Str(_)
                | It::Variable(_)
                | It::LParen => {
                    self.pos -= 1;
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&t, context)),
            }
        }
    }

    fn command(&mut self) -> Result<Command, TemplateError> {
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(arg) = self.operand()? {
                args.push(arg);
            }
            let t = self.next();
            match t.it {
                It::Space => continue,
                It::RightDelim | It::RParen => self.pos -= 1,
                It::Pipe => {}
                _ => return Err(self.unexpected(&t, "operand")),
            }
            break;
        }
        if args.is_empty() {
            return Err(self.err("empty command"));
        }
        Ok(Command { args })
    }

    fn operand(&mut self) -> Result<Option<Arg>, TemplateError> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if !matches!(self.peek().it, It::Field(_)) {
            return Ok(Some(node));
        }
        let mut fields = Vec::new();
        while let It::Field(f) = &self.peek().it {
            fields.push(f[1..].to_string());
            self.next();
        }
        Ok(Some(match node {
            Arg::Field(mut base) => {
                base.extend(fields);
                Arg::Field(base)
            }
            Arg::Variable(mut base) => {
                base.extend(fields);
                Arg::Variable(base)
            }
            Arg::Bool(_) | Arg::Str(_) | Arg::Number { .. } | Arg::Nil | Arg::Dot => {
                let term = match &node {
                    Arg::Bool(b) => b.to_string(),
                    Arg::Str(s) => super::units::go_quote(s),
                    Arg::Number { text, .. } => text.clone(),
                    Arg::Nil => "nil".to_string(),
                    _ => ".".to_string(),
                };
                return Err(self.err(format!("unexpected . after term {}", super::units::go_quote(&term))));
            }
            other => Arg::Chain(Box::new(other), fields),
        }))
    }

    fn term(&mut self) -> Result<Option<Arg>, TemplateError> {
        let t = self.next_non_space();
        Ok(Some(match t.it {
            It::Ident(name) => {
                if !is_function(&name) {
                    return Err(self.err(format!("function {} not defined", super::units::go_quote(&name))));
                }
                Arg::Function(name)
            }
            It::Dot => Arg::Dot,
            It::Keyword("nil") => Arg::Nil,
            It::Variable(name) => {
                let base = name.split('.').next().unwrap_or(&name).to_string();
                if !self.vars.contains(&base) {
                    return Err(self.err(format!("undefined variable {}", super::units::go_quote(&base))));
                }
                Arg::Variable(vec![name])
            }
            It::Field(f) => Arg::Field(vec![f[1..].to_string()]),
            It::Bool(b) => Arg::Bool(b),
            It::Number(text) => number(&text)
                .ok_or_else(|| self.err(format!("illegal number syntax: {}", super::units::go_quote(&text))))?,
            It::CharConst(text) => {
                let c = unquote(&text).map_err(|e| self.err(e))?;
                let mut chars = c.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => {
                        Arg::Number { text, int: Some(i64::from(u32::from(c))), float: Some(f64::from(u32::from(c))) }
                    }
                    _ => return Err(self.err(format!("malformed character constant: {text}"))),
                }
            }
            It::LParen => Arg::Pipe(Box::new(self.pipeline("parenthesized pipeline", &It::RParen)?)),
            It::Str(s) | It::RawStr(s) => Arg::Str(unquote(&s).map_err(|e| self.err(e))?),
            _ => {
                self.pos -= 1;
                return Ok(None);
            }
        }))
    }
}

/// A Go number literal's integer and float values; `None` when it is not a number.
fn number(text: &str) -> Option<Arg> {
    if text.ends_with('i') {
        // Complex numbers parse; templates rarely use them and they have no real value.
        return Some(Arg::Number { text: text.to_string(), int: None, float: None });
    }
    let int = go_parse_int(text);
    let float = parse_go_float(text).ok().or(int.map(|i| i as f64));
    if int.is_none() && float.is_none() {
        return None;
    }
    Some(Arg::Number { text: text.to_string(), int, float })
}

fn go_parse_int(text: &str) -> Option<i64> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let clean = body.replace('_', "");
    let lower = clean.to_ascii_lowercase();
    let v = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if lower.len() > 1 && lower.starts_with('0') {
        i64::from_str_radix(&lower[1..], 8).ok()?
    } else {
        lower.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// `strconv.Unquote` for the string, raw string and character literals of templates.
fn unquote(s: &str) -> Result<String, String> {
    let invalid = || "invalid syntax".to_string();
    if let Some(body) = s.strip_prefix('`').and_then(|b| b.strip_suffix('`')) {
        return Ok(body.replace('\r', ""));
    }
    let quote = s.chars().next().ok_or_else(invalid)?;
    let body = s.get(1..s.len() - 1).ok_or_else(invalid)?;
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or_else(invalid)?;
        let take_hex = |n: usize, chars: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Result<u32, String> {
            let h: String = chars.by_ref().take(n).collect();
            if h.len() != n {
                return Err(invalid());
            }
            u32::from_str_radix(&h, 16).map_err(|_| invalid())
        };
        match e {
            'a' => out.push('\u{07}'),
            'b' => out.push('\u{08}'),
            'f' => out.push('\u{0c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{0b}'),
            '\\' => out.push('\\'),
            '\'' | '"' if e == quote => out.push(e),
            'x' => out.push(char::from_u32(take_hex(2, &mut chars)?).ok_or_else(invalid)?),
            'u' => out.push(char::from_u32(take_hex(4, &mut chars)?).ok_or_else(invalid)?),
            'U' => out.push(char::from_u32(take_hex(8, &mut chars)?).ok_or_else(invalid)?),
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{e}{rest}"), 8).map_err(|_| invalid())?;
                out.push(char::from_u32(v).filter(|_| v < 256).ok_or_else(invalid)?);
            }
            _ => return Err(invalid()),
        }
    }
    Ok(out)
}
