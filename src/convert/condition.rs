//! Argo Rollouts' `successCondition` / `failureCondition` (expr-lang expressions over the
//! measurement `result`) as Flagger's `thresholdRange`, for the shapes a range can express:
//! comparisons of `result[0]` (or `result`) with numbers, joined by `&&`, and a "no data" escape
//! (`len(result) == 0 || ...`, `isNaN(result[0]) || ...`). Everything else is an error that says
//! why, never a guess.

use std::fmt;

use thiserror::Error;

/// A comparison operator, written with `result` on the left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Op {
    /// The operator with its operands swapped (`1 < result` is `result > 1`).
    fn flipped(self) -> Op {
        match self {
            Op::Ge => Op::Le,
            Op::Gt => Op::Lt,
            Op::Le => Op::Ge,
            Op::Lt => Op::Gt,
            Op::Eq => Op::Eq,
            Op::Ne => Op::Ne,
        }
    }

    /// The operator of the negated comparison.
    fn negated(self) -> Op {
        match self {
            Op::Ge => Op::Lt,
            Op::Gt => Op::Le,
            Op::Le => Op::Gt,
            Op::Lt => Op::Ge,
            Op::Eq => Op::Ne,
            Op::Ne => Op::Eq,
        }
    }

    #[cfg(test)]
    fn holds(self, x: f64, v: f64) -> bool {
        match self {
            Op::Ge => x >= v,
            Op::Gt => x > v,
            Op::Le => x <= v,
            Op::Lt => x < v,
            Op::Eq => x == v,
            Op::Ne => x != v,
        }
    }
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `result <op> value`.
    Cmp(Op, f64),
    /// `len(result) == 0`, `isNaN(result[0])`: there is no value.
    NoData,
    /// `len(result) > 0`, `!isNaN(result[0])`: there is a value.
    HasData,
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    /// The condition's truth for a measurement (`None`: no data), as Argo evaluates it; a
    /// comparison without data is false.
    #[cfg(test)]
    pub fn eval(&self, x: Option<f64>) -> bool {
        match self {
            Expr::Cmp(op, v) => x.is_some_and(|x| op.holds(x, *v)),
            Expr::NoData => x.is_none(),
            Expr::HasData => x.is_some(),
            Expr::And(es) => es.iter().all(|e| e.eval(x)),
            Expr::Or(es) => es.iter().any(|e| e.eval(x)),
        }
    }

    /// Whether the condition tests for data itself (`len(result)`, `isNaN`), rather than leaving a
    /// measurement without data to Argo's error handling.
    pub fn mentions_data(&self) -> bool {
        match self {
            Expr::Cmp(..) => false,
            Expr::NoData | Expr::HasData => true,
            Expr::And(es) | Expr::Or(es) => es.iter().any(Expr::mentions_data),
        }
    }
}

/// One end of an accepted range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    pub value: f64,
    /// The end itself is not accepted (`>`, `<`); Flagger's bounds always are.
    pub strict: bool,
}

/// The values a condition accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Range {
    pub min: Option<Bound>,
    pub max: Option<Bound>,
    /// A measurement without data passes (Flagger counts it as a failed check).
    pub no_data_passes: bool,
}

impl Range {
    /// Whether a measurement passes.
    #[cfg(test)]
    pub fn contains(&self, x: Option<f64>) -> bool {
        let Some(x) = x else { return self.no_data_passes };
        let above = self.min.is_none_or(|b| if b.strict { x > b.value } else { x >= b.value });
        let below = self.max.is_none_or(|b| if b.strict { x < b.value } else { x <= b.value });
        above && below
    }

    fn with(mut self, op: Op, v: f64) -> Result<Range, ConditionError> {
        let tighter_min = |cur: Option<Bound>, new: Bound| match cur {
            Some(c) if c.value > new.value || (c.value == new.value && c.strict) => c,
            _ => new,
        };
        let tighter_max = |cur: Option<Bound>, new: Bound| match cur {
            Some(c) if c.value < new.value || (c.value == new.value && c.strict) => c,
            _ => new,
        };
        match op {
            Op::Ge | Op::Gt => {
                self.min = Some(tighter_min(self.min, Bound { value: v, strict: op == Op::Gt }))
            }
            Op::Le | Op::Lt => {
                self.max = Some(tighter_max(self.max, Bound { value: v, strict: op == Op::Lt }))
            }
            Op::Eq => {
                self.min = Some(tighter_min(self.min, Bound { value: v, strict: false }));
                self.max = Some(tighter_max(self.max, Bound { value: v, strict: false }));
            }
            Op::Ne => return Err(ConditionError::NotEqual),
        }
        match (self.min, self.max) {
            (Some(lo), Some(hi))
                if lo.value > hi.value || (lo.value == hi.value && (lo.strict || hi.strict)) =>
            {
                Err(ConditionError::Empty)
            }
            _ => Ok(self),
        }
    }
}

