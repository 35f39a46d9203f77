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
//!
//! Rendering is bounded whatever the template: parentheses nest at most [`MAX_NESTING_DEPTH`]
//! deep, the query is at most [`MAX_QUERY_BYTES`] long, rendering builds at most
//! [`MAX_RENDER_BYTES`] of text in all, and `printf` widths and precisions are at most
//! [`gofmt::MAX_WIDTH_PRECISION`]. Each limit is a [`TemplateError`] naming it, never a panic.

use std::collections::{BTreeMap, BTreeSet};

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

/// How deeply parentheses may nest in an action: 100. Real queries nest two or three levels. The
/// parser and the renderer recurse once per level; 100 levels take a small part of a 2 MiB
/// thread stack (Tokio's worker threads), where 5,000 overflowed it and aborted the process.
/// Go's own parser stops at 10,000, which its growable stacks can afford.
pub const MAX_NESTING_DEPTH: usize = 100;

/// The longest query a template may render to: 256 KiB. Real PromQL queries are a few hundred
/// bytes (none of Flagger's documented MetricTemplates reaches 2 KiB). The query travels
/// URL-encoded in a GET request, which can triple its length, and Prometheus (Go's HTTP server)
/// refuses request headers over 1 MiB: 256 KiB is the longest query that surely arrives.
pub const MAX_QUERY_BYTES: usize = 256 * 1024;

/// The most text rendering may build or copy in all (function results, variable reads, context
/// values): 1 MiB, four times [`MAX_QUERY_BYTES`]. Intermediate values need not reach the query,
/// so without a total `$b := print $a $a` chains could double a value at every step and exhaust
/// memory while the query itself stays short.
pub const MAX_RENDER_BYTES: usize = 1024 * 1024;

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
    #[error(
        "query template line {line}: parentheses are nested more than {limit} deep, the limit; \
         use a variable (`$x := ...`) for the inner part"
    )]
    TooDeep { line: usize, limit: usize },
    #[error(
        "query template line {line}: the rendered query is longer than {limit} bytes, the limit for a query"
    )]
    QueryTooLong { line: usize, limit: usize },
    #[error(
        "query template line {line}: rendering builds more than {limit} bytes of text (function results, \
         variables and context values together), the limit for one query"
    )]
    TooMuchText { line: usize, limit: usize },
}

/// Renders `source` against `ctx`.
pub fn render(source: &str, ctx: &TemplateContext) -> Result<String, TemplateError> {
    let nodes = Parser::new(source).parse()?;
    Exec { ctx, vars: BTreeMap::new(), built: 0 }.run(&nodes)
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
    Text { line: usize, text: String },
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
    declared: BTreeSet<String>,
    /// Parentheses open around the operand being parsed.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser { src, pos: 0, line: 1, declared: BTreeSet::from(["$".to_string()]), depth: 0 }
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
                nodes.push(Node::Text { line: self.line, text: text.to_string() });
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
            self.declared.insert(v.clone());
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
                if self.depth >= MAX_NESTING_DEPTH {
                    return Err(TemplateError::TooDeep { line: s.line, limit: MAX_NESTING_DEPTH });
                }
                self.depth += 1;
                let inner = self.pipeline(s);
                self.depth -= 1;
                let inner = inner?;
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
    /// Bytes built or copied so far, against [`MAX_RENDER_BYTES`].
    built: usize,
}

/// The bytes a value holds.
fn size(value: &Value) -> usize {
    match value {
        Value::Str(s) => s.len(),
        Value::Map(m) => map_size(m),
        Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Nil => 0,
    }
}

