//! The `hey` command line, parsed the way hey's own Go `flag` parser reads it: `-flag value`,
//! `-flag=value`, `--flag value`; boolean flags alone; flags end at the first non-flag word (the
//! URL) or at `--`. Unknown flags and flags that would read local files are errors, not ignored.

use std::time::Duration;

use reqwest::{Method, Url};
use thiserror::Error;

use crate::duration;

/// hey's defaults (`hey -h`).
const DEFAULT_REQUESTS: u64 = 200;
const DEFAULT_WORKERS: u32 = 50;
const DEFAULT_TIMEOUT_SECS: u64 = 20;
const DEFAULT_CONTENT_TYPE: &str = "text/html";

/// The slowest `-q`: one request per worker every 1,000,000 s (11.6 days). A slower rate could
/// not send a request within any run, and its period would not fit a timer (`-q 1e-20` made a
/// worker panic).
pub const MIN_RATE_PER_WORKER: f64 = 1e-6;
/// The fastest `-q`: 1,000,000 requests per second per worker. hey paces in whole microseconds,
/// so a faster rate gives it a zero period and its workers then wait forever; a worker sends one
/// request at a time and gets nowhere near this rate anyway.
pub const MAX_RATE_PER_WORKER: f64 = 1e6;

/// The flags the built-in generator understands, for error messages.
pub const SUPPORTED_FLAGS: &str = "-z, -n, -c, -q, -m, -H, -d, -t, -T, -A, -a, -host, -h2, \
     -disable-keepalive, -disable-compression, -disable-redirects, -o, -cpus";

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// `-z`: keep sending until this much time has passed.
    After(Duration),
    /// `-n`: send this many requests in total (spread over the workers).
    Requests(u64),
}

/// A parsed `hey` invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct HeySpec {
    /// Target URL (http or https).
    pub url: Url,
    /// `-z` or `-n`.
    pub stop: Stop,
    /// `-c`: concurrent workers, each sending one request at a time.
    pub workers: u32,
    /// `-q`: requests per second per worker; `None` is unlimited.
    pub rate_per_worker: Option<f64>,
    /// `-m` (upper-cased, as hey does).
    pub method: Method,
    /// Request headers in order, names unique (case-insensitively; the last `-H` wins, as in hey).
    /// Includes `Content-Type` (`-T`, default `text/html`) and `Accept` (`-A`).
    pub headers: Vec<(String, String)>,
    /// `-d`: request body.
    pub body: Option<String>,
    /// `-t`: per-request timeout; `None` for `-t 0` (bounded by the run's own deadline instead).
    pub request_timeout: Option<Duration>,
    /// `-host`: the Host header.
    pub host: Option<String>,
    /// `-a user:password`.
    pub basic_auth: Option<(String, String)>,
    /// `-h2`: allow HTTP/2 (otherwise HTTP/1.1 only, like hey).
    pub http2: bool,
    /// `-disable-keepalive`: a new connection per request.
    pub disable_keepalive: bool,
    /// `-disable-redirects`: report 3xx instead of following.
    pub disable_redirects: bool,
}

/// Why a `hey` command line cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeyError {
    #[error("hey flag {0} is not supported by the built-in hey (supported: {SUPPORTED_FLAGS})")]
    UnknownFlag(String),
    #[error("hey flag {flag} is not supported by the built-in hey: {why}")]
    Unsupported { flag: String, why: &'static str },
    #[error("hey flag {0} needs a value")]
    MissingValue(String),
    #[error("hey flag {flag} has an invalid value {value:?}: expected {expected}")]
    InvalidValue { flag: String, value: String, expected: String },
    #[error(
        "hey needs a target URL as its last argument, e.g. hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"
    )]
    MissingUrl,
    #[error("unexpected argument {0:?} after the URL: put all flags before the URL")]
    ExtraArgument(String),
    #[error("hey target {url:?} is not a usable URL: {why}")]
    InvalidUrl { url: String, why: String },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "hey -c {workers} asks for more workers than this load tester allows ({max}); lower -c or raise --max-workers"
    )]
    TooManyWorkers { workers: u32, max: u32 },
    #[error("hey -z {asked} is longer than the per-command timeout ({limit}); shorten -z or raise --timeout")]
    TooLong { asked: String, limit: String },
}