/// Why a condition has no `thresholdRange`.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum ConditionError {
    #[error("it is not an expression Veer can read: {0}")]
    Syntax(String),
    #[error("it does not compare the measurement (`result[0]` or `result`) with a number")]
    NotAboutResult,
    #[error(
        "it reads `result[{0}]`; a thresholdRange judges one value (Flagger takes the query's last series)"
    )]
    Index(u64),
    #[error(
        "it accepts values on either side of a gap (`||` between comparisons); a thresholdRange is one interval"
    )]
    EitherOr,
    #[error("it accepts every value but one (`!=`); a thresholdRange is one interval")]
    NotEqual,
    #[error("no value satisfies it")]
    Empty,
}

/// Parses a condition (after Argo's `{{args.x}}` were substituted).
pub fn parse(source: &str) -> Result<Expr, ConditionError> {
    let tokens = tokenize(source)?;
    let mut p = Parser { tokens, pos: 0 };
    let e = p.or()?;
    match p.peek() {
        None => Ok(e),
        Some(t) => Err(ConditionError::Syntax(format!("unexpected {t} after a complete expression"))),
    }
}

/// The range a `successCondition` accepts.
pub fn success_range(e: &Expr) -> Result<Range, ConditionError> {
    match e {
        Expr::Cmp(op, v) => Range::default().with(*op, *v),
        // Any value passes, no data does not.
        Expr::HasData => Ok(Range::default()),
        Expr::NoData => Err(ConditionError::NotAboutResult),
        Expr::And(es) => {
            let mut r = Range { no_data_passes: true, ..Range::default() };
            for child in es {
                let c = success_range(child)?;
                let no_data = r.no_data_passes && c.no_data_passes;
                r = Range { no_data_passes: no_data, ..intersect(r, c)? };
            }
            Ok(r)
        }
        Expr::Or(es) => {
            let no_data = es.contains(&Expr::NoData);
            let rest: Vec<&Expr> = es.iter().filter(|e| **e != Expr::NoData).collect();
            match rest.as_slice() {
                [] => Err(ConditionError::NotAboutResult),
                [one] => {
                    let r = success_range(one)?;
                    Ok(Range { no_data_passes: r.no_data_passes || no_data, ..r })
                }
                _ => Err(ConditionError::EitherOr),
            }
        }
    }
}

/// The range of values a `failureCondition` does not fail: its negation.
pub fn failure_complement(e: &Expr) -> Result<Range, ConditionError> {
    success_range(&negate(e))
}

fn intersect(a: Range, b: Range) -> Result<Range, ConditionError> {
    let mut r = a;
    if let Some(m) = b.min {
        r = r.with(if m.strict { Op::Gt } else { Op::Ge }, m.value)?;
    }
    if let Some(m) = b.max {
        r = r.with(if m.strict { Op::Lt } else { Op::Le }, m.value)?;
    }
    Ok(r)
}

/// The negation, pushed down to the comparisons (De Morgan). A comparison without data is false
/// in Argo, so `!(result > 5)` is "no data, or at most 5".
fn negate(e: &Expr) -> Expr {
    match e {
        Expr::Cmp(op, v) => Expr::Or(vec![Expr::NoData, Expr::Cmp(op.negated(), *v)]),
        Expr::NoData => Expr::HasData,
        Expr::HasData => Expr::NoData,
        Expr::And(es) => flatten_or(es.iter().map(negate).collect()),
        Expr::Or(es) => Expr::And(es.iter().map(negate).collect()),
    }
}

fn flatten_or(es: Vec<Expr>) -> Expr {
    let mut out = Vec::new();
    for e in es {
        match e {
            Expr::Or(inner) => out.extend(inner),
            other => out.push(other),
        }
    }
    out.dedup();
    let mut seen_no_data = false;
    out.retain(|e| {
        if *e == Expr::NoData {
            let keep = !seen_no_data;
            seen_no_data = true;
            keep
        } else {
            true
        }
    });
    Expr::Or(out)
}

