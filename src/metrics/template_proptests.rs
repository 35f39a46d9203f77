//! Property tests: whatever a Canary author writes as a query template or a `printf` format, the
//! renderer returns a query or an error, never panics or overflows the stack, and never returns
//! more than its limits allow. Every property runs on a 2 MiB thread stack, the size of Tokio's
//! worker threads, so a stack overflow would abort the test binary.

use std::collections::BTreeMap;

use proptest::{
    collection::{btree_map, vec},
    prelude::{Just, Strategy, TestCaseError, any, prop_assert, prop_oneof},
    sample::select,
    test_runner::{Config, TestRunner},
};

use super::{
    MAX_QUERY_BYTES, MAX_RENDER_BYTES, TemplateContext, Value, check, gofmt, render, tests::on_worker_stack,
};

/// Runs `cases` cases of `test` over the values of `strategy()` on a 2 MiB stack.
fn check_on_worker_stack<S, F>(cases: u32, strategy: fn() -> S, test: F)
where
    S: Strategy + 'static,
    F: Fn(S::Value) -> Result<(), TestCaseError> + Send + 'static,
{
    on_worker_stack(move || {
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        if let Err(e) = runner.run(&strategy(), test) {
            panic!("{e}");
        }
    });
}

/// Pieces of template text: delimiters, operators, functions, literals, `printf` directives with
/// huge widths and precisions, digits, multibyte characters and plain text.
const TEMPLATE_TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{{- ",
    " -}}",
    "{{/*",
    "*/}}",
    "(",
    ")",
    "|",
    "$x",
    "$y",
    "$",
    ":=",
    "=",
    "\"",
    "`",
    "'a'",
    ",",
    " ",
    "\n",
    "\t",
    "printf",
    "print",
    "println",
    "len",
    "index",
    "variables",
    "target",
    "namespace",
    "interval",
    "workload",
    "if",
    "end",
    ".",
    ".direction",
    ".missing",
    "%",
    "%s",
    "%d",
    "%v",
    "%q",
    "%x",
    "%.",
    "%-05.3f",
    "9",
    "0",
    "99999999999",
    "1000000",
    "70000",
    "1.5",
    "-3",
    "0x1F",
    "1e308",
    "nil",
    "true",
    "\"%s\"",
    "\"%9999999s\"",
    "\"%.70000f\"",
    "\"%1000000s\"",
    "\"%.99999999999e\"",
    "é",
    "日本",
    "🦀",
    "\\",
    "\\x4",
    "\\u00e9",
    "-",
    "+",
    "*",
    "rate(x[5m])",
];

fn token_soup() -> impl Strategy<Value = String> {
    vec(select(TEMPLATE_TOKENS), 0..200).prop_map(|tokens| tokens.concat())
}

/// Literals and calls a well-formed `printf` action may take as arguments.
const ARGUMENTS: &[&str] = &[
    "target",
    "1",
    "-2",
    "1.5",
    "1e300",
    "-0.0",
    "true",
    "\"é🦀\"",
    "variables",
    "nil",
    "(print target)",
    "$x",
    "'a'",
    "0x7fffffffffffffff",
];

/// Pieces of a `printf` format: flags, widths and precisions (some past the limit, some of
/// dozens of digits), verbs (some unsupported) and text.
const FORMAT_PIECES: &[&str] = &[
    "%",
    "-",
    "+",
    "0",
    " ",
    "#",
    ".",
    "1",
    "9",
    "05",
    "1000000",
    "1000001",
    "70000",
    "65536",
    "99999999999999999999999",
    "v",
    "s",
    "q",
    "d",
    "f",
    "F",
    "e",
    "E",
    "g",
    "G",
    "t",
    "x",
    "X",
    "o",
    "b",
    "c",
    "y",
    "%%",
    "abc",
    "é",
    "日",
    "🦀",
    "\n",
];

/// Widths and precisions: small, at and around the limits (Go's 1,000,000, Rust's 65,535), and
/// of more digits than any integer type holds.
const NUMBERS: &[&str] = &[
    "",
    "0",
    "5",
    "17",
    "0003",
    "1000",
    "65535",
    "65536",
    "70000",
    "1000000",
    "1000001",
    "99999999999",
    "99999999999999999999999",
];

/// One directive: `%`, flags, width, precision and verb.
fn directive() -> impl Strategy<Value = String> {
    (
        vec(select(&["-", "+", "0", " ", "#"][..]), 0..3),
        select(NUMBERS),
        proptest::option::of(select(NUMBERS)),
        select(
            &["v", "s", "q", "d", "f", "F", "e", "E", "g", "G", "t", "x", "X", "o", "b", "c", "y", "%"][..],
        ),
    )
        .prop_map(|(flags, width, precision, verb)| {
            let precision = precision.map(|p| format!(".{p}")).unwrap_or_default();
            format!("%{}{width}{precision}{verb}", flags.concat())
        })
}

/// Formats of well-formed directives between text, or of random pieces.
fn format() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(prop_oneof![directive(), select(&["", "a", "é🦀", " ", "\n"][..]).prop_map(String::from)], 0..6)
            .prop_map(|parts| parts.concat()),
        vec(select(FORMAT_PIECES), 0..24).prop_map(|pieces| pieces.concat()),
    ]
}

