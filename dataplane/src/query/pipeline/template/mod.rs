//! Execution of Go `text/template` templates (parsed by [`crate::logql::template`]) for
//! `line_format` and `label_format`, with Loki's data (the entry's labels as a
//! `map[string]string`, missing keys rendering empty) and functions.
//!
//! It follows Go's semantics: pipelines pass their value as the last argument of the next
//! command, `and`/`or` short-circuit and return an operand, untyped constants take the type of
//! the parameter they fill, a value of the wrong type is an error, `range` walks maps in key
//! order, `{{define}}`/`{{template}}`/`{{block}}` invoke named templates.

mod funcs;
mod gotime;
mod printf;
mod value;

use std::borrow::Cow;

use crate::logql::template::{Arg, Command, Node, Pipeline, Template, parse_named};
use crate::logql::units::go_quote;

use funcs::{FnEnv, P, Sig};
use value::{Value, go_eq, go_lt, write_value};

/// Where templates read labels from.
pub(crate) trait Data {
    /// A label's value (also `__error__`/`__error_details__`).
    fn lookup(&self, name: &str) -> Option<&str>;
    /// Every label, sorted by name.
    fn entries(&self) -> Vec<(String, String)>;
}

/// What a template execution may read.
pub(crate) struct Env<'d> {
    pub(crate) data: &'d dyn Data,
    /// The current line (`__line__`).
    pub(crate) line: &'d [u8],
    /// The entry's timestamp in nanoseconds (`__timestamp__`).
    pub(crate) ts: i64,
}

/// A template ready to run.
#[derive(Debug, Clone)]
pub(crate) struct CompiledTemplate {
    tmpl: Template,
    name: &'static str,
    /// `{{.name}}` alone: the value is copied without running the executor.
    simple_key: Option<String>,
}

/// Most nested template invocations (Go's limit is far higher; it only guards recursion).
const MAX_DEPTH: usize = 100;
/// Largest output of one execution: a template cannot blow a line up without bound.
pub(crate) const MAX_OUTPUT: usize = 4 << 20;
/// Most `range` iterations of one execution.
const MAX_ITERATIONS: usize = 1_000_000;

impl CompiledTemplate {
    /// Parses `src`; `name` is `line` or `label`, as in Loki's messages.
    pub(crate) fn new(name: &'static str, src: &str) -> Result<Self, String> {
        let tmpl = parse_named(name, src).map_err(|e| e.to_string())?;
        let simple_key = match tmpl.root.as_slice() {
            [Node::Action(p)] if p.decl.is_empty() && p.cmds.len() == 1 && tmpl.defines.is_empty() => {
                match p.cmds[0].args.as_slice() {
                    [Arg::Field(f)] if f.len() == 1 => Some(f[0].clone()),
                    _ => None,
                }
            }
            _ => None,
        };
        Ok(Self { tmpl, name, simple_key })
    }

    /// The template when it is just `{{.name}}`.
    pub(crate) fn simple_key(&self) -> Option<&str> {
        self.simple_key.as_deref()
    }

    /// The label names the template reads as fields (`.name`), for parser hints.
    pub(crate) fn fields(&self, out: &mut Vec<String>) {
        fn nodes(ns: &[Node], out: &mut Vec<String>) {
            for n in ns {
                match n {
                    Node::Action(p) => pipe(p, out),
                    Node::If(b) | Node::Range(b) | Node::With(b) => {
                        pipe(&b.pipe, out);
                        nodes(&b.body, out);
                        if let Some(e) = &b.else_body {
                            nodes(e, out);
                        }
                    }
                    Node::Template { pipe: Some(p), .. } => pipe(p, out),
                    _ => {}
                }
            }
        }
        fn pipe(p: &Pipeline, out: &mut Vec<String>) {
            for c in &p.cmds {
                for a in &c.args {
                    arg(a, out);
                }
            }
        }
        fn arg(a: &Arg, out: &mut Vec<String>) {
            match a {
                Arg::Field(f) => out.extend(f.iter().cloned()),
                Arg::Pipe(p) => pipe(p, out),
                Arg::Chain(b, _) => arg(b, out),
                _ => {}
            }
        }
        nodes(&self.tmpl.root, out);
        for (_, body) in &self.tmpl.defines {
            nodes(body, out);
        }
    }

