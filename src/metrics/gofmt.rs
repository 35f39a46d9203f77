//! The part of Go's `fmt` package that metric templates reach: `%v` printing of template values,
//! `print`, `println` and `printf` with the common verbs.
//!
//! Where Go would embed a marker such as `%!d(string=abc)` or `%!s(MISSING)` in the output, this
//! returns an error instead: a query with such a marker in it cannot be what the user meant, and
//! inside a PromQL regex it would quietly match nothing.
//!
//! Every function here is bounded: `printf` refuses widths and precisions above
//! [`MAX_WIDTH_PRECISION`], and the callers pass a byte limit that no result may exceed (a width
//! or precision that alone passes it is refused before any text is built).

use std::fmt::Write as _;

use super::template::Value;

/// The largest width or precision a `printf` directive may ask for: 1,000,000, the bound in Go's
/// `fmt` (`tooLarge`; Go checks it before each further digit, so it prints `%!(NOVERB)` only from
/// about 10,000,000). Larger values could only build a query too long to send, and unchecked
/// they made the controller allocate gigabytes and abort.
pub const MAX_WIDTH_PRECISION: usize = 1_000_000;

/// Beyond this many digits, every `f64` prints only zeros: the smallest subnormal, 2^-1074, has
/// exactly 1,074 decimals, and no `f64` has more significant digits than that. Rust's formatter
/// panics on precisions above 65,535, so longer precisions are formatted up to here and padded
/// with zeros, which is exactly what Go prints.
const EXACT_DIGITS: usize = 1074;

/// How much of a format string or argument an error message quotes.
const SHOWN_CHARS: usize = 100;

/// Why a `printf`, `print` or `println` produced no text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FmtError {
    /// The format or an argument is wrong; the text says which and how.
    Invalid(String),
    /// The text would be longer than the caller's byte limit.
    TooLong,
}

/// Appends `text` to `out` unless that makes `out` longer than `limit` bytes.
fn push_within(out: &mut String, text: &str, limit: usize) -> Result<(), FmtError> {
    if out.len().saturating_add(text.len()) > limit {
        return Err(FmtError::TooLong);
    }
    out.push_str(text);
    Ok(())
}

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
/// string. [`FmtError::TooLong`] if the text would be longer than `limit` bytes.
pub(super) fn sprint(args: &[Value], limit: usize) -> Result<String, FmtError> {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 && !matches!(arg, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            push_within(&mut out, " ", limit)?;
        }
        push_v(&mut out, arg, limit)?;
    }
    Ok(out)
}

/// Go's `fmt.Sprintln`: operands separated by spaces, then a newline. [`FmtError::TooLong`] if
/// the text would be longer than `limit` bytes.
pub(super) fn sprintln(args: &[Value], limit: usize) -> Result<String, FmtError> {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            push_within(&mut out, " ", limit)?;
        }
        push_v(&mut out, arg, limit)?;
    }
    push_within(&mut out, "\n", limit)?;
    Ok(out)
}