impl HeySpec {
    /// Checks the spec against the server's bounds.
    pub fn check_limits(&self, max_workers: u32, max_duration: Duration) -> Result<(), HeyError> {
        if self.workers > max_workers {
            return Err(HeyError::TooManyWorkers { workers: self.workers, max: max_workers });
        }
        if let Stop::After(d) = self.stop
            && d > max_duration
        {
            return Err(HeyError::TooLong {
                asked: duration::format(d),
                limit: duration::format(max_duration),
            });
        }
        Ok(())
    }
}

/// Parses the arguments that follow `hey` (the program name already removed).
pub fn parse_hey_args(args: &[String]) -> Result<HeySpec, HeyError> {
    let mut requests: Option<u64> = None;
    let mut workers = DEFAULT_WORKERS;
    let mut rate: Option<f64> = None;
    let mut duration: Option<Duration> = None;
    let mut method = "GET".to_owned();
    let mut custom_headers: Vec<(String, String)> = Vec::new();
    let mut body = None;
    let mut timeout_secs = DEFAULT_TIMEOUT_SECS;
    let mut content_type = DEFAULT_CONTENT_TYPE.to_owned();
    let mut accept = None;
    let mut basic_auth = None;
    let mut host = None;
    let mut http2 = false;
    let mut disable_keepalive = false;
    let mut disable_redirects = false;

    let mut i = 0;
    let mut url_arg = None;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            url_arg = args.get(i).cloned();
            i += 1;
            break;
        }
        let Some(flag_text) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            url_arg = Some(arg.clone());
            break;
        };
        if flag_text.is_empty() {
            // A lone "-" is a positional argument to Go's flag package.
            url_arg = Some(arg.clone());
            break;
        }
        let (name, inline) = match flag_text.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag_text, None),
        };
        let flag = format!("-{name}");
        match name {
            "h2" | "disable-keepalive" | "disable-compression" | "disable-redirects" => {
                let on = match &inline {
                    None => true,
                    Some(v) => parse_go_bool(v).ok_or_else(|| HeyError::InvalidValue {
                        flag: flag.clone(),
                        value: v.clone(),
                        expected: "true or false".into(),
                    })?,
                };
                match name {
                    "h2" => http2 = on,
                    "disable-keepalive" => disable_keepalive = on,
                    "disable-redirects" => disable_redirects = on,
                    // Requests never ask for compression here, so there is nothing to disable.
                    _ => {}
                }
                continue;
            }
            "n" | "c" | "q" | "z" | "m" | "H" | "t" | "d" | "T" | "A" | "a" | "host" | "o" | "cpus" => {}
            "D" => {
                return Err(HeyError::Unsupported {
                    flag,
                    why: "it would read a file from the load tester's disk; pass the body inline with -d",
                });
            }
            "x" => {
                return Err(HeyError::Unsupported {
                    flag,
                    why: "requests go directly to the target, not through a proxy",
                });
            }
            _ => return Err(HeyError::UnknownFlag(flag)),
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args.get(i).cloned().ok_or_else(|| HeyError::MissingValue(flag.clone()))?;
                i += 1;
                v
            }
        };
        let invalid = |expected: &str| HeyError::InvalidValue {
            flag: flag.clone(),
            value: value.clone(),
            expected: expected.to_owned(),
        };
        match name {
            "n" => requests = Some(value.parse().map_err(|_| invalid("a whole number of requests"))?),
            "c" => workers = value.parse().map_err(|_| invalid("a whole number of workers"))?,
            "q" => {
                let q: f64 = value.parse().map_err(|_| invalid("requests per second per worker, e.g. 10"))?;
                // NaN is in no range and not 0.
                if q != 0.0 && !(MIN_RATE_PER_WORKER..=MAX_RATE_PER_WORKER).contains(&q) {
                    return Err(invalid(
                        "0 (unlimited) or a rate from 0.000001 to 1000000 requests per second per worker",
                    ));
                }
                rate = (q > 0.0).then_some(q);
            }
            "z" => {
                let d = duration::parse(&value).map_err(|e| invalid(&e.to_string()))?;
                // hey treats -z 0 as "not set".
                duration = (!d.is_zero()).then_some(d);
            }
            "m" => method = value.to_ascii_uppercase(),
            "H" => {
                let (k, v) =
                    parse_header(&value).ok_or_else(|| invalid("a header written as 'Name: value'"))?;
                set_header(&mut custom_headers, k, v);
            }
            "t" => timeout_secs = value.parse().map_err(|_| invalid("whole seconds, 0 for no limit"))?,
            "d" => body = Some(value),
            "T" => content_type = value,
            "A" => accept = Some(value),
            "a" => {
                let (u, p) = value.split_once(':').ok_or_else(|| invalid("username:password"))?;
                basic_auth = Some((u.to_owned(), p.to_owned()));
            }
            "host" => host = Some(value),
            "o" => {
                if value != "csv" {
                    return Err(invalid("csv (the only output type hey has)"));
                }
                // The per-request CSV goes nowhere useful here; the summary is logged instead.
            }
            // hey's GOMAXPROCS knob; the tokio runtime decides here.
            "cpus" => {
                value.parse::<u32>().map_err(|_| invalid("a whole number of CPUs"))?;
            }
            _ => unreachable!("flag list above is exhaustive"),
        }
    }

    let url_arg = url_arg.ok_or(HeyError::MissingUrl)?;
    if let Some(extra) = args.get(i) {
        return Err(HeyError::ExtraArgument(extra.clone()));
    }
    let url = parse_target(&url_arg)?;

    if workers == 0 {
        return Err(HeyError::Invalid("hey -c must be at least 1".into()));
    }
    let stop = match duration {
        Some(d) => Stop::After(d),
        None => {
            let n = requests.unwrap_or(DEFAULT_REQUESTS);
            if n == 0 {
                return Err(HeyError::Invalid("hey -n must be at least 1".into()));
            }
            if n < u64::from(workers) {
                return Err(HeyError::Invalid(format!(
                    "hey -n {n} is less than -c {workers}: every worker needs at least one request"
                )));
            }
            Stop::Requests(n)
        }
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| HeyError::InvalidValue {
        flag: "-m".into(),
        value: method.clone(),
        expected: "an HTTP method such as GET or POST".into(),
    })?;

    let mut headers = vec![("Content-Type".to_owned(), content_type)];
    for (k, v) in custom_headers {
        set_header(&mut headers, k, v);
    }
    if let Some(a) = accept {
        set_header(&mut headers, "Accept".into(), a);
    }

    Ok(HeySpec {
        url,
        stop,
        workers,
        rate_per_worker: rate,
        method,
        headers,
        body,
        request_timeout: (timeout_secs > 0).then(|| Duration::from_secs(timeout_secs)),
        host,
        basic_auth,
        http2,
        disable_keepalive,
        disable_redirects,
    })
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `Name: value` with a token name, as hey's `-H` accepts.
fn parse_header(s: &str) -> Option<(String, String)> {
    let (name, value) = s.split_once(':')?;
    let value = value.trim_start();
    let name_ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (name_ok && !value.is_empty()).then(|| (name.to_owned(), value.to_owned()))
}