/// `{{ $x := ... }}{{ printf "<format>" <arguments> }}`: actions that parse, so that the
/// renderer (not only the parser) meets the formats.
fn printf_action() -> impl Strategy<Value = String> {
    (format(), vec(select(ARGUMENTS), 0..5)).prop_map(|(format, args)| {
        let quoted = format.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        format!("{{{{ $x := 7 }}}}{{{{ printf \"{quoted}\" {} }}}}", args.join(" "))
    })
}

/// A soup wrapped in up to 3,000 opening and closing parentheses (not necessarily balanced).
fn deep_nesting() -> impl Strategy<Value = String> {
    (0usize..3000, token_soup(), 0usize..3000, any::<bool>()).prop_map(|(open, middle, close, call)| {
        let opener = if call { "print (" } else { "(" };
        format!("{{{{ {}{middle}{} }}}}", opener.repeat(open), ")".repeat(close))
    })
}

/// A soup repeated up to 4,000 times: inputs of up to about a megabyte.
fn long_input() -> impl Strategy<Value = String> {
    (prop_oneof![token_soup(), printf_action()], 1usize..4000).prop_map(|(soup, n)| soup.repeat(n))
}

fn context() -> TemplateContext {
    TemplateContext {
        name: "podinfo".into(),
        namespace: "test".into(),
        target: "podinfo".into(),
        service: "podinfo".into(),
        ingress: "podinfo".into(),
        route: "podinfo".into(),
        interval: "1m".into(),
        variables: BTreeMap::from([("direction".into(), "inbound".into())]),
    }
}

/// The renderer's contract for any source: a query within [`MAX_QUERY_BYTES`], or an error; a
/// template that does not parse never renders.
fn renders_within_limits(source: String) -> Result<(), TestCaseError> {
    let rendered = render(&source, &context());
    if let Ok(query) = &rendered {
        prop_assert!(query.len() <= MAX_QUERY_BYTES, "a query of {} bytes", query.len());
    }
    prop_assert!(check(&source).is_ok() || rendered.is_err());
    Ok(())
}

#[test]
fn arbitrary_token_soups_render_or_fail_cleanly() {
    check_on_worker_stack(2000, token_soup, renders_within_limits);
}

#[test]
fn arbitrary_printf_actions_render_or_fail_cleanly() {
    check_on_worker_stack(2000, printf_action, renders_within_limits);
}

#[test]
fn arbitrary_deep_nesting_never_overflows_the_stack() {
    check_on_worker_stack(300, deep_nesting, renders_within_limits);
}

#[test]
fn arbitrary_long_inputs_render_or_fail_cleanly() {
    check_on_worker_stack(64, long_input, renders_within_limits);
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        select(
            &[
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MAX,
                f64::MIN,
                f64::MIN_POSITIVE,
                5e-324,
                -0.0,
                0.1,
            ][..]
        ),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::Str),
        any::<i64>().prop_map(Value::Int),
        float().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Nil),
        btree_map("[a-z-]{0,6}", any::<String>(), 0..4).prop_map(Value::Map),
    ]
}

/// A byte limit: tiny, small, or what the renderer passes at most.
fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..64, 0usize..4096, Just(MAX_RENDER_BYTES)]
}

#[test]
fn arbitrary_printf_calls_never_panic_and_stay_within_their_limit() {
    check_on_worker_stack(
        3000,
        || (format(), vec(value(), 0..4), limit()),
        |(format, args, limit)| {
            if let Ok(text) = gofmt::sprintf(&format, &args, limit) {
                prop_assert!(text.len() <= limit, "{} bytes for a limit of {limit}", text.len());
            }
            Ok(())
        },
    );
}

#[test]
fn arbitrary_print_calls_never_panic_and_stay_within_their_limit() {
    check_on_worker_stack(
        1000,
        || (vec(value(), 0..6), limit()),
        |(args, limit)| {
            for text in [gofmt::sprint(&args, limit), gofmt::sprintln(&args, limit)].into_iter().flatten() {
                prop_assert!(text.len() <= limit, "{} bytes for a limit of {limit}", text.len());
            }
            Ok(())
        },
    );
}
