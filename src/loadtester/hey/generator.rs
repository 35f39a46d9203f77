//! The load generator behind the built-in `hey`: `-c` workers, each sending one request at a
//! time, each paced to `-q` requests per second, until `-z` has passed or `-n` requests are done.
//! The whole run is also bounded by the per-command timeout, so it always stops by itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::redirect::Policy;
use thiserror::Error;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until, timeout_at};

use super::histogram::LatencyHistogram;
use super::parse::{HeySpec, MAX_RATE_PER_WORKER, MIN_RATE_PER_WORKER, Stop};
use crate::duration;

/// Sent as (or appended to) the User-Agent, as hey appends its own.
pub const USER_AGENT_TOKEN: &str =
    concat!("veer-loadtester/", env!("CARGO_PKG_VERSION"), " (hey-compatible)");

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response.
    Success,
    /// Any other HTTP status.
    HttpError,
    /// No response: connection refused, reset, TLS failure, `-t` timeout.
    TransportError,
}

/// Sees each completed request as it happens (live metrics).
pub trait RequestObserver: Send + Sync {
    /// Called once per completed request.
    fn observe(&self, outcome: Outcome, latency: Duration);
}

impl RequestObserver for () {
    fn observe(&self, _: Outcome, _: Duration) {}
}

/// Errors that prevent a run from starting.
#[derive(Debug, Error)]
pub enum GeneratorError {
    #[error("could not build the HTTP client for the load run: {0}")]
    Client(#[source] reqwest::Error),
    #[error("hey header {name:?} cannot be sent: {why}; fix the -H/-T/-A/-host value")]
    Header { name: String, why: String },
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Requests that completed (with a response or a transport error).
    pub requests: u64,
    /// 2xx responses.
    pub successes: u64,
    /// Non-2xx responses.
    pub http_errors: u64,
    /// Requests with no response.
    pub transport_errors: u64,
    /// Responses by status code.
    pub status_counts: BTreeMap<u16, u64>,
    /// One transport error, to show in logs.
    pub sample_error: Option<String>,
    /// Requests still in flight when the run's time was up (not counted in `requests`).
    pub abandoned: u64,
    /// Wall time from start to the last worker stopping.
    pub elapsed: Duration,
    /// A `-n` run that the per-command timeout cut short.
    pub timed_out: bool,
    /// Latencies of completed requests.
    pub latency: LatencyHistogram,
}

impl RunReport {
    /// Non-2xx responses plus transport errors.
    pub fn errors(&self) -> u64 {
        self.http_errors + self.transport_errors
    }

    /// Completed requests per second over the run.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.requests as f64 / secs } else { 0.0 }
    }

    /// One line for the logs.
    pub fn summary(&self) -> String {
        let ms =
            |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.2}ms", d.as_secs_f64() * 1e3));
        let codes: Vec<String> = self.status_counts.iter().map(|(c, n)| format!("{c}:{n}")).collect();
        let mut s = format!(
            "{} requests in {} ({:.1}/s), {} errors ({} non-2xx, {} transport), p50 {} p90 {} p99 {} max {}, status [{}]",
            self.requests,
            duration::format(self.elapsed),
            self.rate(),
            self.errors(),
            self.http_errors,
            self.transport_errors,
            ms(self.latency.quantile(0.5)),
            ms(self.latency.quantile(0.9)),
            ms(self.latency.quantile(0.99)),
            ms(self.latency.max()),
            codes.join(" "),
        );
        if self.abandoned > 0 {
            s.push_str(&format!(", {} in flight at the end not counted", self.abandoned));
        }
        if self.timed_out {
            s.push_str(", cut short by the per-command timeout");
        }
        if let Some(e) = &self.sample_error {
            s.push_str(&format!(", e.g. {e}"));
        }
        s
    }
}

#[derive(Default)]
struct WorkerCounts {
    successes: u64,
    http_errors: u64,
    transport_errors: u64,
    status_counts: BTreeMap<u16, u64>,
    sample_error: Option<String>,
    abandoned: u64,
}

/// Everything a worker needs to build its requests.
struct Template {
    client: reqwest::Client,
    spec: HeySpec,
    headers: HeaderMap,
}