    /// Runs the template, appending its output to `out`. The error reads like Go's.
    pub(crate) fn execute(&self, env: &Env<'_>, out: &mut String) -> Result<(), String> {
        let mut ex =
            Exec { env, tmpl: &self.tmpl, name: self.name, vars: Vec::new(), depth: 0, iterations: 0, labels: None };
        ex.vars.push(("$".to_string(), Value::Labels));
        ex.walk(&Value::Labels, &self.tmpl.root, out).map(|_| ())
    }
}

/// How a list of nodes ended.
enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'e, 'd> {
    env: &'e Env<'d>,
    tmpl: &'e Template,
    name: &'static str,
    vars: Vec<(String, Value<'d>)>,
    depth: usize,
    iterations: usize,
    /// The labels as `(name, value)` pairs, computed when a template prints or ranges over them.
    labels: Option<Vec<(String, String)>>,
}

type R<T> = Result<T, String>;

impl<'e, 'd> Exec<'e, 'd> {
    fn err(&self, at: &str, msg: impl std::fmt::Display) -> String {
        format!("template: {}: executing {} at <{at}>: {msg}", self.name, go_quote(self.name))
    }

    fn labels(&mut self) -> &[(String, String)] {
        if self.labels.is_none() {
            self.labels = Some(self.env.data.entries());
        }
        self.labels.as_deref().unwrap_or_default()
    }

    fn walk(&mut self, dot: &Value<'d>, nodes: &'e [Node], out: &mut String) -> R<Flow> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(dot, p)?;
                    if p.decl.is_empty() {
                        self.print(&v, out);
                    }
                }
                Node::If(b) | Node::With(b) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(dot, &b.pipe)?;
                    let flow = if self.truth(&v) {
                        let inner = if matches!(n, Node::With(_)) { v } else { dot.clone() };
                        self.walk(&inner, &b.body, out)?
                    } else if let Some(e) = &b.else_body {
                        self.walk(dot, e, out)?
                    } else {
                        Flow::Normal
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(b) => {
                    let mark = self.vars.len();
                    self.range(dot, b, out)?;
                    self.vars.truncate(mark);
                }
                Node::Template { name, pipe } => {
                    let body = self
                        .tmpl
                        .defines
                        .iter()
                        .rev()
                        .find(|(n, _)| n == name)
                        .map(|(_, b)| b)
                        .ok_or_else(|| self.err("template", format!("no such template {}", go_quote(name))))?;
                    let new_dot = match pipe {
                        Some(p) => self.pipeline(dot, p)?,
                        None => Value::Nil,
                    };
                    if self.depth >= MAX_DEPTH {
                        return Err(self.err("template", format!("exceeded maximum template depth ({MAX_DEPTH})")));
                    }
                    self.depth += 1;
                    let saved = std::mem::replace(&mut self.vars, vec![("$".to_string(), new_dot.clone())]);
                    let res = self.walk(&new_dot, body, out);
                    self.vars = saved;
                    self.depth -= 1;
                    res?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
            if out.len() > MAX_OUTPUT {
                return Err(self.err("output", format!("template output exceeds {MAX_OUTPUT} bytes")));
            }
        }
        Ok(Flow::Normal)
    }

    fn truth(&mut self, v: &Value<'d>) -> bool {
        match v {
            Value::Labels => !self.labels().is_empty(),
            other => other.truth(0),
        }
    }

    fn print(&mut self, v: &Value<'d>, out: &mut String) {
        match v {
            Value::Nil | Value::Missing => out.push_str("<no value>"),
            Value::Str(s) => out.push_str(s),
            Value::Labels => {
                let labels = self.labels().to_vec();
                write_value(out, v, &labels);
            }
            _ => write_value(out, v, &[]),
        }
    }

    fn range(&mut self, dot: &Value<'d>, b: &'e crate::logql::template::Branch, out: &mut String) -> R<()> {
        let v = self.pipeline_value(dot, &b.pipe)?;
        let count = match &v {
            Value::Map(m) => m.len(),
            Value::List(l) => l.len(),
            Value::Labels => self.labels().len(),
            Value::Int(n) | Value::I64(n) => usize::try_from(*n).unwrap_or(0),
            Value::Nil | Value::Missing => 0,
            other => return Err(self.err("range", format!("range can't iterate over {}", self.show(other)))),
        };
        if count == 0 {
            if let Some(e) = &b.else_body {
                self.walk(dot, e, out)?;
            }
            return Ok(());
        }
        let map_items: Vec<(Value<'d>, Value<'d>)> = match &v {
            Value::Map(m) => m.iter().map(|(k, v)| (Value::str(k.clone()), v.clone())).collect(),
            Value::Labels => self.labels().to_vec().into_iter().map(|(k, v)| (Value::str(k), Value::str(v))).collect(),
            _ => Vec::new(),
        };
        for i in 0..count {
            self.iterations += 1;
            if self.iterations > MAX_ITERATIONS {
                return Err(self.err("range", "too many range iterations"));
            }
            let (k, v) = match &v {
                Value::List(l) => (Value::Int(i as i64), l[i].clone()),
                Value::Int(_) | Value::I64(_) => (Value::Int(i as i64), Value::Int(i as i64)),
                _ => map_items[i].clone(),
            };
            let mark = self.vars.len();
            match b.pipe.decl.as_slice() {
                [] => {}
                [one] => self.vars.push((one.clone(), v.clone())),
                [a, c, ..] => {
                    self.vars.push((a.clone(), k));
                    self.vars.push((c.clone(), v.clone()));
                }
            }
            let flow = self.walk(&v, &b.body, out)?;
            self.vars.truncate(mark);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        Ok(())
    }

    fn show(&self, v: &Value<'d>) -> String {
        let mut s = String::new();
        write_value(&mut s, v, &[]);
        s
    }

    /// A pipeline's value, without declaring its variables (`range` declares its own).
    fn pipeline_value(&mut self, dot: &Value<'d>, p: &'e Pipeline) -> R<Value<'d>> {
        let mut val: Option<Value<'d>> = None;
        for c in &p.cmds {
            val = Some(self.command(dot, c, val)?);
        }
        Ok(val.unwrap_or(Value::Missing))
    }

    fn pipeline(&mut self, dot: &Value<'d>, p: &'e Pipeline) -> R<Value<'d>> {
        let v = self.pipeline_value(dot, p)?;
        for name in &p.decl {
            if p.is_assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, dot: &Value<'d>, c: &'e Command, fin: Option<Value<'d>>) -> R<Value<'d>> {
        let first = &c.args[0];
        if let Arg::Function(name) = first {
            return self.call(dot, name, &c.args[1..], fin);
        }
        // Method calls on time values: `(__timestamp__).Unix`, `.Format "2006"`.
        if let Arg::Chain(base, fields) = first
            && !fields.is_empty()
            && (c.args.len() > 1 || fin.is_some())
        {
            let recv = self.arg_value(dot, base)?;
            let (head, method) = fields.split_at(fields.len() - 1);
            let recv = self.fields(recv, head)?;
            let mut args = Vec::new();
            for a in &c.args[1..] {
                args.push(self.arg_for(dot, a, P::Any, &method[0])?);
            }
            args.extend(fin);
            return self.method(recv, &method[0], args);
        }
        if c.args.len() > 1 || fin.is_some() {
            return Err(self.err(&arg_text(first), format!("can't give argument to non-function {}", arg_text(first))));
        }
        match first {
            Arg::Nil => Err(self.err("nil", "nil is not a command")),
            Arg::Number { .. } => self.constant(first, "number"),
            a => self.arg_value(dot, a),
        }
    }

    /// The value of an operand that is not a function.
    fn arg_value(&mut self, dot: &Value<'d>, a: &'e Arg) -> R<Value<'d>> {
        match a {
            Arg::Dot => Ok(dot.clone()),
            Arg::Nil => Ok(Value::Nil),
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Str(s) => Ok(Value::Str(Cow::Owned(s.clone()))),
            Arg::Number { .. } => self.constant(a, "number"),
            Arg::Field(f) => self.fields(dot.clone(), f),
            Arg::Variable(parts) => {
                let (name, rest) = parts.split_first().map_or(("$", &[][..]), |(n, r)| (n.as_str(), r));
                let (base, inner) = match name.split_once('.') {
                    Some((b, i)) => (b, Some(i)),
                    None => (name, None),
                };
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == base)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| self.err(name, format!("undefined variable: {base}")))?;
                let mut path: Vec<String> =
                    inner.map(|i| i.split('.').map(str::to_string).collect()).unwrap_or_default();
                path.extend(rest.iter().cloned());
                self.fields(v, &path)
            }
            Arg::Function(name) => self.call(dot, name, &[], None),
            Arg::Pipe(p) => {
                let mark = self.vars.len();
                let v = self.pipeline(dot, p);
                self.vars.truncate(mark);
                v
            }
            Arg::Chain(base, fields) => {
                let v = self.arg_value(dot, base)?;
                self.fields(v, fields)
            }
        }
    }

    fn fields(&mut self, mut v: Value<'d>, names: &[String]) -> R<Value<'d>> {
        let data: &'d dyn Data = self.env.data;
        for name in names {
            v = match v {
                Value::Labels => match data.lookup(name) {
                    Some(s) => Value::Str(Cow::Borrowed(s)),
                    None => Value::str(""),
                },
                Value::Map(m) => m.get(name.as_str()).cloned().unwrap_or(Value::Missing),
                Value::Missing | Value::Nil => Value::Missing,
                Value::Time(_) => self.method(v, name, Vec::new())?,
                other => {
                    return Err(self.err(
                        &format!(".{name}"),
                        format!("can't evaluate field {name} in type {}", other.type_name()),
                    ));
                }
            };
        }
        Ok(v)
    }

    /// The few `time.Time` methods templates use.
    fn method(&mut self, recv: Value<'d>, name: &str, args: Vec<Value<'d>>) -> R<Value<'d>> {
        let Value::Time(t) = &recv else {
            return Err(self.err(name, format!("can't evaluate field {name} in type {}", recv.type_name())));
        };
        Ok(match (name, args.as_slice()) {
            ("Unix", []) => Value::I64(t.secs),
            ("UnixMilli", []) => Value::I64(t.unix_millis()),
            ("UnixNano", []) => Value::I64(t.unix_nanos() as i64),
            ("String", []) => Value::str(t.go_string()),
            ("UTC", []) => {
                Value::Time(std::rc::Rc::new(gotime::GoTime { offset: 0, zone: "UTC".to_string(), ..(**t).clone() }))
            }
            ("Year", []) => Value::Int(t.format("2006").parse().unwrap_or(0)),
            ("Day", []) => Value::Int(t.format("2").parse().unwrap_or(0)),
            ("Hour", []) => Value::Int(t.format("15").parse().unwrap_or(0)),
            ("Minute", []) => Value::Int(t.format("4").parse().unwrap_or(0)),
            ("Second", []) => Value::Int(t.format("5").parse().unwrap_or(0)),
            ("Nanosecond", []) => Value::Int(i64::from(t.nanos)),
            ("Month", []) => Value::str(t.format("January")),
            ("Weekday", []) => Value::str(t.format("Monday")),
            ("Format", [Value::Str(layout)]) => Value::str(t.format(layout)),
            _ => return Err(self.err(name, format!("can't evaluate field {name} in type time.Time"))),
        })
    }

    /// Go's `idealConstant`: an integer literal is an `int`, one with `.`/`e`/`p` a `float64`.
    fn constant(&self, a: &Arg, at: &str) -> R<Value<'d>> {
        let Arg::Number { text, int, float } = a else { return Ok(Value::Nil) };
        let lower = text.to_ascii_lowercase();
        let hex_int = lower.starts_with("0x") || lower.starts_with("-0x") || lower.starts_with("+0x");
        if float.is_some() && !hex_int && !text.starts_with('\'') && text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Ok(Value::Float(float.unwrap_or(0.0)));
        }
        match int {
            Some(i) => Ok(Value::Int(*i)),
            None => Err(self.err(at, format!("{text} overflows int"))),
        }
    }

    /// An argument converted to a parameter type, with Go's errors.
    fn arg_for(&mut self, dot: &Value<'d>, a: &'e Arg, p: P, func: &str) -> R<Value<'d>> {
        let text = arg_text(a);
        match a {
            Arg::Number { int, float, .. } => match p {
                P::Int => int.map(Value::Int).ok_or_else(|| self.err(func, format!("expected integer; found {text}"))),
                P::Float => {
                    float.map(Value::Float).ok_or_else(|| self.err(func, format!("expected float; found {text}")))
                }
                P::Any => self.constant(a, func),
                P::Str => Err(self.err(func, format!("expected string; found {text}"))),
                P::Time => Err(self.err(func, format!("expected time.Time; found {text}"))),
            },
            Arg::Str(s) => match p {
                P::Str | P::Any => Ok(Value::Str(Cow::Owned(s.clone()))),
                P::Int => Err(self.err(func, format!("expected integer; found {text}"))),
                P::Float => Err(self.err(func, format!("expected float; found {text}"))),
                P::Time => Err(self.err(func, format!("expected time.Time; found {text}"))),
            },
            Arg::Bool(b) => match p {
                P::Any => Ok(Value::Bool(*b)),
                _ => Err(self.err(func, format!("expected {}; found {text}", p.go_name()))),
            },
            Arg::Nil => match p {
                P::Any => Ok(Value::Nil),
                _ => Err(self.err(func, format!("cannot assign nil to {}", p.go_name()))),
            },
            _ => {
                let v = self.arg_value(dot, a)?;
                self.validate(v, p, func)
            }
        }
    }

    /// Checks that a computed value fits a parameter (Go's `validateType`).
    fn validate(&self, v: Value<'d>, p: P, func: &str) -> R<Value<'d>> {
        let ok = match (&v, p) {
            (Value::Missing, P::Any) => return Ok(Value::Nil),
            (Value::Missing, _) => return Err(self.err(func, format!("invalid value; expected {}", p.go_name()))),
            (_, P::Any) => true,
            (Value::Str(_), P::Str)
            | (Value::Int(_), P::Int)
            | (Value::Float(_), P::Float)
            | (Value::Time(_), P::Time) => true,
            _ => false,
        };
        if ok {
            Ok(v)
        } else {
            Err(self.err(func, format!("wrong type for value; expected {}; got {}", p.go_name(), v.type_name())))
        }
    }

    fn call(&mut self, dot: &Value<'d>, name: &str, args: &'e [Arg], fin: Option<Value<'d>>) -> R<Value<'d>> {
        match name {
            "and" | "or" => {
                let n = args.len() + usize::from(fin.is_some());
                if n == 0 {
                    return Err(self.err(name, format!("wrong number of args for {name}: want at least 1 got 0")));
                }
                let mut last = Value::Nil;
                for a in args {
                    last = self.arg_for(dot, a, P::Any, name)?;
                    if self.truth(&last) == (name == "or") {
                        return Ok(last);
                    }
                }
                if let Some(f) = fin {
                    last = f;
                }
                return Ok(last);
            }
            _ => {}
        }
        let builtin_sig = builtin_signature(name);
        let sig = match builtin_sig.or_else(|| funcs::signature(name)) {
            Some(s) => s,
            None => return Err(self.err(name, format!("function {} not defined", go_quote(name)))),
        };
        let n = args.len() + usize::from(fin.is_some());
        let fixed = sig.params.len();
        if sig.variadic.is_none() && n != fixed {
            return Err(self.err(name, format!("wrong number of args for {name}: want {fixed} got {n}")));
        }
        if sig.variadic.is_some() && n < fixed {
            return Err(self.err(name, format!("wrong number of args for {name}: want at least {fixed} got {n}")));
        }
        let mut vals = Vec::with_capacity(n);
        for (k, a) in args.iter().enumerate() {
            let p = sig.params.get(k).copied().or(sig.variadic).unwrap_or(P::Any);
            vals.push(self.arg_for(dot, a, p, name)?);
        }
        if let Some(f) = fin {
            let p = sig.params.get(args.len()).copied().or(sig.variadic).unwrap_or(P::Any);
            vals.push(self.validate(f, p, name)?);
        }
        if builtin_sig.is_some() {
            return self.builtin(name, vals);
        }
        funcs::call(name, vals, FnEnv { line: self.env.line, ts: self.env.ts })
            .map_err(|e| self.err(name, format!("error calling {name}: {e}")))
    }

    fn builtin(&mut self, name: &str, mut v: Vec<Value<'d>>) -> R<Value<'d>> {
        if name == "not" {
            return Ok(Value::Bool(!self.truth(&v[0])));
        }
        if name == "len" && matches!(v[0], Value::Labels) {
            return Ok(Value::Int(self.labels().len() as i64));
        }
        let prefix = self.err(name, format!("error calling {name}: "));
        let cmp_err = |e: String| format!("{prefix}{e}");
        Ok(match name {
            "len" => Value::Int(match &v[0] {
                Value::Str(s) => s.len(),
                Value::Map(m) => m.len(),
                Value::List(l) => l.len(),
                other => return Err(cmp_err(format!("len of type {}", other.type_name()))),
            } as i64),
            "eq" => {
                let first = v.remove(0);
                if v.is_empty() {
                    return Err(cmp_err("missing argument for comparison".to_string()));
                }
                let mut hit = false;
                for other in &v {
                    if go_eq(&first, other).map_err(cmp_err)? {
                        hit = true;
                        break;
                    }
                }
                Value::Bool(hit)
            }
            "ne" => Value::Bool(!go_eq(&v[0], &v[1]).map_err(cmp_err)?),
            "lt" => Value::Bool(go_lt(&v[0], &v[1]).map_err(cmp_err)?),
            "le" => Value::Bool(go_lt(&v[0], &v[1]).map_err(cmp_err)? || go_eq(&v[0], &v[1]).map_err(cmp_err)?),
            "gt" => Value::Bool(!(go_lt(&v[0], &v[1]).map_err(cmp_err)? || go_eq(&v[0], &v[1]).map_err(cmp_err)?)),
            "ge" => Value::Bool(!go_lt(&v[0], &v[1]).map_err(cmp_err)?),
            "index" => {
                let mut item = v.remove(0);
                for idx in v {
                    item = self.index(item, &idx).map_err(cmp_err)?;
                }
                item
            }
            "slice" => {
                let item = v.remove(0);
                let ix: Vec<i64> =
                    v.iter().map(|x| if let Value::Int(i) | Value::I64(i) = x { *i } else { -1 }).collect();
                slice(item, &ix).map_err(cmp_err)?
            }
            "print" | "println" | "printf" | "html" | "js" | "urlquery" => {
                let labels = self.labels().to_vec();
                let text = match name {
                    "print" => printf::sprint(&v, &labels),
                    "println" => printf::sprintln(&v, &labels),
                    "printf" => {
                        let fmt = match v.remove(0) {
                            Value::Str(s) => s.into_owned(),
                            _ => String::new(),
                        };
                        printf::sprintf(&fmt, &v, &labels)
                    }
                    _ => {
                        let s = match v.as_slice() {
                            [Value::Str(s)] => s.to_string(),
                            _ => printf::sprint(&v, &labels),
                        };
                        match name {
                            "html" => html_escape(&s),
                            "js" => js_escape(&s),
                            _ => funcs::query_escape(&s),
                        }
                    }
                };
                Value::str(text)
            }
            "call" => return Err(cmp_err("call of nil".to_string())),
            _ => return Err(self.err(name, format!("function {} not defined", go_quote(name)))),
        })
    }

    fn index(&mut self, item: Value<'d>, idx: &Value<'d>) -> Result<Value<'d>, String> {
        let data: &'d dyn Data = self.env.data;
        match (&item, idx) {
            (Value::Map(m), Value::Str(k)) => Ok(m.get(k.as_ref()).cloned().unwrap_or(Value::Missing)),
            (Value::Labels, Value::Str(k)) => Ok(match data.lookup(k) {
                Some(s) => Value::Str(Cow::Borrowed(s)),
                None => Value::str(""),
            }),
            (Value::List(l), Value::Int(i) | Value::I64(i)) => l
                .get(usize::try_from(*i).unwrap_or(usize::MAX))
                .cloned()
                .ok_or_else(|| format!("index out of range: {i}")),
            (Value::Str(s), Value::Int(i) | Value::I64(i)) => s
                .as_bytes()
                .get(usize::try_from(*i).unwrap_or(usize::MAX))
                .map(|b| Value::Int(i64::from(*b)))
                .ok_or_else(|| format!("index out of range: {i}")),
            (Value::Nil | Value::Missing, _) => Err("index of untyped nil".to_string()),
            (Value::Map(_) | Value::Labels, other) => {
                Err(format!("value has type {}; should be string", other.type_name()))
            }
            (other, _) => Err(format!("can't index item of type {}", other.type_name())),
        }
    }
}

/// The signatures of Go's template builtins (`and`/`or` are handled apart).
fn builtin_signature(name: &str) -> Option<Sig> {
    use P::*;
    Some(match name {
        "not" | "len" => Sig { params: &[Any], variadic: None },
        "eq" => Sig { params: &[Any], variadic: Some(Any) },
        "ne" | "lt" | "le" | "gt" | "ge" => Sig { params: &[Any, Any], variadic: None },
        "index" | "slice" => Sig { params: &[Any], variadic: Some(Any) },
        "print" | "println" | "html" | "js" | "urlquery" => Sig { params: &[], variadic: Some(Any) },
        "printf" => Sig { params: &[Str], variadic: Some(Any) },
        "call" => Sig { params: &[Any], variadic: Some(Any) },
        _ => return None,
    })
}

fn slice<'d>(item: Value<'d>, ix: &[i64]) -> Result<Value<'d>, String> {
    let len = match &item {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    } as i64;
    let lo = ix.first().copied().unwrap_or(0);
    let hi = ix.get(1).copied().unwrap_or(len);
    if ix.len() > 2 || lo < 0 || hi < lo || hi > len {
        return Err(format!("index out of range: {}", if lo < 0 { lo } else { hi }));
    }
    let (lo, hi) = (lo as usize, hi as usize);
    Ok(match item {
        Value::Str(s) => Value::str(String::from_utf8_lossy(&s.as_bytes()[lo..hi]).into_owned()),
        Value::List(l) => Value::List(std::rc::Rc::new(l[lo..hi].to_vec())),
        _ => Value::Nil,
    })
}

fn arg_text(a: &Arg) -> String {
    match a {
        Arg::Dot => ".".to_string(),
        Arg::Nil => "nil".to_string(),
        Arg::Bool(b) => b.to_string(),
        Arg::Number { text, .. } => text.clone(),
        Arg::Str(s) => go_quote(s),
        Arg::Field(f) => f.iter().map(|x| format!(".{x}")).collect(),
        Arg::Variable(v) => v.join("."),
        Arg::Function(f) => f.clone(),
        Arg::Pipe(_) => "(...)".to_string(),
        Arg::Chain(b, f) => format!("{}{}", arg_text(b), f.iter().map(|x| format!(".{x}")).collect::<String>()),
    }
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