// ------------------------------------------------------------------------------------ lexing

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Num(f64),
    Ident(String),
    Op(Op),
    And,
    Or,
    Not,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Minus,
    Other(char),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Num(n) => write!(f, "the number {n}"),
            Token::Ident(s) => write!(f, "`{s}`"),
            Token::Op(op) => write!(f, "the operator {op:?}"),
            Token::And => f.write_str("`&&`"),
            Token::Or => f.write_str("`||`"),
            Token::Not => f.write_str("`!`"),
            Token::LParen => f.write_str("`(`"),
            Token::RParen => f.write_str("`)`"),
            Token::LBracket => f.write_str("`[`"),
            Token::RBracket => f.write_str("`]`"),
            Token::Minus => f.write_str("`-`"),
            Token::Other(c) => write!(f, "`{c}`"),
        }
    }
}

/// Conditions longer than this are not read (a real one is a few dozen characters).
const MAX_LENGTH: usize = 4096;

fn tokenize(s: &str) -> Result<Vec<Token>, ConditionError> {
    if s.len() > MAX_LENGTH {
        return Err(ConditionError::Syntax(format!("longer than {MAX_LENGTH} characters")));
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let two = |t: Token, out: &mut Vec<Token>, i: &mut usize| {
            out.push(t);
            *i += 2;
        };
        match (c, next) {
            (c, _) if c.is_whitespace() => i += 1,
            ('>', Some('=')) => two(Token::Op(Op::Ge), &mut out, &mut i),
            ('<', Some('=')) => two(Token::Op(Op::Le), &mut out, &mut i),
            ('=', Some('=')) => two(Token::Op(Op::Eq), &mut out, &mut i),
            ('!', Some('=')) => two(Token::Op(Op::Ne), &mut out, &mut i),
            ('&', Some('&')) => two(Token::And, &mut out, &mut i),
            ('|', Some('|')) => two(Token::Or, &mut out, &mut i),
            ('>', _) | ('<', _) | ('!', _) | ('(', _) | (')', _) | ('[', _) | (']', _) | ('-', _) => {
                out.push(match c {
                    '>' => Token::Op(Op::Gt),
                    '<' => Token::Op(Op::Lt),
                    '!' => Token::Not,
                    '(' => Token::LParen,
                    ')' => Token::RParen,
                    '[' => Token::LBracket,
                    ']' => Token::RBracket,
                    _ => Token::Minus,
                });
                i += 1;
            }
            (c, next) if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || chars[i] == '.'
                        || chars[i] == '_'
                        || ((chars[i] == 'e' || chars[i] == 'E') && i > start)
                        || ((chars[i] == '+' || chars[i] == '-') && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
                let n: f64 =
                    text.parse().map_err(|_| ConditionError::Syntax(format!("{text:?} is not a number")))?;
                if !n.is_finite() {
                    return Err(ConditionError::Syntax(format!("{text:?} is not a finite number")));
                }
                out.push(Token::Num(n));
            }
            (c, _) if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "and" => Token::And,
                    "or" => Token::Or,
                    "not" => Token::Not,
                    _ => Token::Ident(word),
                });
            }
            (c, _) => {
                out.push(Token::Other(c));
                i += 1;
            }
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------ parsing

/// How deeply parentheses may nest: far more than any condition, and bounded so that no input
/// exhausts the stack.
const MAX_DEPTH: usize = 32;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