/// Appends `arg` as `%v` prints it, without copying a string argument first.
fn push_v(out: &mut String, arg: &Value, limit: usize) -> Result<(), FmtError> {
    match arg {
        Value::Str(s) => push_within(out, s, limit),
        other => push_within(out, &format_v(other), limit),
    }
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
/// [`FmtError::TooLong`] if the text would be longer than `limit` bytes; a directive whose width
/// or precision alone passes the limit is refused before its text is built.
pub(super) fn sprintf(format: &str, args: &[Value], limit: usize) -> Result<String, FmtError> {
    let invalid = |why: String| FmtError::Invalid(format!("printf format {}{why}", shown(format)));
    let mut out = String::new();
    let mut next_arg = 0;
    let mut rest = format;
    while let Some(percent) = rest.find('%') {
        push_within(&mut out, &rest[..percent], limit)?;
        let (spec, after) = directive(&rest[percent + 1..]).map_err(|why| invalid(format!(": {why}")))?;
        let Some(verb) = after.chars().next() else {
            return Err(invalid(" ends with an incomplete directive".into()));
        };
        rest = &after[verb.len_utf8()..];
        if verb == '%' {
            push_within(&mut out, "%", limit)?;
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            return Err(invalid(format!(" has more directives than the {} argument(s) given", args.len())));
        };
        next_arg += 1;
        // The text is at least as long as the width, and a fixed or exponent float at least as
        // long as its precision: refuse those before building them.
        let room = limit.saturating_sub(out.len());
        let fixed_digits = if matches!(verb, 'f' | 'F' | 'e' | 'E') { spec.precision } else { None };
        if spec.width.unwrap_or(0) > room || fixed_digits.unwrap_or(0) > room {
            return Err(FmtError::TooLong);
        }
        let text = format_one(verb, &spec, arg)
            .map_err(|why| invalid(format!(": %{verb} cannot format argument {next_arg} ({why})")))?;
        push_within(&mut out, &text, limit)?;
    }
    push_within(&mut out, rest, limit)?;
    if next_arg < args.len() {
        return Err(invalid(format!(" uses {next_arg} argument(s) but {} were given", args.len())));
    }
    Ok(out)
}

/// A string as error messages quote it: at most [`SHOWN_CHARS`] characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// Reads the flags, width and precision of a directive (the text after its `%`), up to the verb.
fn directive(s: &str) -> Result<(Spec, &str), String> {
    let mut spec = Spec::default();
    let mut rest = s;
    while let Some(flag) = rest.chars().next() {
        match flag {
            '-' => spec.minus = true,
            '+' => spec.plus = true,
            '0' => spec.zero = true,
            ' ' => spec.space = true,
            '#' => {}
            _ => break,
        }
        rest = &rest[1..];
    }
    let (width, after) = number(rest, "width")?;
    spec.width = width;
    rest = after;
    if let Some(after) = rest.strip_prefix('.') {
        let (precision, after) = number(after, "precision")?;
        spec.precision = Some(precision.unwrap_or(0));
        rest = after;
    }
    Ok((spec, rest))
}

/// A width or precision: the leading ASCII digits of `s`, at most [`MAX_WIDTH_PRECISION`].
/// `None` when `s` does not start with a digit. Any number of digits is read without overflow.
fn number<'a>(s: &'a str, what: &str) -> Result<(Option<usize>, &'a str), String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Ok((None, s));
    }
    let (text, rest) = s.split_at(digits);
    let value = text.trim_start_matches('0');
    // More than 7 significant digits is more than the limit whatever they are.
    match value.parse::<usize>() {
        Ok(n) if value.len() <= 7 && n <= MAX_WIDTH_PRECISION => Ok((Some(n), rest)),
        _ if value.is_empty() => Ok((Some(0), rest)),
        _ => {
            let shown = if text.len() <= 20 { text.to_string() } else { format!("of {} digits", text.len()) };
            Err(format!("{what} {shown} is larger than {MAX_WIDTH_PRECISION}, the limit"))
        }
    }
}

