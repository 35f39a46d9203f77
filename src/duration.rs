//! Go durations (`30s`, `1m30s`, `1.5h`, `500ms`): the one parser and formatter of the controller and
//! the load tester. Canary fields (`analysis.interval`, webhook `timeout`, metric `interval`), Flagger's
//! `-timeout` flag and `hey -z` all use Go's `time.ParseDuration` format, and Flagger's Event texts use
//! `time.Duration.String()`, so both are reproduced here.
//!
//! Parsing is checked: any string, however long or large its numbers, gives a duration or an error,
//! never a panic (a value above `u64::MAX` seconds is "too large"). Bounds that make sense for one
//! field (an interval of at most a day, say) are the caller's; see `crate::api::limits`.

use std::time::Duration;

use thiserror::Error;

/// A string that is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{input:?} is not a duration: {reason} (examples: 30s, 10m, 1h, 1m30s, 500ms)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Longest input echoed back in an error.
const MAX_ECHO: usize = 64;

/// Parses a non-negative Go duration: one or more `<number><unit>` pairs, units `ns`, `us`
/// (`µs`), `ms`, `s`, `m`, `h`; fractions allowed; a bare `0` is zero.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { input: echo(input), reason };
    let s = input.strip_prefix('+').unwrap_or(input);
    if s.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err("expected a number"));
        }
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(err("a unit is missing")),
            _ => return Err(err("unknown unit")),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| err("too large"))? };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(|| err("too large"))?;
        // Fractions are exact to the nanosecond; extra digits beyond that are dropped, as in Go.
        let mut scale = unit_nanos;
        for digit in frac.chars().take(30) {
            scale /= 10;
            nanos += u128::from(digit.to_digit(10).unwrap_or(0)) * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(|| err("too large"))?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err("too large"))?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// The input as shown in an error: a long one is cut.
fn echo(input: &str) -> String {
    match input.char_indices().nth(MAX_ECHO) {
        Some((i, _)) => format!("{}…", &input[..i]),
        None => input.to_owned(),
    }
}

/// Formats a duration as Go's `time.Duration.String()` does (`612ms`, `1.5s`, `1m0s`, `1h0m1s`), so
/// that Event texts and messages match Flagger's.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", trim_fraction(nanos, div));
    }
    let total_secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let (h, m, s) = (total_secs / 3600, (total_secs / 60) % 60, total_secs % 60);
    let secs = trim_fraction(s * 1_000_000_000 + frac, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn trim_fraction(value: u128, div: u128) -> String {
    let whole = value / div;
    let frac = value % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_go_durations() {
        for (s, want) in [
            ("0", Duration::ZERO),
            ("1h", Duration::from_secs(3600)),
            ("10m", Duration::from_secs(600)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("500ms", Duration::from_millis(500)),
            ("2us", Duration::from_micros(2)),
            ("2µs", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
            ("+1h2m3s4ms", Duration::from_millis(3_723_004)),
        ] {
            assert_eq!(parse(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_what_go_rejects_and_negatives() {
        for s in ["", "1", "10", "1x", "s", "m", ".s", "1.2.3s", "-1s", "1h-2m", "1 s", "5x"] {
            let e = parse(s).unwrap_err();
            assert!(e.to_string().contains("is not a duration"), "{s}: {e}");
        }
    }

    #[test]
    fn huge_values_are_errors_not_panics() {
        for s in
            ["99999999999999999h", "5124095576030432h", &"9".repeat(5000), &format!("{}s", "9".repeat(40))]
        {
            let e = parse(s).unwrap_err();
            assert!(e.to_string().contains("too large") || e.to_string().contains("unit"), "{e}");
            assert!(e.to_string().len() < 200, "a long input is cut in the message: {e}");
        }
        // Up to u64::MAX seconds parses; one hour more is too large.
        assert_eq!(parse("5124095576030431h"), Ok(Duration::from_secs(5_124_095_576_030_431 * 3600)));
        assert!(parse("5124095576030432h").unwrap_err().to_string().contains("too large"));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_millis(612)), "612ms");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_secs(60)), "1m0s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format(Duration::from_secs(3601)), "1h0m1s");
        assert_eq!(format(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format(Duration::from_nanos(7)), "7ns");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::MAX), "5124095576030431h0m15.999999999s");
    }

    proptest! {
        /// Any string: a duration or an error, never a panic.
        #[test]
        fn any_input_parses_or_errs(s in ".{0,64}") {
            let _ = parse(&s);
        }

        /// Strings made of duration characters, including huge numbers.
        #[test]
        fn duration_shaped_input_parses_or_errs(s in "[+-]?[0-9.]{0,40}(ns|us|µs|ms|s|m|h|x)?([0-9.]{0,30}(ns|us|ms|s|m|h))*") {
            let _ = parse(&s);
        }

        /// What `format` writes, `parse` reads back to the same value.
        #[test]
        fn format_round_trips(secs in 0u64..=u64::MAX, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse(&format(d).replace('µ', "u")), Ok(d));
        }
    }
}