/// Replaces a header of the same name (case-insensitively) or appends it.
fn set_header(headers: &mut Vec<(String, String)>, name: String, value: String) {
    match headers.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(&name)) {
        Some(slot) => *slot = (name, value),
        None => headers.push((name, value)),
    }
}

fn parse_target(raw: &str) -> Result<Url, HeyError> {
    let invalid = |why: String| HeyError::InvalidUrl { url: raw.to_owned(), why };
    let url = Url::parse(raw)
        .map_err(|e| invalid(format!("{e}; write it in full, e.g. http://podinfo-canary.test:9898/")))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtester::hey::words::split_words;

    fn parse(line: &str) -> Result<HeySpec, HeyError> {
        let words = split_words(line).unwrap();
        assert_eq!(words[0], "hey");
        parse_hey_args(&words[1..])
    }

    fn header<'a>(spec: &'a HeySpec, name: &str) -> Option<&'a str> {
        spec.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_flagger_tutorial_command() {
        let s = parse("hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/").unwrap();
        assert_eq!(s.url.as_str(), "http://podinfo-canary.test:9898/");
        assert_eq!(s.stop, Stop::After(Duration::from_secs(60)));
        assert_eq!(s.rate_per_worker, Some(10.0));
        assert_eq!(s.workers, 2);
        assert_eq!(s.method, Method::GET);
        assert_eq!(s.request_timeout, Some(Duration::from_secs(20)));
        assert_eq!(s.headers, vec![("Content-Type".to_owned(), "text/html".to_owned())]);
        assert!(!s.http2 && !s.disable_keepalive && !s.disable_redirects);
    }

    #[test]
    fn defaults_are_heys() {
        let s = parse("hey http://a/").unwrap();
        assert_eq!(s.stop, Stop::Requests(200));
        assert_eq!(s.workers, 50);
        assert_eq!(s.rate_per_worker, None);
        assert_eq!(s.body, None);
    }

    #[test]
    fn every_value_flag() {
        let s = parse(
            r#"hey -n 30 -c 3 -q 0.5 -m post -H "X-Api-Key: abc" -H 'X-Two:  two words' -d '{"a":1}' -t 5 \
               -T application/json -A application/xml -a user:pa:ss -host example.com -o csv -cpus 4 \
               https://x.test:8443/p?q=1"#,
        )
        .unwrap();
        assert_eq!(s.stop, Stop::Requests(30));
        assert_eq!(s.workers, 3);
        assert_eq!(s.rate_per_worker, Some(0.5));
        assert_eq!(s.method, Method::POST);
        assert_eq!(header(&s, "x-api-key"), Some("abc"));
        assert_eq!(header(&s, "X-Two"), Some("two words"));
        assert_eq!(header(&s, "Content-Type"), Some("application/json"));
        assert_eq!(header(&s, "Accept"), Some("application/xml"));
        assert_eq!(s.body.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(s.request_timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.basic_auth, Some(("user".into(), "pa:ss".into())));
        assert_eq!(s.host.as_deref(), Some("example.com"));
        assert_eq!(s.url.as_str(), "https://x.test:8443/p?q=1");
    }

    #[test]
    fn equals_form_double_dash_and_bool_flags() {
        let s = parse("hey --z=10s -c=4 --q 2 -h2 -disable-keepalive=true --disable-redirects -disable-compression=false http://a/").unwrap();
        assert_eq!(s.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(s.workers, 4);
        assert_eq!(s.rate_per_worker, Some(2.0));
        assert!(s.http2 && s.disable_keepalive && s.disable_redirects);
        let s = parse("hey -h2=false -disable-keepalive=0 http://a/").unwrap();
        assert!(!s.http2 && !s.disable_keepalive);
    }

    #[test]
    fn rates_from_a_millionth_to_a_million_are_accepted() {
        for (q, want) in [("0.000001", Some(1e-6)), ("1000000", Some(1e6)), ("1e6", Some(1e6)), ("-0", None)]
        {
            assert_eq!(parse(&format!("hey -q {q} http://a/")).unwrap().rate_per_worker, want, "{q}");
        }
        let e = parse("hey -q 1e-20 http://a/").unwrap_err().to_string();
        assert_eq!(
            e,
            "hey flag -q has an invalid value \"1e-20\": expected 0 (unlimited) or a rate from 0.000001 to \
             1000000 requests per second per worker"
        );
    }

    #[test]
    fn z_wins_over_n_and_zero_values_mean_unset() {
        let s = parse("hey -n 5 -c 10 -z 30s http://a/").unwrap();
        assert_eq!(s.stop, Stop::After(Duration::from_secs(30)));
        let s = parse("hey -z 0 -q 0 -t 0 -n 60 http://a/").unwrap();
        assert_eq!(s.stop, Stop::Requests(60));
        assert_eq!(s.rate_per_worker, None);
        assert_eq!(s.request_timeout, None);
    }

    #[test]
    fn custom_headers_override_content_type_and_last_wins() {
        let s = parse("hey -H 'content-type: a/b' -H 'X: 1' -H 'x: 2' http://a/").unwrap();
        assert_eq!(header(&s, "Content-Type"), Some("a/b"));
        assert_eq!(header(&s, "X"), Some("2"));
        assert_eq!(s.headers.len(), 2);
    }

    #[test]
    fn double_dash_ends_flags() {
        let s = parse("hey -n 10 -c 1 -- http://a/").unwrap();
        assert_eq!(s.stop, Stop::Requests(10));
        assert_eq!(s.url.as_str(), "http://a/");
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: &[(&str, HeyError)] = &[
            ("hey -z 1m", HeyError::MissingUrl),
            ("hey", HeyError::MissingUrl),
            ("hey -X http://a/", HeyError::UnknownFlag("-X".into())),
            ("hey -help", HeyError::UnknownFlag("-help".into())),
            ("hey http://a/ -z 1m", HeyError::ExtraArgument("-z".into())),
            ("hey -z", HeyError::MissingValue("-z".into())),
            (
                "hey -n 1 -c 2 http://a/",
                HeyError::Invalid(
                    "hey -n 1 is less than -c 2: every worker needs at least one request".into(),
                ),
            ),
            ("hey -c 0 http://a/", HeyError::Invalid("hey -c must be at least 1".into())),
        ];
        for (line, want) in cases {
            assert_eq!(&parse(line).unwrap_err(), want, "{line}");
        }
    }

    #[test]
    fn invalid_values_are_reported_with_the_flag() {
        for (line, flag) in [
            ("hey -n ten http://a/", "-n"),
            ("hey -c -1 http://a/", "-c"),
            ("hey -q -3 http://a/", "-q"),
            ("hey -q NaN http://a/", "-q"),
            ("hey -q inf http://a/", "-q"),
            ("hey -q 1e-20 http://a/", "-q"),
            ("hey -q 5e-324 http://a/", "-q"),
            ("hey -q 0.00000099 http://a/", "-q"),
            ("hey -q 1000001 http://a/", "-q"),
            ("hey -q 1e300 http://a/", "-q"),
            ("hey -z 10 http://a/", "-z"),
            ("hey -t 1.5 http://a/", "-t"),
            ("hey -H novalue http://a/", "-H"),
            ("hey -H 'bad name: v' http://a/", "-H"),
            ("hey -a nocolon http://a/", "-a"),
            ("hey -o json http://a/", "-o"),
            ("hey -h2=maybe http://a/", "-h2"),
            ("hey -m 'GE T' http://a/", "-m"),
        ] {
            match parse(line) {
                Err(HeyError::InvalidValue { flag: f, .. }) => assert_eq!(f, flag, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn file_and_proxy_flags_are_refused() {
        assert!(matches!(parse("hey -D /etc/passwd http://a/"), Err(HeyError::Unsupported { .. })));
        assert!(matches!(parse("hey -x proxy:3128 http://a/"), Err(HeyError::Unsupported { .. })));
    }

    #[test]
    fn urls_must_be_absolute_http() {
        for url in ["podinfo:9898/", "ftp://a/", "file:///etc/passwd", "http://"] {
            assert!(matches!(parse(&format!("hey {url}")), Err(HeyError::InvalidUrl { .. })), "{url}");
        }
    }

    #[test]
    fn limits() {
        let s = parse("hey -z 2h -c 10 http://a/").unwrap();
        assert_eq!(
            s.check_limits(5, Duration::from_secs(3600)).unwrap_err(),
            HeyError::TooManyWorkers { workers: 10, max: 5 }
        );
        let e = s.check_limits(10, Duration::from_secs(3600)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "hey -z 2h0m0s is longer than the per-command timeout (1h0m0s); shorten -z or raise --timeout"
        );
        assert!(s.check_limits(10, Duration::from_secs(7200)).is_ok());
    }
}
