//! Rendering metric queries written as Go `text/template`s.
//!
//! Flagger renders every query (built-in, inline `query`, MetricTemplate) with Go's
//! `text/template`, `missingkey=error` and zero-argument functions `name`, `namespace`, `target`,
//! `service`, `ingress`, `route`, `interval` and `variables`. This is the subset of that language
//! MetricTemplates use: text, `{{ pipeline }}` actions, `{{-` / `-}}` trim markers, comments,
//! string/number/bool literals, pipelines (`x | printf "%s"`), parentheses, field access on
//! `variables`, `$var :=` / `$var =` / `$var`, and the functions above plus `printf`, `print`,
//! `println`, `index` and `len`. Control structures (`if`, `range`, `with`, `define`, ...) are
//! rejected with an error naming them, never silently mis-rendered.

use std::collections::BTreeMap;

use thiserror::Error;

use super::gofmt;
use crate::api::{Canary, CanaryMetric};

/// The values a query template can read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateContext {
    /// `{{ name }}`: the Canary's name.
    pub name: String,
    /// `{{ namespace }}`: the Canary's namespace.
    pub namespace: String,
    /// `{{ target }}`: `targetRef.name`.
    pub target: String,
    /// `{{ service }}`: `service.name`, else the target.
    pub service: String,
    /// `{{ ingress }}`: `ingressRef.name`, else the target.
    pub ingress: String,
    /// `{{ route }}`: `routeRef.name`, else the target.
    pub route: String,
    /// `{{ interval }}`: the metric's `interval`, else `1m`.
    pub interval: String,
    /// `{{ variables.<key> }}`: the metric's `templateVariables`.
    pub variables: BTreeMap<String, String>,
}

/// The query window when a metric names none.
pub const DEFAULT_INTERVAL: &str = "1m";

impl TemplateContext {
    /// The context of one metric of a Canary. Unlike Flagger, the interval defaults to `1m` for
    /// template metrics too (Flagger leaves it empty there, which breaks `[{{ interval }}]`).
    pub fn new(canary: &Canary, metric: &CanaryMetric) -> TemplateContext {
        let spec = &canary.spec;
        let target = spec.target_ref.name.clone();
        let or_target =
            |s: Option<&String>| s.filter(|s| !s.is_empty()).cloned().unwrap_or_else(|| target.clone());
        TemplateContext {
            name: canary.metadata.name.clone().unwrap_or_default(),
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            service: or_target(spec.service.as_ref().and_then(|s| s.name.as_ref())),
            ingress: or_target(spec.ingress_ref.as_ref().map(|r| &r.name)),
            route: or_target(spec.route_ref.as_ref().map(|r| &r.name)),
            interval: metric
                .interval
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| DEFAULT_INTERVAL.to_string()),
            variables: metric.template_variables.clone().unwrap_or_default(),
            target,
        }
    }
}

/// Why a query template could not be rendered. `line` is 1-based within the template.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum TemplateError {
    #[error("query template line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error(
        "query template line {line}: variables.{key} is not set; add `{key}` to the metric's templateVariables"
    )]
    MissingVariable { line: usize, key: String },
    #[error(
        "query template line {line}: function {name:?} not defined; the functions are name, namespace, target, \
         service, ingress, route, interval, variables, printf, print, println, index and len"
    )]
    UnknownFunction { line: usize, name: String },
    #[error("query template line {line}: {message}")]
    Exec { line: usize, message: String },
}

/// Renders `source` against `ctx`.
pub fn render(source: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
    let nodes = Parser::new(source).parse()?;
    Exec { ctx, vars: BTreeMap::new() }.run(&nodes)
}

/// Checks that `source` parses (syntax, known functions, declared variables) without rendering it.
pub fn check(source: &str) -> Result<(), TemplateError> {
    Parser::new(source).parse().map(|_| ())
}

/// A template value.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Map(BTreeMap<String, String>),
    Nil,
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Bool(_) => "bool",
            Value::Map(_) => "map",
            Value::Nil => "nil",
        }
    }
}