/// Runs the load described by `spec`, never for longer than `max_duration`.
pub async fn run(
    spec: &HeySpec,
    max_duration: Duration,
    observer: Arc<dyn RequestObserver>,
) -> Result<RunReport, GeneratorError> {
    let template = Arc::new(build_template(spec)?);
    let start = Instant::now();
    let hard_deadline = start + max_duration;
    let (deadline, quota_total) = match spec.stop {
        Stop::After(d) => (start + d.min(max_duration), None),
        Stop::Requests(n) => (hard_deadline, Some(n)),
    };
    let latency = Arc::new(Mutex::new(LatencyHistogram::default()));
    let mut workers = JoinSet::new();
    for w in 0..u64::from(spec.workers) {
        // Spread -n exactly over the workers (hey drops the remainder of n / c).
        let quota = quota_total.map_or(u64::MAX, |n| {
            let c = u64::from(spec.workers);
            n / c + u64::from(w < n % c)
        });
        let template = template.clone();
        let latency = latency.clone();
        let observer = observer.clone();
        workers.spawn(async move { worker(template, quota, start, deadline, latency, observer).await });
    }
    let mut report = RunReport {
        requests: 0,
        successes: 0,
        http_errors: 0,
        transport_errors: 0,
        status_counts: BTreeMap::new(),
        sample_error: None,
        abandoned: 0,
        elapsed: Duration::ZERO,
        timed_out: false,
        latency: LatencyHistogram::default(),
    };
    while let Some(joined) = workers.join_next().await {
        // A worker only ends by returning; a panic would be a bug worth surfacing loudly.
        let counts = joined.expect("load worker panicked");
        report.successes += counts.successes;
        report.http_errors += counts.http_errors;
        report.transport_errors += counts.transport_errors;
        report.abandoned += counts.abandoned;
        for (code, n) in counts.status_counts {
            *report.status_counts.entry(code).or_default() += n;
        }
        if report.sample_error.is_none() {
            report.sample_error = counts.sample_error;
        }
    }
    report.elapsed = start.elapsed();
    report.requests = report.successes + report.http_errors + report.transport_errors;
    report.timed_out = quota_total.is_some_and(|n| report.requests < n);
    report.latency = std::mem::take(&mut *latency.lock().expect("latency histogram lock poisoned"));
    Ok(report)
}

async fn worker(
    t: Arc<Template>,
    quota: u64,
    start: Instant,
    deadline: Instant,
    latency: Arc<Mutex<LatencyHistogram>>,
    observer: Arc<dyn RequestObserver>,
) -> WorkerCounts {
    let mut counts = WorkerCounts::default();
    // Like hey, the first paced request goes out one period after the start.
    let mut pacer = t.spec.rate_per_worker.map(|q| {
        let period = pacing_period(q);
        let mut i = interval_at(start + period, period);
        // A slow response delays the next request instead of causing a burst to catch up.
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    });
    let mut sent = 0;
    while sent < quota {
        if let Some(p) = pacer.as_mut() {
            tokio::select! {
                _ = p.tick() => {}
                _ = sleep_until(deadline) => break,
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        sent += 1;
        let began = Instant::now();
        let Ok(result) = timeout_at(deadline, send_one(&t)).await else {
            counts.abandoned += 1;
            break;
        };
        let took = began.elapsed();
        let outcome = match result {
            Ok(status) => {
                *counts.status_counts.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    counts.successes += 1;
                    Outcome::Success
                } else {
                    counts.http_errors += 1;
                    Outcome::HttpError
                }
            }
            Err(e) => {
                counts.transport_errors += 1;
                if counts.sample_error.is_none() {
                    counts.sample_error = Some(error_chain(&e));
                }
                Outcome::TransportError
            }
        };
        latency.lock().expect("latency histogram lock poisoned").record(took);
        observer.observe(outcome, took);
    }
    counts
}

/// The time between two requests of a worker paced to `rate` requests per second. The rate is
/// clamped to what `-q` accepts (a `HeySpec` can be built without the parser), so any value gives
/// a period from 1 µs to 1,000,000 s, which a timer can hold.
fn pacing_period(rate: f64) -> Duration {
    let rate = if rate.is_nan() {
        MIN_RATE_PER_WORKER
    } else {
        rate.clamp(MIN_RATE_PER_WORKER, MAX_RATE_PER_WORKER)
    };
    Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::from_micros(1))
}

