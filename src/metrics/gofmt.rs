//! The part of Go's `fmt` package that metric templates reach: `%v` printing of template values,
//! `print`, `println` and `printf` with the common verbs.
//!
//! Where Go would embed a marker such as `%!d(string=abc)` or `%!s(MISSING)` in the output, this
//! returns an error instead: a query with such a marker in it cannot be what the user meant, and
//! inside a PromQL regex it would quietly match nothing.

use std::fmt::Write as _;

use super::template::Value;

/// A value as Go's `%v` prints it (also what `{{ x }}` prints, except for nil).
pub(super) fn format_v(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_g(*f, None),
        Value::Bool(b) => b.to_string(),
        Value::Map(m) => {
            let entries: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", entries.join(" "))
        }
        Value::Nil => "<nil>".into(),
    }
}

/// Go's `fmt.Sprint`: operands printed with `%v`, a space between two operands when neither is a
/// string.
pub(super) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 && !matches!(arg, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&format_v(arg));
    }
    out
}

/// Go's `fmt.Sprintln`: operands separated by spaces, then a newline.
pub(super) fn sprintln(args: &[Value]) -> String {
    let mut parts: Vec<String> = args.iter().map(format_v).collect();
    let last = parts.len();
    if last > 0 {
        parts[last - 1].push('\n');
    } else {
        parts.push("\n".into());
    }
    parts.join(" ")
}

/// One `%...` directive.
#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// Go's `fmt.Sprintf` for the verbs `v s q d f F e E g G t x X o b c` and `%%`, with flags
/// `- + 0 space`, width and precision. Errors name the verb and the argument.
pub(super) fn sprintf(format: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut next_arg = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        spec.width = read_number(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.precision = Some(read_number(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            return Err(format!("printf format {format:?} ends with an incomplete directive"));
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            return Err(format!(
                "printf format {format:?} has more directives than the {} argument(s) given",
                args.len()
            ));
        };
        next_arg += 1;
        let text = format_one(verb, &spec, arg).map_err(|why| {
            format!("printf format {format:?}: %{verb} cannot format argument {next_arg} ({why})")
        })?;
        out.push_str(&text);
    }
    if next_arg < args.len() {
        return Err(format!(
            "printf format {format:?} uses {next_arg} argument(s) but {} were given",
            args.len()
        ));
    }
    Ok(out)
}

fn read_number(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
        chars.next();
    }
    n
}

fn describe(arg: &Value) -> String {
    match arg {
        Value::Str(s) => format!("string {s:?}"),
        Value::Int(i) => format!("integer {i}"),
        Value::Float(f) => format!("number {}", float_g(*f, None)),
        Value::Bool(b) => format!("bool {b}"),
        Value::Map(_) => "a map".into(),
        Value::Nil => "nil".into(),
    }
}

fn format_one(verb: char, spec: &Spec, arg: &Value) -> Result<String, String> {
    let numeric = matches!(arg, Value::Int(_) | Value::Float(_));
    let body = match (verb, arg) {
        ('v', _) => {
            let mut s = format_v(arg);
            if numeric {
                s = signed(s, spec);
            }
            s
        }
        ('s', Value::Str(_) | Value::Map(_)) => format_v(arg),
        ('q', Value::Str(s)) => quote(s),
        ('d', Value::Int(i)) => signed(i.to_string(), spec),
        ('x', Value::Int(i)) => signed(radix(*i, 16, false), spec),
        ('X', Value::Int(i)) => signed(radix(*i, 16, true), spec),
        ('o', Value::Int(i)) => signed(radix(*i, 8, false), spec),
        ('b', Value::Int(i)) => signed(radix(*i, 2, false), spec),
        ('c', Value::Int(i)) => {
            char::from_u32(u32::try_from(*i).map_err(|_| describe(arg))?).unwrap_or('\u{FFFD}').to_string()
        }
        ('x', Value::Str(s)) => s.bytes().fold(String::new(), |mut acc, b| {
            let _ = write!(acc, "{b:02x}");
            acc
        }),
        ('X', Value::Str(s)) => s.bytes().fold(String::new(), |mut acc, b| {
            let _ = write!(acc, "{b:02X}");
            acc
        }),
        ('t', Value::Bool(b)) => b.to_string(),
        ('f' | 'F', Value::Float(f)) => signed(float_f(*f, spec.precision.unwrap_or(6)), spec),
        ('e', Value::Float(f)) => signed(float_e(*f, spec.precision.unwrap_or(6)), spec),
        ('E', Value::Float(f)) => signed(float_e(*f, spec.precision.unwrap_or(6)).to_uppercase(), spec),
        ('g', Value::Float(f)) => signed(float_g(*f, spec.precision), spec),
        ('G', Value::Float(f)) => signed(float_g(*f, spec.precision).to_uppercase(), spec),
        ('s' | 'q' | 'd' | 'x' | 'X' | 'o' | 'b' | 'c' | 't' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G', _) => {
            return Err(describe(arg));
        }
        _ => return Err(format!("%{verb} is not a supported verb; use %s, %v, %d, %q or %f")),
    };
    // A precision on %s / %v of a string truncates it to that many characters.
    let body = match (verb, arg, spec.precision) {
        ('s' | 'v', Value::Str(_), Some(p)) => body.chars().take(p).collect(),
        _ => body,
    };
    Ok(pad(
        body,
        spec,
        numeric && matches!(verb, 'v' | 'd' | 'x' | 'X' | 'o' | 'b' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G'),
    ))
}

/// Adds the `+` or space sign flag to a formatted number.
fn signed(s: String, spec: &Spec) -> String {
    if s.starts_with('-') || s.starts_with('+') {
        s
    } else if spec.plus {
        format!("+{s}")
    } else if spec.space {
        format!(" {s}")
    } else {
        s
    }
}

fn pad(body: String, spec: &Spec, numeric: bool) -> String {
    let len = body.chars().count();
    let Some(width) = spec.width.filter(|w| *w > len) else { return body };
    let fill = width - len;
    if spec.minus {
        format!("{body}{}", " ".repeat(fill))
    } else if spec.zero && numeric {
        // Zeros go between the sign and the digits.
        let (sign, digits) = match body.chars().next() {
            Some(c @ ('+' | '-' | ' ')) => (c.to_string(), &body[1..]),
            _ => (String::new(), body.as_str()),
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{body}", " ".repeat(fill))
    }
}

fn radix(i: i64, base: u32, upper: bool) -> String {
    let magnitude = i.unsigned_abs();
    let digits = match (base, upper) {
        (16, false) => format!("{magnitude:x}"),
        (16, true) => format!("{magnitude:X}"),
        (8, _) => format!("{magnitude:o}"),
        _ => format!("{magnitude:b}"),
    };
    if i < 0 { format!("-{digits}") } else { digits }
}

/// Go's `strconv.Quote`: a double-quoted string with Go escapes.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn non_finite(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".into())
    } else if f.is_infinite() {
        Some(if f > 0.0 { "+Inf".into() } else { "-Inf".into() })
    } else {
        None
    }
}