/// What stands on one side of a comparison.
enum Operand {
    Result,
    Len,
    Num(f64),
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Token) -> Result<(), ConditionError> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            Some(t) => Err(ConditionError::Syntax(format!("expected {want}, found {t}"))),
            None => Err(ConditionError::Syntax(format!("expected {want} at the end"))),
        }
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        self.or_at(0)
    }

    fn or_at(&mut self, depth: usize) -> Result<Expr, ConditionError> {
        let mut parts = vec![self.and_at(depth)?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            parts.push(self.and_at(depth)?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { flatten_or(parts) })
    }

    fn and_at(&mut self, depth: usize) -> Result<Expr, ConditionError> {
        let mut parts = vec![self.atom(depth)?];
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            parts.push(self.atom(depth)?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::And(parts) })
    }

    fn atom(&mut self, depth: usize) -> Result<Expr, ConditionError> {
        if depth > MAX_DEPTH {
            return Err(ConditionError::Syntax(format!("parentheses nested more than {MAX_DEPTH} deep")));
        }
        match self.peek() {
            Some(Token::LParen) => {
                self.pos += 1;
                let e = self.or_at(depth + 1)?;
                self.expect(Token::RParen)?;
                Ok(e)
            }
            Some(Token::Not) => {
                self.pos += 1;
                Ok(negate(&self.atom(depth + 1)?))
            }
            Some(Token::Ident(name)) if name == "isNaN" => {
                self.pos += 1;
                self.expect(Token::LParen)?;
                self.result_ref()?;
                self.expect(Token::RParen)?;
                Ok(Expr::NoData)
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Expr, ConditionError> {
        let lhs = self.operand()?;
        let op = match self.next() {
            Some(Token::Op(op)) => op,
            Some(t) => return Err(ConditionError::Syntax(format!("expected a comparison, found {t}"))),
            None => return Err(ConditionError::Syntax("expected a comparison at the end".into())),
        };
        let rhs = self.operand()?;
        let (op, operand, value) = match (lhs, rhs) {
            (Operand::Result, Operand::Num(v)) => (op, Operand::Result, v),
            (Operand::Len, Operand::Num(v)) => (op, Operand::Len, v),
            (Operand::Num(v), Operand::Result) => (op.flipped(), Operand::Result, v),
            (Operand::Num(v), Operand::Len) => (op.flipped(), Operand::Len, v),
            _ => return Err(ConditionError::NotAboutResult),
        };
        match operand {
            Operand::Result => Ok(Expr::Cmp(op, value)),
            // len(result) compared with a number: only "empty" and "not empty" mean something
            // for a measurement of one value.
            _ => match (op, value) {
                (Op::Eq | Op::Le, 0.0) | (Op::Lt, 1.0) => Ok(Expr::NoData),
                (Op::Gt | Op::Ne, 0.0) | (Op::Ge, 1.0) => Ok(Expr::HasData),
                _ => Err(ConditionError::NotAboutResult),
            },
        }
    }

    fn operand(&mut self) -> Result<Operand, ConditionError> {
        match self.next() {
            Some(Token::Num(n)) => Ok(Operand::Num(n)),
            Some(Token::Minus) => match self.next() {
                Some(Token::Num(n)) => Ok(Operand::Num(-n)),
                _ => Err(ConditionError::Syntax("expected a number after `-`".into())),
            },
            Some(Token::Ident(name)) if name == "result" => {
                self.pos -= 1;
                self.result_ref()?;
                Ok(Operand::Result)
            }
            Some(Token::Ident(name)) if name == "len" => {
                self.expect(Token::LParen)?;
                self.expect(Token::Ident("result".into()))?;
                self.expect(Token::RParen)?;
                Ok(Operand::Len)
            }
            Some(Token::Ident(_)) | Some(Token::Other(_)) => Err(ConditionError::NotAboutResult),
            Some(t) => Err(ConditionError::Syntax(format!("expected a value, found {t}"))),
            None => Err(ConditionError::Syntax("expected a value at the end".into())),
        }
    }

    /// `result` or `result[0]`.
    fn result_ref(&mut self) -> Result<(), ConditionError> {
        self.expect(Token::Ident("result".into()))?;
        if self.peek() == Some(&Token::Other('.')) {
            // A field of a structured result (`result.major`): web metrics, not a number.
            return Err(ConditionError::NotAboutResult);
        }
        if self.peek() == Some(&Token::LBracket) {
            self.pos += 1;
            match self.next() {
                Some(Token::Num(0.0)) => {}
                Some(Token::Num(n)) if n.fract() == 0.0 && n > 0.0 => {
                    return Err(ConditionError::Index(n as u64));
                }
                _ => return Err(ConditionError::NotAboutResult),
            }
            self.expect(Token::RBracket)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn range(min: Option<(f64, bool)>, max: Option<(f64, bool)>, no_data: bool) -> Range {
        let b = |(value, strict)| Bound { value, strict };
        Range { min: min.map(b), max: max.map(b), no_data_passes: no_data }
    }

    #[test]
    fn success_conditions_of_argo_documentation_and_examples() {
        for (cond, want) in [
            ("result[0] >= 0.95", range(Some((0.95, false)), None, false)),
            ("result[0] <= 0.95", range(None, Some((0.95, false)), false)),
            ("result[0] > 0.9", range(Some((0.9, true)), None, false)),
            ("result < 1000", range(None, Some((1000.0, true)), false)),
            ("0.95 <= result[0]", range(Some((0.95, false)), None, false)),
            ("len(result) == 0 || result[0] >= 0.95", range(Some((0.95, false)), None, true)),
            ("isNaN(result[0]) || result[0] >= 0.95", range(Some((0.95, false)), None, true)),
            ("result[0] >= 0.9 && result[0] <= 1", range(Some((0.9, false)), Some((1.0, false)), false)),
            ("result[0] >= 0.9 and result[0] <= 1", range(Some((0.9, false)), Some((1.0, false)), false)),
            ("len(result) > 0 && result[0] < 5", range(None, Some((5.0, true)), false)),
            ("result[0] == 1", range(Some((1.0, false)), Some((1.0, false)), false)),
            ("(result[0] >= -1e-3)", range(Some((-0.001, false)), None, false)),
        ] {
            let e = parse(cond).unwrap_or_else(|e| panic!("{cond}: {e}"));
            assert_eq!(success_range(&e), Ok(want), "{cond}");
        }
    }

    #[test]
    fn failure_conditions_give_the_values_that_do_not_fail() {
        for (cond, want) in [
            ("result[0] >= 10", range(None, Some((10.0, true)), true)),
            ("result[0] > 10", range(None, Some((10.0, false)), true)),
            ("result[0] < 0.5", range(Some((0.5, false)), None, true)),
            ("result[0] < 0.5 || result[0] > 2", range(Some((0.5, false)), Some((2.0, false)), true)),
            ("len(result) == 0 || result[0] > 5", range(None, Some((5.0, false)), false)),
        ] {
            let e = parse(cond).unwrap_or_else(|e| panic!("{cond}: {e}"));
            assert_eq!(failure_complement(&e), Ok(want), "{cond}");
        }
    }

    #[test]
    fn conditions_a_range_cannot_express_say_why() {
        for (cond, why) in [
            ("result == 'true'", ConditionError::NotAboutResult),
            ("result.major == '1'", ConditionError::NotAboutResult),
            ("all(result, # < 1000)", ConditionError::NotAboutResult),
            ("result[1] > 2", ConditionError::Index(1)),
            ("result[0] < 1 || result[0] > 2", ConditionError::EitherOr),
            ("result[0] != 3", ConditionError::NotEqual),
            ("result[0] > 3 && result[0] < 2", ConditionError::Empty),
        ] {
            let got = parse(cond).and_then(|e| success_range(&e));
            assert_eq!(got, Err(why), "{cond}");
        }
        assert!(matches!(parse("result[0] >="), Err(ConditionError::Syntax(_))));
        assert!(matches!(parse("(((result[0] > 1)"), Err(ConditionError::Syntax(_))));
        let deep = format!("{}result > 1{}", "(".repeat(100), ")".repeat(100));
        assert!(matches!(parse(&deep), Err(ConditionError::Syntax(_))));
    }

    /// A condition built from comparisons, "no data" tests, `&&`, `||` and `!`.
    fn expr_source() -> impl Strategy<Value = String> {
        let value = prop_oneof![Just(0.0), Just(0.5), Just(1.0), Just(-2.0), Just(10.0)];
        let op = prop_oneof![Just(">="), Just(">"), Just("<="), Just("<"), Just("=="), Just("!=")];
        let leaf = prop_oneof![
            4 => (op, value, any::<bool>()).prop_map(|(op, v, flip)| if flip {
                format!("{v:?} {op} result[0]")
            } else {
                format!("result[0] {op} {v:?}")
            }),
            1 => Just("len(result) == 0".to_string()),
            1 => Just("isNaN(result[0])".to_string()),
            1 => Just("len(result) > 0".to_string()),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
                inner.prop_map(|a| format!("!({a})")),
            ]
        })
    }

    proptest! {
        /// Whenever a condition maps to a range, the range accepts exactly the measurements the
        /// condition accepts, except on a strict bound's own value (which the report names).
        #[test]
        fn ranges_agree_with_the_conditions(src in expr_source(), x in prop_oneof![
            Just(None), (-3.0f64..12.0).prop_map(Some), prop_oneof![Just(0.0), Just(0.5), Just(1.0), Just(-2.0), Just(10.0)].prop_map(Some)
        ]) {
            let e = parse(&src).unwrap();
            let on_bound = |r: &Range| x.is_some_and(|x| [r.min, r.max].iter().flatten().any(|b| b.value == x));
            if let Ok(r) = success_range(&e) && !on_bound(&r) {
                prop_assert_eq!(r.contains(x), e.eval(x), "success {} on {:?}: {:?}", src, x, r);
            }
            if let Ok(r) = failure_complement(&e) && !on_bound(&r) {
                prop_assert_eq!(r.contains(x), !e.eval(x), "failure {} on {:?}: {:?}", src, x, r);
            }
        }

        /// Any text parses or fails with a reason; nothing panics.
        #[test]
        fn any_text_is_parsed_or_refused(s in "\\PC{0,80}") {
            if let Ok(e) = parse(&s) {
                let _ = success_range(&e);
                let _ = failure_complement(&e);
            }
        }
    }
}