/// Sends one request and reads the whole response body (as hey does, so connections are reused
/// and the latency includes the body).
async fn send_one(t: &Template) -> Result<u16, reqwest::Error> {
    let mut req = t.client.request(t.spec.method.clone(), t.spec.url.clone()).headers(t.headers.clone());
    if let Some(body) = &t.spec.body {
        req = req.body(body.clone());
    }
    if let Some((user, pass)) = &t.spec.basic_auth {
        req = req.basic_auth(user, Some(pass));
    }
    if let Some(timeout) = t.spec.request_timeout {
        req = req.timeout(timeout);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    resp.bytes().await?;
    Ok(status)
}

fn build_template(spec: &HeySpec) -> Result<Template, GeneratorError> {
    let mut headers = HeaderMap::new();
    let header_err = |name: &str, why: String| GeneratorError::Header { name: name.to_owned(), why };
    for (name, value) in &spec.headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| header_err(name, e.to_string()))?;
        let v = HeaderValue::from_str(value).map_err(|e| header_err(name, e.to_string()))?;
        headers.insert(n, v);
    }
    let ua = match headers.get(USER_AGENT).and_then(|v| v.to_str().ok()) {
        Some(given) => format!("{given} {USER_AGENT_TOKEN}"),
        None => USER_AGENT_TOKEN.to_owned(),
    };
    headers
        .insert(USER_AGENT, HeaderValue::from_str(&ua).map_err(|e| header_err("User-Agent", e.to_string()))?);
    if let Some(host) = &spec.host {
        headers.insert(HOST, HeaderValue::from_str(host).map_err(|e| header_err("Host", e.to_string()))?);
    }
    let mut builder = crate::http::client_builder()
        // hey never verifies certificates (canaries often serve self-signed ones); same here.
        .tls_danger_accept_invalid_certs(true)
        // hey ignores proxy environment variables; so do we, so traffic goes where the URL says.
        .no_proxy()
        .redirect(if spec.disable_redirects { Policy::none() } else { Policy::limited(10) })
        .pool_max_idle_per_host(if spec.disable_keepalive { 0 } else { spec.workers as usize });
    if !spec.http2 {
        builder = builder.http1_only();
    }
    let client = builder.build().map_err(GeneratorError::Client)?;
    Ok(Template { client, spec: spec.clone(), headers })
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtester::hey::{parse_hey_args, split_words};

    #[test]
    fn any_rate_gives_a_period_a_timer_can_hold() {
        let slowest = Duration::from_secs(1_000_000);
        let fastest = Duration::from_micros(1);
        for (rate, want) in [
            (10.0, Duration::from_millis(100)),
            (1e-6, slowest),
            (1e-20, slowest),
            (5e-324, slowest),
            (0.0, slowest),
            (-3.0, slowest),
            (f64::NAN, slowest),
            (f64::NEG_INFINITY, slowest),
            (1e6, fastest),
            (1e300, fastest),
            (f64::INFINITY, fastest),
        ] {
            assert_eq!(pacing_period(rate), want, "{rate}");
        }
    }

    #[tokio::test]
    async fn a_run_with_a_rate_outside_the_parser_range_ends_without_a_panic() {
        // Nothing listens on a port that was just free: requests fail fast.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let words = split_words(&format!("hey -z 10s -c 2 http://127.0.0.1:{port}/")).unwrap();
        for rate in [1e-20, 1e300, f64::NAN] {
            let mut spec = parse_hey_args(&words[1..]).unwrap();
            spec.rate_per_worker = Some(rate);
            let report = run(&spec, Duration::from_millis(300), Arc::new(())).await.unwrap();
            assert!(report.elapsed < Duration::from_secs(3), "{rate}: {:?}", report.elapsed);
            if rate < 1.0 || rate.is_nan() {
                assert_eq!(report.requests, 0, "{rate}: the first request is due in 11.6 days");
            }
        }
    }
}