fn describe(arg: &Value) -> String {
    match arg {
        Value::Str(s) => format!("string {}", shown(s)),
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

/// `%f` with `precision` decimals, for any precision.
fn float_f(f: f64, precision: usize) -> String {
    non_finite(f).unwrap_or_else(|| {
        let exact = precision.min(EXACT_DIGITS);
        let mut s = format!("{f:.exact$}");
        s.extend(std::iter::repeat_n('0', precision - exact));
        s
    })
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

/// `%e` with `precision` decimals in the mantissa, for any precision.
fn float_e(f: f64, precision: usize) -> String {
    non_finite(f).unwrap_or_else(|| {
        let exact = precision.min(EXACT_DIGITS);
        let rust = format!("{f:.exact$e}");
        let Some((mantissa, exp)) = rust.split_once('e') else { return go_exponent(&rust) };
        let zeros = "0".repeat(precision - exact);
        go_exponent(&format!("{mantissa}{zeros}e{exp}"))
    })
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
        // Digits past EXACT_DIGITS are zeros, which %g drops anyway.
        Some(p) => format!("{f:.prec$e}", prec = (p.max(1) - 1).min(EXACT_DIGITS)),
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

    /// A limit no test output comes near.
    const LIMIT: usize = 1 << 20;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    /// The message of a format or argument error.
    fn invalid(format: &str, args: &[Value]) -> String {
        match sprintf(format, args, LIMIT) {
            Err(FmtError::Invalid(message)) => message,
            other => panic!("{format:?}: {other:?}"),
        }
    }

    #[test]
    fn common_verbs() {
        assert_eq!(sprintf("%s-%v", &[s("a"), s("b")], LIMIT).unwrap(), "a-b");
        assert_eq!(sprintf("%d%%", &[Value::Int(42)], LIMIT).unwrap(), "42%");
        assert_eq!(sprintf("%q", &[s("po\"d\n")], LIMIT).unwrap(), r#""po\"d\n""#);
        assert_eq!(
            sprintf("%05d|%-4s|%4s", &[Value::Int(-42), s("a"), s("b")], LIMIT).unwrap(),
            "-0042|a   |   b"
        );
        assert_eq!(
            sprintf("%.2f %.3s %+d", &[Value::Float(0.995), s("abcdef"), Value::Int(3)], LIMIT).unwrap(),
            "0.99 abc +3"
        );
        assert_eq!(sprintf("%x %X", &[Value::Int(255), s("hi")], LIMIT).unwrap(), "ff 6869");
    }

    #[test]
    fn mismatches_are_errors_naming_the_directive() {
        let e = invalid("%s %s", &[s("a")]);
        assert!(e.contains("more directives than the 1 argument"), "{e}");
        let e = invalid("%s", &[s("a"), s("b")]);
        assert!(e.contains("uses 1 argument(s) but 2 were given"), "{e}");
        let e = invalid("%d", &[s("abc")]);
        assert!(e.contains("%d cannot format argument 1 (string \"abc\")"), "{e}");
        let e = invalid("%y", &[s("abc")]);
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
        assert_eq!(sprintf("%e", &[Value::Float(1500.0)], LIMIT).unwrap(), "1.500000e+03");
        assert_eq!(sprintf("%.3g", &[Value::Float(1234.5)], LIMIT).unwrap(), "1.23e+03");
        assert_eq!(sprintf("%.3g", &[Value::Float(0.5)], LIMIT).unwrap(), "0.5");
    }

    #[test]
    fn print_and_println_spacing() {
        assert_eq!(sprint(&[s("a"), s("b")], LIMIT).unwrap(), "ab");
        assert_eq!(sprint(&[Value::Int(1), Value::Int(2), s("x"), Value::Int(3)], LIMIT).unwrap(), "1 2x3");
        assert_eq!(sprintln(&[s("a"), Value::Int(1)], LIMIT).unwrap(), "a 1\n");
    }

    #[test]
    fn widths_and_precisions_above_a_million_are_refused_by_name() {
        for (format, want) in [
            ("%20000000000s", "width 20000000000 is larger than 1000000, the limit"),
            ("%99999999999999999999999s", "width of 23 digits is larger than 1000000"),
            ("%.70000000f", "precision 70000000 is larger than 1000000"),
            ("%.99999999999e", "precision 99999999999 is larger than 1000000"),
            ("%-1000001d", "width 1000001 is larger"),
        ] {
            let e = invalid(format, &[s("x")]);
            assert!(e.contains(want), "{format}: {e}");
        }
        // A digit string of any length is read without overflow, and quoted briefly.
        let e = invalid(&format!("%{}s", "9".repeat(10_000)), &[s("x")]);
        assert!(e.contains("width of 10000 digits is larger than 1000000"), "{e}");
        assert!(e.len() < 400, "{}", e.len());
        // Leading zeros do not count; the limit itself is accepted.
        assert_eq!(sprintf("%.0000002f", &[Value::Float(1.0)], LIMIT).unwrap(), "1.00");
        assert_eq!(sprintf("%1000000s", &[s("x")], LIMIT).unwrap().len(), MAX_WIDTH_PRECISION);
    }

    #[test]
    fn text_longer_than_the_limit_is_refused_before_it_is_built() {
        assert_eq!(sprintf("%1000s", &[s("x")], 999), Err(FmtError::TooLong));
        assert_eq!(sprintf("%1000s", &[s("x")], 1000).unwrap().len(), 1000);
        assert_eq!(sprintf("ab%.998f", &[Value::Float(1.0)], 1000), Err(FmtError::TooLong));
        assert_eq!(sprintf("%.999e", &[Value::Float(1.0)], 1000), Err(FmtError::TooLong));
        assert_eq!(sprintf("%s%s", &[s("abc"), s("def")], 5), Err(FmtError::TooLong));
        assert_eq!(sprintf("abcdef", &[], 5), Err(FmtError::TooLong));
        assert_eq!(sprint(&[s("abc"), s("def")], 5), Err(FmtError::TooLong));
        assert_eq!(sprintln(&[s("abc"), s("d")], 5), Err(FmtError::TooLong));
        assert_eq!(sprintln(&[s("abc")], 4).unwrap(), "abc\n");
    }

    #[test]
    fn long_precisions_print_every_digit_as_go_does() {
        // Past 65,535 Rust's formatter panics; Go prints the exact value and then zeros.
        let f = sprintf("%.70000f", &[Value::Float(1.5)], LIMIT).unwrap();
        assert_eq!(f.len(), 70_002);
        assert!(f.starts_with("1.5000") && f[2..].bytes().skip(1).all(|b| b == b'0'), "{}", &f[..20]);
        let e = sprintf("%.70000e", &[Value::Float(-1.5)], LIMIT).unwrap();
        assert!(e.starts_with("-1.5000") && e.ends_with("0e+00"), "{}", &e[e.len() - 10..]);
        assert_eq!(e.len(), 70_007);
        // Up to EXACT_DIGITS the digits are exact; past it, zeros: the same text as formatting
        // every digit, for the values with the longest expansions.
        for v in [5e-324, f64::MIN_POSITIVE, 0.1, 1e300, f64::MAX, -2.5e-310] {
            assert_eq!(float_f(v, 1200), format!("{v:.1200}"), "{v:e}");
            assert_eq!(float_e(v, 1200), go_exponent(&format!("{v:.1200e}")), "{v:e}");
            assert_eq!(float_g(v, Some(100_000)), float_g(v, Some(1200)), "{v:e}");
        }
        assert_eq!(
            sprintf("%.100000g", &[Value::Float(0.1)], LIMIT).unwrap(),
            "0.1000000000000000055511151231257827021181583404541015625"
        );
    }
}