fn float_f(f: f64, precision: usize) -> String {
    non_finite(f).unwrap_or_else(|| format!("{f:.precision$}"))
}

/// Rust writes `1.5e-7`; Go writes `1.5e-07` (sign always, at least two exponent digits).
fn go_exponent(rust: &str) -> String {
    let Some((mantissa, exp)) = rust.split_once('e') else { return rust.to_string() };
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

fn float_e(f: f64, precision: usize) -> String {
    non_finite(f).unwrap_or_else(|| go_exponent(&format!("{f:.precision$e}")))
}

/// Go's `%g` (and `%v` for floats): the shortest representation, or `precision` significant
/// digits; exponent form when the exponent is below -4 or at least the precision (6 when
/// shortest).
fn float_g(f: f64, precision: Option<usize>) -> String {
    if let Some(s) = non_finite(f) {
        return s;
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = match precision {
        None => format!("{f:e}"),
        Some(p) => format!("{f:.prec$e}", prec = p.max(1) - 1),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let mut digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let eprec = match precision {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            if p > nd && nd >= dp { nd } else { p }
        }
    };
    let body = if exp < -4 || exp >= eprec {
        let frac = &digits[1..];
        let m = if frac.is_empty() { digits[..1].to_string() } else { format!("{}.{frac}", &digits[..1]) };
        go_exponent(&format!("{m}e{exp}"))
    } else if dp <= 0 {
        format!("0.{}{digits}", "0".repeat((-dp) as usize))
    } else if dp >= nd {
        format!("{digits}{}", "0".repeat((dp - nd) as usize))
    } else {
        format!("{}.{}", &digits[..dp as usize], &digits[dp as usize..])
    };
    if neg { format!("-{body}") } else { body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn common_verbs() {
        assert_eq!(sprintf("%s-%v", &[s("a"), s("b")]).unwrap(), "a-b");
        assert_eq!(sprintf("%d%%", &[Value::Int(42)]).unwrap(), "42%");
        assert_eq!(sprintf("%q", &[s("po\"d\n")]).unwrap(), r#""po\"d\n""#);
        assert_eq!(sprintf("%05d|%-4s|%4s", &[Value::Int(-42), s("a"), s("b")]).unwrap(), "-0042|a   |   b");
        assert_eq!(
            sprintf("%.2f %.3s %+d", &[Value::Float(0.995), s("abcdef"), Value::Int(3)]).unwrap(),
            "0.99 abc +3"
        );
        assert_eq!(sprintf("%x %X", &[Value::Int(255), s("hi")]).unwrap(), "ff 6869");
    }

    #[test]
    fn mismatches_are_errors_naming_the_directive() {
        let e = sprintf("%s %s", &[s("a")]).unwrap_err();
        assert!(e.contains("more directives than the 1 argument"), "{e}");
        let e = sprintf("%s", &[s("a"), s("b")]).unwrap_err();
        assert!(e.contains("uses 1 argument(s) but 2 were given"), "{e}");
        let e = sprintf("%d", &[s("abc")]).unwrap_err();
        assert!(e.contains("%d cannot format argument 1 (string \"abc\")"), "{e}");
        let e = sprintf("%y", &[s("abc")]).unwrap_err();
        assert!(e.contains("%y is not a supported verb"), "{e}");
    }

    #[test]
    fn floats_print_like_go() {
        for (v, want) in [
            (0.99, "0.99"),
            (100.0, "100"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(format_v(&Value::Float(v)), want, "{v}");
        }
        assert_eq!(sprintf("%e", &[Value::Float(1500.0)]).unwrap(), "1.500000e+03");
        assert_eq!(sprintf("%.3g", &[Value::Float(1234.5)]).unwrap(), "1.23e+03");
        assert_eq!(sprintf("%.3g", &[Value::Float(0.5)]).unwrap(), "0.5");
    }

    #[test]
    fn print_and_println_spacing() {
        assert_eq!(sprint(&[s("a"), s("b")]), "ab");
        assert_eq!(sprint(&[Value::Int(1), Value::Int(2), s("x"), Value::Int(3)]), "1 2x3");
        assert_eq!(sprintln(&[s("a"), Value::Int(1)]), "a 1\n");
    }
}