const CONTEXT_FUNCTIONS: [&str; 8] =
    ["name", "namespace", "target", "service", "ingress", "route", "interval", "variables"];
const OTHER_FUNCTIONS: [&str; 5] = ["printf", "print", "println", "index", "len"];
/// Go built-ins that only make sense with control structures, which Veer does not render.
const UNSUPPORTED_GO_FUNCTIONS: [&str; 14] =
    ["and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "call", "html", "js", "urlquery", "slice"];
const KEYWORDS: [&str; 10] =
    ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"];

// ---------------------------------------------------------------------------------------------
// Parsing

enum Node {
    Text(String),
    Action { line: usize, pipe: Pipeline },
}

struct Pipeline {
    /// `$x :=` (true) or `$x =` (false).
    decl: Option<(String, bool)>,
    cmds: Vec<Command>,
}

struct Command {
    args: Vec<Operand>,
}

struct Operand {
    term: Term,
    /// `.a.b` after the term.
    fields: Vec<String>,
}

enum Term {
    Func(String),
    Var(String),
    Dot,
    Lit(Value),
    Paren(Pipeline),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Keyword(String),
    Field(String),
    Dot,
    Var(String),
    Lit(Value),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

struct Token {
    tok: Tok,
    /// Whitespace came before it (a field right after an operand, without space, is a chain).
    spaced: bool,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    declared: Vec<String>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser { src, pos: 0, line: 1, declared: vec!["$".into()] }
    }

    fn syntax(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::Syntax { line: self.line, message: message.into() }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn parse(mut self) -> Result<Vec<Node>, TemplateError> {
        let mut nodes = Vec::new();
        let mut trim_next = false;
        loop {
            let rest = self.rest();
            let text_end = rest.find("{{").unwrap_or(rest.len());
            let mut text = &rest[..text_end];
            if trim_next {
                text = text.trim_start_matches(is_space);
            }
            let open = &rest[text_end..];
            let trim_left = open.len() > 3 && open[2..].starts_with('-') && open[3..].starts_with(is_space);
            if trim_left {
                text = text.trim_end_matches(is_space);
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text.to_string()));
            }
            self.advance(text_end);
            if self.pos >= self.src.len() {
                return Ok(nodes);
            }
            let start_line = self.line;
            self.advance(if trim_left { 3 } else { 2 });
            trim_next = if self.rest().trim_start_matches(is_space).starts_with("/*") {
                self.comment()?
            } else {
                let (tokens, trim_right) = self.lex_action()?;
                let pipe = self.parse_action(tokens, start_line)?;
                nodes.push(Node::Action { line: start_line, pipe });
                trim_right
            };
        }
    }

    /// Moves `n` bytes on, counting lines.
    fn advance(&mut self, n: usize) {
        self.line += self.src[self.pos..self.pos + n].matches('\n').count();
        self.pos += n;
    }

    /// `{{/* ... */}}`; returns whether it ends with a right trim marker.
    fn comment(&mut self) -> Result<bool, TemplateError> {
        let lead = self.rest().len() - self.rest().trim_start_matches(is_space).len();
        self.advance(lead + 2);
        let Some(end) = self.rest().find("*/") else {
            return Err(self.syntax("unclosed comment: add `*/}}`"));
        };
        self.advance(end + 2);
        let after = self.rest();
        if after.starts_with("}}") {
            self.advance(2);
            Ok(false)
        } else if after.starts_with(is_space) && after.trim_start_matches(is_space).starts_with("-}}") {
            let n = after.len() - after.trim_start_matches(is_space).len() + 3;
            self.advance(n);
            Ok(true)
        } else {
            Err(self.syntax("comment ends before closing delimiter: write `*/}}` with nothing between"))
        }
    }

    /// Lexes an action's body up to and including `}}`.
    fn lex_action(&mut self) -> Result<(Vec<Token>, bool), TemplateError> {
        let mut tokens = Vec::new();
        loop {
            let rest = self.rest();
            let body = rest.trim_start_matches(is_space);
            let spaced = body.len() < rest.len();
            self.advance(rest.len() - body.len());
            if body.starts_with("}}") {
                self.advance(2);
                return Ok((tokens, false));
            }
            if spaced && body.starts_with("-}}") {
                self.advance(3);
                return Ok((tokens, true));
            }
            let Some(c) = body.chars().next() else {
                return Err(self.syntax("unclosed action: add `}}`"));
            };
            let next = body[c.len_utf8()..].chars().next();
            let (tok, len) = match c {
                '|' => (Tok::Pipe, 1),
                '(' => (Tok::LParen, 1),
                ')' => (Tok::RParen, 1),
                ',' => (Tok::Comma, 1),
                ':' if next == Some('=') => (Tok::Declare, 2),
                '=' => (Tok::Assign, 1),
                '"' => self.quoted(body)?,
                '`' => match body[1..].find('`') {
                    Some(end) => (Tok::Lit(Value::Str(body[1..=end].to_string())), end + 2),
                    None => return Err(self.syntax("unterminated raw string: add the closing backquote")),
                },
                '\'' => self.char_constant(body)?,
                '$' => {
                    let n = ident_len(&body[1..]);
                    (Tok::Var(body[..=n].to_string()), n + 1)
                }
                '.' if next.is_some_and(|n| n.is_ascii_digit()) => self.number(body)?,
                '.' if next.is_some_and(is_ident_start) => {
                    let n = ident_len(&body[1..]);
                    (Tok::Field(body[1..=n].to_string()), n + 1)
                }
                '.' => (Tok::Dot, 1),
                '0'..='9' => self.number(body)?,
                '+' | '-' if next.is_some_and(|n| n.is_ascii_digit() || n == '.') => self.number(body)?,
                c if is_ident_start(c) => {
                    let n = ident_len(body);
                    let word = &body[..n];
                    let tok = match word {
                        "true" => Tok::Lit(Value::Bool(true)),
                        "false" => Tok::Lit(Value::Bool(false)),
                        "nil" => Tok::Lit(Value::Nil),
                        w if KEYWORDS.contains(&w) => Tok::Keyword(w.into()),
                        w => Tok::Ident(w.into()),
                    };
                    (tok, n)
                }
                c => return Err(self.syntax(format!("unexpected {c:?} in action"))),
            };
            tokens.push(Token { tok, spaced });
            self.advance(len);
        }
    }

    /// An interpreted string literal: Go escapes `\n \t \" \\ \xHH \uHHHH` and friends.
    fn quoted(&self, body: &str) -> Result<(Tok, usize), TemplateError> {
        let mut out = String::new();
        let mut chars = body.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((Tok::Lit(Value::Str(out)), i + 1)),
                '\n' => break,
                '\\' => {
                    let Some((_, e)) = chars.next() else { break };
                    let simple = match e {
                        'n' => Some('\n'),
                        't' => Some('\t'),
                        'r' => Some('\r'),
                        'a' => Some('\u{7}'),
                        'b' => Some('\u{8}'),
                        'f' => Some('\u{c}'),
                        'v' => Some('\u{b}'),
                        '\\' => Some('\\'),
                        '"' => Some('"'),
                        _ => None,
                    };
                    if let Some(s) = simple {
                        out.push(s);
                        continue;
                    }
                    let (digits, radix) = match e {
                        'x' => (2, 16),
                        'u' => (4, 16),
                        'U' => (8, 16),
                        '0'..='7' => (2, 8),
                        _ => return Err(self.syntax(format!("unknown escape \\{e} in string literal"))),
                    };
                    let mut hex: String = if radix == 8 { e.to_string() } else { String::new() };
                    for _ in 0..digits {
                        match chars.next() {
                            Some((_, d)) => hex.push(d),
                            None => break,
                        }
                    }
                    let code = u32::from_str_radix(&hex, radix)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| self.syntax(format!("bad escape \\{e}{hex} in string literal")))?;
                    out.push(code);
                }
                c => out.push(c),
            }
        }
        Err(self.syntax("unterminated string literal: add the closing quote"))
    }

    /// `'a'`: a rune constant, an integer in Go.
    fn char_constant(&self, body: &str) -> Result<(Tok, usize), TemplateError> {
        let mut it = body.char_indices().skip(1);
        match (it.next(), it.next()) {
            (Some((_, c)), Some((i, '\''))) if c != '\\' => Ok((Tok::Lit(Value::Int(c as i64)), i + 1)),
            _ => Err(self.syntax("unsupported character constant; use a string literal")),
        }
    }

    fn number(&self, body: &str) -> Result<(Tok, usize), TemplateError> {
        let bytes = body.as_bytes();
        let mut n = 0;
        if matches!(bytes[0], b'+' | b'-') {
            n = 1;
        }
        let hex = body[n..].starts_with("0x") || body[n..].starts_with("0X");
        while n < bytes.len() {
            let b = bytes[n];
            let exp_sign = matches!(b, b'+' | b'-') && !hex && n > 0 && matches!(bytes[n - 1], b'e' | b'E');
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || exp_sign {
                n += 1;
            } else {
                break;
            }
        }
        let text: String = body[..n].chars().filter(|c| *c != '_').collect();
        let (neg, unsigned) = match text.strip_prefix('-') {
            Some(u) => (true, u),
            None => (false, text.strip_prefix('+').unwrap_or(&text)),
        };
        let int = if let Some(h) = unsigned.strip_prefix("0x").or_else(|| unsigned.strip_prefix("0X")) {
            i64::from_str_radix(h, 16).ok()
        } else if let Some(o) = unsigned.strip_prefix("0o").or_else(|| unsigned.strip_prefix("0O")) {
            i64::from_str_radix(o, 8).ok()
        } else if let Some(b) = unsigned.strip_prefix("0b").or_else(|| unsigned.strip_prefix("0B")) {
            i64::from_str_radix(b, 2).ok()
        } else if unsigned.len() > 1
            && unsigned.starts_with('0')
            && unsigned.bytes().all(|b| b.is_ascii_digit())
        {
            i64::from_str_radix(&unsigned[1..], 8).ok()
        } else {
            unsigned.parse::<i64>().ok()
        };
        let value = match (int, unsigned.parse::<f64>()) {
            (Some(i), _) => Value::Int(if neg { -i } else { i }),
            (None, Ok(f)) if f.is_finite() => Value::Float(if neg { -f } else { f }),
            _ => return Err(self.syntax(format!("bad number syntax: {:?}", &body[..n]))),
        };
        Ok((Tok::Lit(value), n))
    }

    fn parse_action(&mut self, tokens: Vec<Token>, line: usize) -> Result<Pipeline, TemplateError> {
        let syntax = |message: String| TemplateError::Syntax { line, message };
        if let Some(Token { tok: Tok::Keyword(k), .. }) = tokens.first() {
            return Err(syntax(format!(
                "`{{{{ {k} }}}}` is not supported: Veer renders actions, pipelines and variables but no \
                 control structures (if, range, with, define, template, block)"
            )));
        }
        if tokens.is_empty() {
            return Err(syntax("empty action `{{ }}`: put a value or a function in it".into()));
        }
        let mut stream = Stream { tokens, i: 0, line };
        let pipe = self.pipeline(&mut stream)?;
        match stream.peek() {
            None => Ok(pipe),
            Some(t) => Err(syntax(format!("unexpected {} in action", describe_tok(t)))),
        }
    }

    fn pipeline(&mut self, s: &mut Stream) -> Result<Pipeline, TemplateError> {
        let mut decl = None;
        if let (Some(Tok::Var(v)), Some(op @ (Tok::Declare | Tok::Assign))) = (s.peek(), s.peek_at(1)) {
            let declare = *op == Tok::Declare;
            if v == "$" {
                return Err(s.syntax("`$` cannot be assigned".into()));
            }
            if !declare && !self.declared.contains(v) {
                return Err(s.syntax(format!("undefined variable {v:?}: declare it with `{v} := ...` first")));
            }
            decl = Some((v.clone(), declare));
            s.i += 2;
        }
        let mut cmds = vec![self.command(s)?];
        while s.peek() == Some(&Tok::Pipe) {
            s.i += 1;
            cmds.push(self.command(s)?);
        }
        // The variable is visible after the action that declares it, as in Go.
        if let Some((v, true)) = &decl {
            self.declared.push(v.clone());
        }
        Ok(Pipeline { decl, cmds })
    }

    fn command(&mut self, s: &mut Stream) -> Result<Command, TemplateError> {
        let mut args = Vec::new();
        while let Some(t) = s.peek() {
            if matches!(t, Tok::Pipe | Tok::RParen) {
                break;
            }
            args.push(self.operand(s)?);
        }
        if args.is_empty() {
            return Err(s.syntax("missing value for command".into()));
        }
        Ok(Command { args })
    }

    fn operand(&mut self, s: &mut Stream) -> Result<Operand, TemplateError> {
        let Some(token) = s.next() else { return Err(s.syntax("missing value".into())) };
        let mut fields = Vec::new();
        let term = match token {
            Tok::Ident(name) => {
                if UNSUPPORTED_GO_FUNCTIONS.contains(&name.as_str()) {
                    return Err(s.syntax(format!(
                        "function {name:?} is not supported by Veer's template renderer (no control structures)"
                    )));
                }
                if !CONTEXT_FUNCTIONS.contains(&name.as_str()) && !OTHER_FUNCTIONS.contains(&name.as_str()) {
                    return Err(TemplateError::UnknownFunction { line: s.line, name });
                }
                Term::Func(name)
            }
            Tok::Var(v) => {
                if !self.declared.contains(&v) {
                    return Err(
                        s.syntax(format!("undefined variable {v:?}: declare it with `{v} := ...` first"))
                    );
                }
                Term::Var(v)
            }
            Tok::Dot => Term::Dot,
            Tok::Field(f) => {
                fields.push(f);
                Term::Dot
            }
            Tok::Lit(v) => Term::Lit(v),
            Tok::LParen => {
                let inner = self.pipeline(s)?;
                if s.next() != Some(Tok::RParen) {
                    return Err(s.syntax("unclosed left paren: add `)`".into()));
                }
                Term::Paren(inner)
            }
            other => return Err(s.syntax(format!("unexpected {} in operand", describe_tok(&other)))),
        };
        while let Some(Token { tok: Tok::Field(f), spaced: false }) = s.tokens.get(s.i) {
            fields.push(f.clone());
            s.i += 1;
        }
        Ok(Operand { term, fields })
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn ident_len(s: &str) -> usize {
    s.char_indices().find(|(_, c)| !(*c == '_' || c.is_alphanumeric())).map_or(s.len(), |(i, _)| i)
}

fn describe_tok(t: &Tok) -> String {
    match t {
        Tok::Ident(s) | Tok::Keyword(s) => format!("{s:?}"),
        Tok::Field(f) => format!("field .{f}"),
        Tok::Dot => "`.`".into(),
        Tok::Var(v) => format!("variable {v}"),
        Tok::Lit(v) => format!("{} literal", v.type_name()),
        Tok::Pipe => "`|`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Declare => "`:=`".into(),
        Tok::Assign => "`=`".into(),
        Tok::Comma => "`,`".into(),
    }
}

struct Stream {
    tokens: Vec<Token>,
    i: usize,
    line: usize,
}

impl Stream {
    fn peek(&self) -> Option<&Tok> {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.tokens.get(self.i + n).map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.i).map(|t| t.tok.clone());
        self.i += 1;
        t
    }

    fn syntax(&self, message: String) -> TemplateError {
        TemplateError::Syntax { line: self.line, message }
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

struct Exec<'c> {
    ctx: &'c TemplateContext,
    vars: BTreeMap<String, Value>,
}

impl Exec<'_> {
    fn run(&mut self, nodes: &[Node]) -> Result<String, TemplateError> {
        let mut out = String::new();
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action { line, pipe } => {
                    let value = self.pipeline(pipe, *line)?;
                    if pipe.decl.is_none() {
                        // Go prints a nil value in an action as "<no value>".
                        match value {
                            Value::Nil => out.push_str("<no value>"),
                            v => out.push_str(&gofmt::format_v(&v)),
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn pipeline(&mut self, pipe: &Pipeline, line: usize) -> Result<Value, TemplateError> {
        let mut last: Option<Value> = None;
        for cmd in &pipe.cmds {
            last = Some(self.command(cmd, last, line)?);
        }
        let value = last.unwrap_or(Value::Nil);
        if let Some((v, _)) = &pipe.decl {
            self.vars.insert(v.clone(), value.clone());
        }
        Ok(value)
    }

    fn command(&mut self, cmd: &Command, piped: Option<Value>, line: usize) -> Result<Value, TemplateError> {
        let first = &cmd.args[0];
        if let (Term::Func(name), true) = (&first.term, first.fields.is_empty()) {
            let mut args = Vec::with_capacity(cmd.args.len());
            for a in &cmd.args[1..] {
                args.push(self.operand(a, line)?);
            }
            // A piped value is the last argument, as in Go.
            args.extend(piped);
            return self.call(name, args, line);
        }
        if cmd.args.len() > 1 || piped.is_some() {
            return Err(TemplateError::Exec {
                line,
                message: "can't give an argument to a value that is not a function".into(),
            });
        }
        self.operand(first, line)
    }

    fn operand(&mut self, op: &Operand, line: usize) -> Result<Value, TemplateError> {
        let mut value = match &op.term {
            Term::Func(name) => self.call(name, Vec::new(), line)?,
            Term::Var(v) => self.vars.get(v).cloned().unwrap_or(Value::Nil),
            Term::Dot => Value::Nil,
            Term::Lit(v) => v.clone(),
            Term::Paren(p) => self.pipeline(p, line)?,
        };
        for field in &op.fields {
            value = match value {
                Value::Map(mut m) => match m.remove(field) {
                    Some(v) => Value::Str(v),
                    None => return Err(TemplateError::MissingVariable { line, key: field.clone() }),
                },
                Value::Nil => {
                    return Err(TemplateError::Exec {
                        line,
                        message: format!(
                            "can't evaluate field {field}: a query template has no data fields; use the \
                             functions ({{{{ target }}}}, {{{{ namespace }}}}, ...) or {{{{ variables.{field} }}}}"
                        ),
                    });
                }
                other => {
                    return Err(TemplateError::Exec {
                        line,
                        message: format!("can't evaluate field {field} in type {}", other.type_name()),
                    });
                }
            };
        }
        Ok(value)
    }

    fn call(&mut self, name: &str, args: Vec<Value>, line: usize) -> Result<Value, TemplateError> {
        let exec = |message: String| TemplateError::Exec { line, message };
        let ctx = self.ctx;
        let context_value = match name {
            "name" => Some(Value::Str(ctx.name.clone())),
            "namespace" => Some(Value::Str(ctx.namespace.clone())),
            "target" => Some(Value::Str(ctx.target.clone())),
            "service" => Some(Value::Str(ctx.service.clone())),
            "ingress" => Some(Value::Str(ctx.ingress.clone())),
            "route" => Some(Value::Str(ctx.route.clone())),
            "interval" => Some(Value::Str(ctx.interval.clone())),
            "variables" => Some(Value::Map(ctx.variables.clone())),
            _ => None,
        };
        if let Some(v) = context_value {
            if !args.is_empty() {
                return Err(exec(format!("wrong number of args for {name}: want 0 got {}", args.len())));
            }
            return Ok(v);
        }
        match name {
            "printf" => {
                let mut args = args.into_iter();
                let Some(Value::Str(format)) = args.next() else {
                    return Err(exec("printf needs a format string as its first argument".into()));
                };
                let rest: Vec<Value> = args.collect();
                gofmt::sprintf(&format, &rest).map(Value::Str).map_err(exec)
            }
            "print" => Ok(Value::Str(gofmt::sprint(&args))),
            "println" => Ok(Value::Str(gofmt::sprintln(&args))),
            "len" => match args.as_slice() {
                [Value::Str(s)] => Ok(Value::Int(s.len() as i64)),
                [Value::Map(m)] => Ok(Value::Int(m.len() as i64)),
                [v] => Err(exec(format!("len of {}", v.type_name()))),
                _ => Err(exec(format!("wrong number of args for len: want 1 got {}", args.len()))),
            },
            "index" => {
                let mut args = args.into_iter();
                let mut item = args.next().ok_or_else(|| exec("index needs a map to index".into()))?;
                for key in args {
                    item = match (item, key) {
                        // Stricter than Go (which yields ""): a missing variable is always an error.
                        (Value::Map(mut m), Value::Str(k)) => match m.remove(&k) {
                            Some(v) => Value::Str(v),
                            None => return Err(TemplateError::MissingVariable { line, key: k }),
                        },
                        (item, key) => {
                            return Err(exec(format!(
                                "can't index {} with {}",
                                item.type_name(),
                                key.type_name()
                            )));
                        }
                    };
                }
                Ok(item)
            }
            _ => Err(TemplateError::UnknownFunction { line, name: name.into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> TemplateContext {
        TemplateContext {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo-svc".into(),
            ingress: "podinfo-ing".into(),
            route: "podinfo-route".into(),
            interval: "30s".into(),
            variables: BTreeMap::from([
                ("direction".into(), "inbound".into()),
                ("my-key".into(), "dashed".into()),
            ]),
        }
    }

    fn ok(src: &str) -> String {
        render(src, &ctx()).unwrap_or_else(|e| panic!("{src:?}: {e}"))
    }

    fn err(src: &str) -> TemplateError {
        render(src, &ctx()).expect_err(src)
    }

    #[test]
    fn context_functions() {
        assert_eq!(
            ok(
                "{{ name }}/{{namespace}}/{{ target }}/{{ service }}/{{ ingress }}/{{ route }}/{{ interval }}"
            ),
            "podinfo/test/podinfo/podinfo-svc/podinfo-ing/podinfo-route/30s"
        );
        assert_eq!(ok(r#"direction="{{ variables.direction }}""#), r#"direction="inbound""#);
        assert_eq!(ok(r#"{{ index variables "my-key" }}"#), "dashed");
    }

    #[test]
    fn trim_markers() {
        assert_eq!(ok("a  \n {{- target }} \n b"), "apodinfo \n b");
        assert_eq!(ok("a  {{ target -}} \n\t b"), "a  podinfob");
        assert_eq!(ok("a \n{{- /* why */ -}}\n b"), "ab");
        assert_eq!(ok("x{{/* a comment {{ with }} braces */}}y"), "xy");
        // `{{-3}}` is the number -3, not a trim marker.
        assert_eq!(ok("a {{-3}}"), "a -3");
    }

    #[test]
    fn printf_and_pipelines() {
        assert_eq!(
            ok(
                r#"{{ printf "kube(ew)?_%s__%s_canary__.*__%s_canary(_[0-9]+)?" namespace ingress service }}"#
            ),
            "kube(ew)?_test__podinfo-ing_canary__.*__podinfo-svc_canary(_[0-9]+)?"
        );
        assert_eq!(ok(r#"{{ target | printf "%s-canary" }}"#), "podinfo-canary");
        assert_eq!(ok(r#"{{ "x" | printf "%s-%s" target }}"#), "podinfo-x");
        assert_eq!(
            ok(r#"{{ printf "%q %d %v" target 42 (printf "%s!" interval) }}"#),
            r#""podinfo" 42 30s!"#
        );
        assert_eq!(ok(r#"{{ print target "-" 3 }}"#), "podinfo-3");
        assert_eq!(ok(r#"{{ len variables }}"#), "2");
    }

    #[test]
    fn variables_declared_and_reassigned() {
        assert_eq!(
            ok(r#"{{ $re := printf "%s-%s" namespace target }}a={{ $re }} {{ $re = "z" }}b={{ $re }}"#),
            "a=test-podinfo b=z"
        );
        assert_eq!(ok(r#"{{ $v := variables }}{{ $v.direction }}"#), "inbound");
    }

    #[test]
    fn literals() {
        assert_eq!(
            ok(r#"{{ "a\tb\x41\u00e9" }}|{{ `raw\n` }}|{{ 0.99 }}|{{ 1e6 }}|{{ true }}|{{ 0x1F }}"#),
            "a\tbAé|raw\\n|0.99|1e+06|true|31"
        );
    }

    #[test]
    fn a_missing_variable_names_the_key() {
        let e = err("up\n{{ variables.reporter }}");
        assert_eq!(e, TemplateError::MissingVariable { line: 2, key: "reporter".into() });
        assert_eq!(
            e.to_string(),
            "query template line 2: variables.reporter is not set; add `reporter` to the metric's templateVariables"
        );
        assert_eq!(
            err(r#"{{ index variables "nope" }}"#),
            TemplateError::MissingVariable { line: 1, key: "nope".into() }
        );
    }

    #[test]
    fn an_unknown_function_names_it() {
        let e = err("a\n\n{{ workload }}");
        assert_eq!(e, TemplateError::UnknownFunction { line: 3, name: "workload".into() });
        assert!(e.to_string().contains("function \"workload\" not defined"), "{e}");
        // Detected without rendering too.
        assert!(check("{{ workload }}").is_err());
        assert!(check("{{ target }}").is_ok());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases = [
            ("{{ if target }}x{{ end }}", "`{{ if }}` is not supported"),
            ("{{ target", "unclosed action"),
            ("{{ \"abc }}", "unterminated string"),
            ("{{ }}", "empty action"),
            ("{{ $x }}", "undefined variable \"$x\""),
            ("{{ $x = 1 }}", "undefined variable \"$x\""),
            ("{{ target 1 }}", "wrong number of args for target: want 0 got 1"),
            ("{{ target.foo }}", "can't evaluate field foo in type string"),
            ("{{ .Target }}", "a query template has no data fields"),
            ("{{ \"x\" 1 }}", "can't give an argument"),
            ("{{ printf \"%s\" }}", "more directives than the 0 argument"),
            ("{{ eq 1 1 }}", "function \"eq\" is not supported"),
            ("{{/* open", "unclosed comment"),
            ("{{ (target }}", "unclosed left paren"),
        ];
        for (src, want) in cases {
            let e = err(src).to_string();
            assert!(e.contains(want), "{src:?}: got {e:?}, want it to contain {want:?}");
        }
    }

    #[test]
    fn context_from_canary() {
        let canary: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-app"},
                "service": {"port": 80},
                "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web-ing"},
                "analysis": {}
            }
        }))
        .unwrap();
        let metric = CanaryMetric {
            name: "latency".into(),
            template_variables: Some(BTreeMap::from([("k".into(), "v".into())])),
            ..Default::default()
        };
        let c = TemplateContext::new(&canary, &metric);
        assert_eq!(
            (c.name.as_str(), c.namespace.as_str(), c.target.as_str(), c.service.as_str()),
            ("web", "prod", "web-app", "web-app")
        );
        assert_eq!((c.ingress.as_str(), c.route.as_str(), c.interval.as_str()), ("web-ing", "web-app", "1m"));
        assert_eq!(c.variables["k"], "v");
        let with_interval = CanaryMetric { interval: Some("2m".into()), ..metric };
        assert_eq!(TemplateContext::new(&canary, &with_interval).interval, "2m");
    }
}