/// The bytes of a map's keys and values.
fn map_size(map: &BTreeMap<String, String>) -> usize {
    map.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Appends `text` to the query unless that makes it longer than [`MAX_QUERY_BYTES`].
fn emit(out: &mut String, text: &str, line: usize) -> Result<(), TemplateError> {
    if out.len().saturating_add(text.len()) > MAX_QUERY_BYTES {
        return Err(TemplateError::QueryTooLong { line, limit: MAX_QUERY_BYTES });
    }
    out.push_str(text);
    Ok(())
}

impl Exec<'_> {
    fn run(&mut self, nodes: &[Node]) -> Result<String, TemplateError> {
        let mut out = String::new();
        for node in nodes {
            match node {
                Node::Text { line, text } => emit(&mut out, text, *line)?,
                Node::Action { line, pipe } => {
                    let value = self.pipeline(pipe, *line)?;
                    if pipe.decl.is_none() {
                        // Go prints a nil value in an action as "<no value>".
                        match value {
                            Value::Nil => emit(&mut out, "<no value>", *line)?,
                            Value::Str(s) => emit(&mut out, &s, *line)?,
                            v => emit(&mut out, &gofmt::format_v(&v), *line)?,
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Counts `bytes` about to be built or copied against [`MAX_RENDER_BYTES`].
    fn charge(&mut self, bytes: usize, line: usize) -> Result<(), TemplateError> {
        self.built = self.built.saturating_add(bytes);
        if self.built > MAX_RENDER_BYTES {
            return Err(TemplateError::TooMuchText { line, limit: MAX_RENDER_BYTES });
        }
        Ok(())
    }

    /// What a function may still build: the rest of [`MAX_RENDER_BYTES`].
    fn room(&self) -> usize {
        MAX_RENDER_BYTES.saturating_sub(self.built)
    }

    /// A function's text, counted against [`MAX_RENDER_BYTES`].
    fn built_text(
        &mut self,
        text: Result<String, gofmt::FmtError>,
        line: usize,
    ) -> Result<Value, TemplateError> {
        match text {
            Ok(text) => {
                self.charge(text.len(), line)?;
                Ok(Value::Str(text))
            }
            Err(gofmt::FmtError::Invalid(message)) => Err(TemplateError::Exec { line, message }),
            Err(gofmt::FmtError::TooLong) => {
                Err(TemplateError::TooMuchText { line, limit: MAX_RENDER_BYTES })
            }
        }
    }

    fn pipeline(&mut self, pipe: &Pipeline, line: usize) -> Result<Value, TemplateError> {
        let mut last: Option<Value> = None;
        for cmd in &pipe.cmds {
            last = Some(self.command(cmd, last, line)?);
        }
        let value = last.unwrap_or(Value::Nil);
        if let Some((v, _)) = &pipe.decl {
            self.charge(size(&value), line)?;
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
            Term::Var(v) => {
                let bytes = self.vars.get(v).map_or(0, size);
                self.charge(bytes, line)?;
                self.vars.get(v).cloned().unwrap_or(Value::Nil)
            }
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
        let context_str = match name {
            "name" => Some(&ctx.name),
            "namespace" => Some(&ctx.namespace),
            "target" => Some(&ctx.target),
            "service" => Some(&ctx.service),
            "ingress" => Some(&ctx.ingress),
            "route" => Some(&ctx.route),
            "interval" => Some(&ctx.interval),
            _ => None,
        };
        if context_str.is_some() || name == "variables" {
            if !args.is_empty() {
                return Err(exec(format!("wrong number of args for {name}: want 0 got {}", args.len())));
            }
            // Counted before the copy is made.
            return Ok(match context_str {
                Some(s) => {
                    self.charge(s.len(), line)?;
                    Value::Str(s.clone())
                }
                None => {
                    self.charge(map_size(&ctx.variables), line)?;
                    Value::Map(ctx.variables.clone())
                }
            });
        }
        match name {
            "printf" => {
                let mut args = args.into_iter();
                let Some(Value::Str(format)) = args.next() else {
                    return Err(exec("printf needs a format string as its first argument".into()));
                };
                let rest: Vec<Value> = args.collect();
                let text = gofmt::sprintf(&format, &rest, self.room());
                self.built_text(text, line)
            }
            "print" => {
                let text = gofmt::sprint(&args, self.room());
                self.built_text(text, line)
            }
            "println" => {
                let text = gofmt::sprintln(&args, self.room());
                self.built_text(text, line)
            }
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

    /// Runs `f` on a thread with a 2 MiB stack, the size of Tokio's worker threads, so that a
    /// stack overflow shows (it aborts the test binary).
    pub(super) fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        match std::thread::Builder::new().stack_size(2 << 20).spawn(f).map(|t| t.join()) {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(e) => panic!("cannot start a thread: {e}"),
        }
    }

    /// `{{ ((...(target)...)) }}` with `depth` parentheses.
    fn nested(depth: usize) -> String {
        format!("{{{{ {}target{} }}}}", "(".repeat(depth), ")".repeat(depth))
    }

    #[test]
    fn parentheses_nest_at_most_100_deep() {
        on_worker_stack(|| {
            assert_eq!(ok(&nested(MAX_NESTING_DEPTH)), "podinfo");
            let deep_calls = format!("{{{{ {}\"x\"{} }}}}", "print (".repeat(100), ")".repeat(100));
            assert_eq!(ok(&deep_calls), "x");
            let e = err(&format!("a\n{}", nested(MAX_NESTING_DEPTH + 1)));
            assert_eq!(e, TemplateError::TooDeep { line: 2, limit: MAX_NESTING_DEPTH });
            assert!(e.to_string().contains("parentheses are nested more than 100 deep, the limit"), "{e}");
            // Far past the depth that used to overflow a 2 MiB stack: an error, unclosed or not.
            assert!(matches!(check(&nested(100_000)), Err(TemplateError::TooDeep { .. })));
            assert!(matches!(
                check(&format!("{{{{ {} }}}}", "(".repeat(100_000))),
                Err(TemplateError::TooDeep { .. })
            ));
        });
    }

    #[test]
    fn the_query_is_at_most_256_kib() {
        let at_limit = "x".repeat(MAX_QUERY_BYTES);
        assert_eq!(ok(&at_limit).len(), MAX_QUERY_BYTES);
        let e = err(&format!("{}\n{{{{ target }}}}", &at_limit[1..]));
        assert_eq!(e, TemplateError::QueryTooLong { line: 2, limit: MAX_QUERY_BYTES });
        assert!(e.to_string().contains("the rendered query is longer than 262144 bytes, the limit"), "{e}");
        assert_eq!(
            err("a\n\n{{ printf \"%300000s\" \"x\" }}"),
            TemplateError::QueryTooLong { line: 3, limit: MAX_QUERY_BYTES }
        );
        assert_eq!(
            err(&"x".repeat(10 * MAX_QUERY_BYTES)),
            TemplateError::QueryTooLong { line: 1, limit: MAX_QUERY_BYTES }
        );
    }

    #[test]
    fn rendering_builds_at_most_1_mib_of_text() {
        // Each variable doubles the last: the query stays empty, the values would reach 1 GiB.
        let mut doubling = String::from("{{ $v0 := printf \"%1000s\" \"x\" }}");
        for i in 1..=20 {
            doubling.push_str(&format!("\n{{{{ $v{i} := print $v{p} $v{p} }}}}", p = i - 1));
        }
        let e = err(&doubling);
        assert!(matches!(e, TemplateError::TooMuchText { limit: MAX_RENDER_BYTES, .. }), "{e:?}");
        assert!(e.to_string().contains("rendering builds more than 1048576 bytes of text"), "{e}");
        // Reading one variable many times counts every copy.
        let reads =
            format!("{{{{ $a := printf \"%100000s\" \"\" }}}}{{{{ len (print {}) }}}}", "$a ".repeat(20));
        assert!(matches!(err(&reads), TemplateError::TooMuchText { .. }));
        // So do the context values.
        let mut big = ctx();
        big.variables.insert("blob".into(), "b".repeat(100_000));
        let src = format!("{{{{ len (print {}) }}}}", "variables ".repeat(20));
        assert!(matches!(render(&src, &big), Err(TemplateError::TooMuchText { .. })));
        // Ordinary templates are far from it.
        assert_eq!(ok(&format!("{{{{ len (print {}) }}}}", "target ".repeat(1000))), "7000");
    }

    #[test]
    fn printf_widths_and_precisions_above_a_million_are_template_errors() {
        for (src, want) in [
            (r#"{{ printf "%20000000000s" "x" }}"#, "width 20000000000 is larger than 1000000, the limit"),
            (r#"{{ printf "%.99999999999e" 1.5 }}"#, "precision 99999999999 is larger than 1000000"),
        ] {
            let e = err(src);
            assert!(matches!(e, TemplateError::Exec { line: 1, .. }), "{src}: {e:?}");
            assert!(e.to_string().contains(want), "{src}: {e}");
        }
        // 100,000,000 was a 100 MB query; now it is refused by the width limit.
        assert!(matches!(err(r#"{{ printf "%100000000s" "x" }}"#), TemplateError::Exec { .. }));
        // Within the width limit but longer than a query: the query limit names it.
        assert!(matches!(err(r#"{{ printf "%1000000s" "x" }}"#), TemplateError::QueryTooLong { .. }));
        // Precisions past Rust's 65,535 print as Go prints them.
        assert_eq!(render(r#"{{ printf "%.70000f" 1.5 }}"#, &ctx()).map(|q| q.len()), Ok(70_002));
        assert_eq!(ok(r#"{{ len (printf "%.70000f" 1.5) }}"#), "70002");
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

#[cfg(test)]
#[path = "template_proptests.rs"]
mod proptests;
