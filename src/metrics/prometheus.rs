//! A client for the Prometheus HTTP API (`GET /api/v1/query`, instant queries), also used for
//! Thanos, Mimir, VictoriaMetrics and other servers with the same API.
//!
//! Result mapping (flagger-behaviour.md §4.3): a scalar, or a vector's **last** sample, is the value
//! (Flagger uses the last one too, §9.3 #19; which series is "last" is up to the server, so when
//! there are several the outcome says how many and a warning is logged: aggregate the query with
//! `sum(...)` to get one); an empty vector or `NaN` is no data; a range vector, an HTTP error or
//! an unreachable server is an error.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use reqwest::{
    Url,
    header::{HeaderName, HeaderValue},
};
use serde::{Deserialize, de::IgnoredAny};
use thiserror::Error;

use super::builtin::collapse_whitespace;
use crate::analysis::MetricResult;

/// Flagger's timeout for every metrics request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest answer read from a metrics server: 1 MiB. An instant query that returns one
/// series is a few hundred bytes, and even a vector of a few thousand labelled series fits, while
/// a server (each tenant may name their own) can no longer make the controller hold hundreds of
/// megabytes within the timeout. A longer answer is an error; the rest is never read.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How requests authenticate, read from a MetricTemplate's Secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    None,
    /// `Authorization: Bearer <token>` (Secret key `token`).
    Bearer(String),
    /// Basic auth (Secret keys `username` and `password`).
    Basic { username: String, password: String },
}

// Never print secrets, not even in debug logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::Bearer(_) => "Bearer(<redacted>)",
            Credentials::Basic { .. } => "Basic(<redacted>)",
        })
    }
}

/// Why a Secret does not hold usable credentials. `secret` is `<namespace>/<name>`.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error(
        "Secret {secret} has `{present}` but no `{missing}`: basic auth needs both `username` and `password` \
         (or set `token` for a bearer token)"
    )]
    Incomplete { secret: String, present: &'static str, missing: &'static str },
    #[error(
        "Secret {secret} has neither `token` nor `username` and `password`: add them, or remove \
         spec.provider.secretRef from the MetricTemplate"
    )]
    Empty { secret: String },
    #[error("Secret {secret}: key `{key}` is not UTF-8 text")]
    NotText { secret: String, key: &'static str },
}

impl Credentials {
    /// Reads `token`, else `username` + `password`, from a Secret (`data` and `stringData`).
    pub fn from_secret(secret: &Secret) -> Result<Credentials, CredentialsError> {
        let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (k, v) in secret.data.iter().flatten() {
            data.insert(k.clone(), v.0.clone());
        }
        for (k, v) in secret.string_data.iter().flatten() {
            data.insert(k.clone(), v.clone().into_bytes());
        }
        let name = format!(
            "{}/{}",
            secret.metadata.namespace.as_deref().unwrap_or_default(),
            secret.metadata.name.as_deref().unwrap_or_default()
        );
        Credentials::from_data(&name, &data)
    }

    /// Reads credentials from Secret data; `secret` names it in errors. Empty values count as
    /// missing.
    pub fn from_data(
        secret: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Credentials, CredentialsError> {
        let text = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            match data.get(key).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => String::from_utf8(v.clone())
                    .map(Some)
                    .map_err(|_| CredentialsError::NotText { secret: secret.into(), key }),
            }
        };
        if let Some(token) = text("token")? {
            return Ok(Credentials::Bearer(token.trim().to_string()));
        }
        match (text("username")?, text("password")?) {
            (Some(username), Some(password)) => Ok(Credentials::Basic { username, password }),
            (Some(_), None) => Err(CredentialsError::Incomplete {
                secret: secret.into(),
                present: "username",
                missing: "password",
            }),
            (None, Some(_)) => Err(CredentialsError::Incomplete {
                secret: secret.into(),
                present: "password",
                missing: "username",
            }),
            (None, None) => Err(CredentialsError::Empty { secret: secret.into() }),
        }
    }
}

/// Where and how to query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL; `/api/v1/query` is appended to its path.
    pub address: String,
    pub credentials: Credentials,
    /// Extra request headers (`MetricTemplate.spec.provider.headers`).
    pub headers: BTreeMap<String, Vec<String>>,
    pub insecure_skip_verify: bool,
}

impl Endpoint {
    pub fn new(address: impl Into<String>) -> Endpoint {
        Endpoint { address: address.into(), ..Default::default() }
    }
}

/// What one query returned.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryOutcome {
    pub result: MetricResult,
    /// Number of series in a vector result (the value is the last one's).
    pub series: usize,
}

impl QueryOutcome {
    fn error(message: String) -> QueryOutcome {
        QueryOutcome { result: MetricResult::Error(message), series: 0 }
    }
}

/// The client could not be built (TLS setup).
#[derive(Debug, Error)]
#[error("cannot build the HTTP client for metrics queries: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// A Prometheus API client. Cheap to clone; build one per process.
#[derive(Clone, Debug)]
pub struct Prometheus {
    verified: reqwest::Client,
    /// For `insecureSkipVerify` endpoints.
    unverified: reqwest::Client,
    timeout: Duration,
}

impl Prometheus {
    /// A client whose requests time out after `timeout` ([`DEFAULT_TIMEOUT`] in production).
    pub fn new(timeout: Duration) -> Result<Prometheus, ClientError> {
        let build = |insecure: bool| {
            crate::http::client_builder()
                .danger_accept_invalid_certs(insecure)
                .connect_timeout(timeout)
                .build()
        };
        Ok(Prometheus { verified: build(false)?, unverified: build(true)?, timeout })
    }

    /// Runs an instant query. `promql` is whitespace-collapsed before sending. Never fails: every
    /// problem is a [`MetricResult::Error`] naming the server.
    pub async fn query(&self, endpoint: &Endpoint, promql: &str) -> QueryOutcome {
        let promql = collapse_whitespace(promql);
        let mut url = match query_url(&endpoint.address) {
            Ok(url) => url,
            Err(message) => return QueryOutcome::error(message),
        };
        let server = redacted(&url);
        // Userinfo in the address is basic auth (as in Go's HTTP client) unless the Secret gives
        // credentials; either way it leaves the URL, or reqwest would send two Authorization headers.
        let from_url = (!url.username().is_empty()).then(|| Credentials::Basic {
            username: percent_decode(url.username()),
            password: percent_decode(url.password().unwrap_or_default()),
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let credentials = match (&endpoint.credentials, &from_url) {
            (Credentials::None, Some(c)) => c,
            (c, _) => c,
        };
        url.query_pairs_mut().append_pair("query", &promql);
        let client = if endpoint.insecure_skip_verify { &self.unverified } else { &self.verified };
        let mut request = client.get(url).timeout(self.timeout);
        for (name, values) in &endpoint.headers {
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                return QueryOutcome::error(format!(
                    "header name {name:?} (spec.provider.headers) is not a valid HTTP header name"
                ));
            };
            for value in values {
                let Ok(value) = HeaderValue::from_str(value) else {
                    return QueryOutcome::error(format!(
                        "the value of header {name:?} (spec.provider.headers) is not a valid HTTP header value"
                    ));
                };
                request = request.header(header.clone(), value);
            }
        }
        request = match credentials {
            Credentials::None => request,
            Credentials::Bearer(token) => request.bearer_auth(token),
            Credentials::Basic { username, password } => request.basic_auth(username, Some(password)),
        };
        let timeout = self.timeout;
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                format!("Prometheus at {server} did not answer within {}s", timeout.as_secs_f64())
            } else {
                // reqwest's text repeats the whole request URL, query included: the server is
                // named already, and the URL-encoded PromQL would swamp the Event.
                format!("cannot reach Prometheus at {server}: {}", error_chain(&e.without_url()))
            }
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return QueryOutcome::error(failed(e)),
        };
        let status = response.status();
        let body = match crate::http::read_capped(response, MAX_RESPONSE_BYTES).await {
            Ok(b) if b.truncated => {
                return QueryOutcome::error(format!(
                    "Prometheus at {server} answered {status} with more than {MAX_RESPONSE_BYTES} bytes, the limit \
                     for one query; aggregate the query (for example with sum()) so that it returns one series"
                ));
            }
            Ok(b) => b.bytes,
            Err(e) => return QueryOutcome::error(failed(e)),
        };
        let outcome = parse_response(status, &body, &server);
        if outcome.series > 1 {
            tracing::warn!(
                server = %server, query = %promql, series = outcome.series,
                "metric query returned several series; using the last one (aggregate the query, e.g. with sum(), to get one)"
            );
        }
        outcome
    }

    /// Whether the server answers `vector(1)` with 1 (Flagger's availability check).
    pub async fn check_online(&self, endpoint: &Endpoint) -> Result<(), String> {
        match self.query(endpoint, "vector(1)").await.result {
            MetricResult::Value(1.0) => Ok(()),
            MetricResult::Value(v) => Err(format!(
                "Prometheus at {} answered vector(1) with {v}, not 1",
                display_address(&endpoint.address)
            )),
            MetricResult::NoData => Err(format!(
                "Prometheus at {} answered vector(1) with no data",
                display_address(&endpoint.address)
            )),
            MetricResult::Error(e) => Err(e),
        }
    }
}

fn query_url(address: &str) -> Result<Url, String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("no metrics server address is configured".into());
    }
    let mut url = Url::parse(address).map_err(|e| {
        format!("metrics server address {address:?} is not a valid URL ({e}); write it like http://prometheus:9090")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("metrics server address {address:?} must start with http:// or https://"));
    }
    // Keep a path prefix (e.g. Thanos or Mimir behind /prometheus); drop any query string.
    let path = format!("{}/api/v1/query", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The server URL without credentials, query or the API path: what messages show.
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    let path = url.path().trim_end_matches("/api/v1/query").to_string();
    url.set_path(&path);
    url.as_str().trim_end_matches('/').to_string()
}

fn display_address(address: &str) -> String {
    query_url(address).map(|u| redacted(&u)).unwrap_or_else(|_| address.to_string())
}

/// `%XX` sequences of a URL component to bytes (userinfo may be percent-encoded).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Vector(Vec<VectorSample>),
    Scalar(SamplePair),
    Matrix(#[allow(dead_code)] IgnoredAny),
    String(#[allow(dead_code)] IgnoredAny),
}

#[derive(Deserialize)]
struct VectorSample {
    value: SamplePair,
}

/// `[<unix time>, "<value>"]`.
#[derive(Deserialize)]
struct SamplePair(#[allow(dead_code)] IgnoredAny, String);

const BODY_LIMIT: usize = 300;

fn snippet(body: &[u8]) -> String {
    let text = collapse_whitespace(&String::from_utf8_lossy(body));
    if text.chars().count() > BODY_LIMIT {
        format!("{}...", text.chars().take(BODY_LIMIT).collect::<String>())
    } else {
        text
    }
}

fn parse_response(status: reqwest::StatusCode, body: &[u8], server: &str) -> QueryOutcome {
    let parsed: Option<ApiResponse> = serde_json::from_slice(body).ok();
    let api_error = parsed.as_ref().filter(|r| r.status == "error").map(|r| {
        let kind = r.error_type.as_deref().unwrap_or("error");
        format!("{kind}: {}", r.error.as_deref().unwrap_or("(no message)"))
    });
    if status.as_u16() >= 400 {
        let detail = api_error.unwrap_or_else(|| snippet(body));
        return QueryOutcome::error(format!("Prometheus at {server} answered {status}: {detail}"));
    }
    if let Some(detail) = api_error {
        return QueryOutcome::error(format!("Prometheus at {server} rejected the query: {detail}"));
    }
    let Some(ApiResponse { data: Some(data), .. }) = parsed else {
        return QueryOutcome::error(format!(
            "Prometheus at {server} answered {status} with something that is not a query result: {}",
            snippet(body)
        ));
    };
    let (pair, series) = match data {
        ApiData::Vector(samples) => {
            let series = samples.len();
            match samples.into_iter().next_back() {
                Some(last) => (last.value, series),
                None => return QueryOutcome { result: MetricResult::NoData, series: 0 },
            }
        }
        ApiData::Scalar(pair) => (pair, 1),
        ApiData::Matrix(_) => {
            return QueryOutcome::error(
                "query returned a range vector (matrix); a metric query must return one instant value: \
                 remove the bare range selector or wrap it, e.g. sum(rate(x[1m]))"
                    .into(),
            );
        }
        ApiData::String(_) => {
            return QueryOutcome::error(
                "query returned a string; a metric query must return a number".into(),
            );
        }
    };
    let result = match pair.1.parse::<f64>() {
        Ok(v) if v.is_nan() => MetricResult::NoData,
        Ok(v) => MetricResult::Value(v),
        Err(_) => MetricResult::Error(format!(
            "Prometheus at {server} returned a value that is not a number: {:?}",
            pair.1
        )),
    };
    QueryOutcome { result, series }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_server::{TestServer, vector};

    fn client() -> Prometheus {
        Prometheus::new(DEFAULT_TIMEOUT).expect("a client")
    }

    async fn result_of(status: u16, body: &str) -> QueryOutcome {
        let server = TestServer::start(status, body).await;
        client().query(&Endpoint::new(&server.url), "up").await
    }

    fn error_text(outcome: &QueryOutcome) -> &str {
        match &outcome.result {
            MetricResult::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn sends_an_instant_query_with_collapsed_whitespace() {
        let server = TestServer::start(200, &vector(&["99.5"])).await;
        // A path prefix (Thanos, Mimir) is kept.
        let endpoint = Endpoint::new(format!("{}/prom/", server.url));
        let outcome = client().query(&endpoint, "sum(\n  rate(x{a=\"b\"}[1m])\n)  * 100\n").await;
        assert_eq!(outcome, QueryOutcome { result: MetricResult::Value(99.5), series: 1 });
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/prom/api/v1/query");
        assert_eq!(seen[0].query.as_deref(), Some(r#"sum( rate(x{a="b"}[1m]) ) * 100"#));
        assert!(seen[0].headers.get("authorization").is_none());
    }

    #[tokio::test]
    async fn result_mapping() {
        // Several series: the last one, as Flagger does, and the count is reported.
        assert_eq!(
            result_of(200, &vector(&["1", "2", "3"])).await,
            QueryOutcome { result: MetricResult::Value(3.0), series: 3 }
        );
        assert_eq!(result_of(200, &vector(&[])).await.result, MetricResult::NoData);
        assert_eq!(result_of(200, &vector(&["NaN"])).await.result, MetricResult::NoData);
        assert_eq!(result_of(200, &vector(&["+Inf"])).await.result, MetricResult::Value(f64::INFINITY));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.25"]}}"#;
        assert_eq!(result_of(200, scalar).await.result, MetricResult::Value(0.25));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"2"]]}]}}"#;
        assert!(error_text(&result_of(200, matrix).await).starts_with("query returned a range vector"));
        let string = r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#;
        assert!(error_text(&result_of(200, string).await).contains("returned a string"));
        let bad_value = vector(&["abc"]);
        assert!(error_text(&result_of(200, &bad_value).await).contains(r#"not a number: "abc""#));
    }

    #[tokio::test]
    async fn http_errors_carry_status_and_message() {
        let server = TestServer::start(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected <EOF>"}"#,
        )
        .await;
        let outcome = client().query(&Endpoint::new(&server.url), "sum(").await;
        assert_eq!(
            error_text(&outcome),
            format!(
                "Prometheus at {} answered 400 Bad Request: bad_data: 1:5: parse error: unexpected <EOF>",
                server.url
            )
        );
        let long = format!("upstream\n  exploded {}", "x".repeat(1000));
        let e = result_of(503, &long).await;
        let e = error_text(&e);
        assert!(e.contains("answered 503 Service Unavailable: upstream exploded xxx"), "{e}");
        assert!(e.ends_with("...") && e.len() < 450, "the body is trimmed: {e}");
        let e = result_of(200, r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#).await;
        assert!(error_text(&e).ends_with("rejected the query: timeout: query timed out"));
        let e = result_of(200, "<html>login</html>").await;
        assert!(
            error_text(&e)
                .contains("answered 200 OK with something that is not a query result: <html>login</html>")
        );
    }

    #[tokio::test]
    async fn an_answer_longer_than_1_mib_is_an_error_naming_the_limit() {
        let (url, _server) = crate::http::endless_body_server(200).await;
        let started = std::time::Instant::now();
        let outcome = client().query(&Endpoint::new(&url), "up").await;
        // Stopped at the limit, long before the 5 s timeout.
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert_eq!(
            error_text(&outcome),
            format!(
                "Prometheus at {url} answered 200 OK with more than 1048576 bytes, the limit for one query; \
                 aggregate the query (for example with sum()) so that it returns one series"
            )
        );
        // Just under the limit is read as usual.
        let padded = format!("{}{}", vector(&["7"]), " ".repeat(MAX_RESPONSE_BYTES - vector(&["7"]).len()));
        assert_eq!(result_of(200, &padded).await.result, MetricResult::Value(7.0));
    }

    #[tokio::test]
    async fn a_slow_server_times_out_naming_the_address() {
        let server = TestServer::start_delayed(200, &vector(&["1"]), Duration::from_secs(5)).await;
        let quick = Prometheus::new(Duration::from_millis(200)).unwrap();
        let started = std::time::Instant::now();
        let outcome = quick.query(&Endpoint::new(&server.url), "up").await;
        assert!(started.elapsed() < Duration::from_secs(3), "gave up in time");
        assert_eq!(error_text(&outcome), format!("Prometheus at {} did not answer within 0.2s", server.url));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        // A port that was just free: nothing listens there any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let outcome = client().query(&Endpoint::new(format!("{address}/")), "up").await;
        let e = error_text(&outcome);
        assert!(e.starts_with(&format!("cannot reach Prometheus at {address}: ")), "{e}");
        // The server once, and not the request URL with the query.
        assert!(!e.contains("/api/v1/query") && !e.contains("query="), "{e}");
        assert_eq!(e.matches(&address).count(), 1, "{e}");
    }

    #[tokio::test]
    async fn bad_addresses_are_explained() {
        let e = client().query(&Endpoint::new(""), "up").await;
        assert_eq!(error_text(&e), "no metrics server address is configured");
        let e = client().query(&Endpoint::new("prometheus:9090"), "up").await;
        assert!(error_text(&e).contains("must start with http:// or https://"), "{e:?}");
        let e = client().query(&Endpoint::new("http://"), "up").await;
        assert!(error_text(&e).contains("is not a valid URL"), "{e:?}");
    }

    #[tokio::test]
    async fn credentials_and_headers_arrive() {
        let server = TestServer::start(200, &vector(&["1"])).await;
        let headers = BTreeMap::from([
            ("X-Scope-OrgID".to_string(), vec!["tenant-a".to_string()]),
            ("X-Multi".to_string(), vec!["a".to_string(), "b".to_string()]),
        ]);
        let bearer = Endpoint {
            address: server.url.clone(),
            credentials: Credentials::Bearer("s3cret".into()),
            headers: headers.clone(),
            insecure_skip_verify: false,
        };
        let basic = Endpoint {
            // Credentials in the URL never show up in messages.
            address: server.url.replace("http://", "http://u:pw@"),
            credentials: Credentials::Basic { username: "user".into(), password: "pass".into() },
            ..Default::default()
        };
        let in_url = Endpoint::new(server.url.replace("http://", "http://user:p%40ss@"));
        let c = client();
        assert_eq!(c.query(&bearer, "up").await.result, MetricResult::Value(1.0));
        assert_eq!(c.query(&basic, "up").await.result, MetricResult::Value(1.0));
        assert_eq!(c.query(&in_url, "up").await.result, MetricResult::Value(1.0));
        let seen = server.seen();
        assert_eq!(seen[0].header("authorization"), ["Bearer s3cret"]);
        assert_eq!(seen[0].header("x-scope-orgid"), ["tenant-a"]);
        assert_eq!(seen[0].header("x-multi"), ["a", "b"]);
        // The Secret's credentials win over userinfo in the address.
        assert_eq!(seen[1].header("authorization"), ["Basic dXNlcjpwYXNz"]);
        // user:p@ss
        assert_eq!(seen[2].header("authorization"), ["Basic dXNlcjpwQHNz"]);

        let bad = Endpoint {
            headers: BTreeMap::from([("bad header".to_string(), vec!["v".to_string()])]),
            ..Endpoint::new(&server.url)
        };
        assert!(error_text(&c.query(&bad, "up").await).contains(r#"header name "bad header""#));
    }

    #[tokio::test]
    async fn redacts_url_credentials() {
        let outcome = client().query(&Endpoint::new("http://u:pw@127.0.0.1:1/x"), "up").await;
        let e = error_text(&outcome);
        assert!(e.starts_with("cannot reach Prometheus at http://127.0.0.1:1/x: "), "{e}");
        assert!(!e.contains("pw"), "{e}");
    }

    #[tokio::test]
    async fn availability_check() {
        let up = TestServer::start(200, &vector(&["1"])).await;
        assert_eq!(client().check_online(&Endpoint::new(&up.url)).await, Ok(()));
        assert_eq!(up.seen()[0].query.as_deref(), Some("vector(1)"));
        let odd = TestServer::start(200, &vector(&["0"])).await;
        let e = client().check_online(&Endpoint::new(&odd.url)).await.unwrap_err();
        assert_eq!(e, format!("Prometheus at {} answered vector(1) with 0, not 1", odd.url));
        let down = TestServer::start(502, "bad gateway").await;
        assert!(
            client().check_online(&Endpoint::new(&down.url)).await.unwrap_err().contains("502 Bad Gateway")
        );
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn credentials_from_secret_data() {
        assert_eq!(
            Credentials::from_data("ns/s", &data(&[("token", "abc\n"), ("username", "u")])),
            Ok(Credentials::Bearer("abc".into()))
        );
        assert_eq!(
            Credentials::from_data("ns/s", &data(&[("username", "u"), ("password", "p")])),
            Ok(Credentials::Basic { username: "u".into(), password: "p".into() })
        );
        let e = Credentials::from_data("ns/prom-auth", &data(&[("username", "u")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Secret ns/prom-auth has `username` but no `password`: basic auth needs both `username` and `password` \
             (or set `token` for a bearer token)"
        );
        let e =
            Credentials::from_data("ns/prom-auth", &data(&[("password", "p"), ("token", "")])).unwrap_err();
        assert_eq!(
            e,
            CredentialsError::Incomplete {
                secret: "ns/prom-auth".into(),
                present: "password",
                missing: "username"
            }
        );
        let e = Credentials::from_data("ns/prom-auth", &data(&[("other", "x")])).unwrap_err();
        assert_eq!(e, CredentialsError::Empty { secret: "ns/prom-auth".into() });
        assert_eq!(format!("{:?}", Credentials::Bearer("abc".into())), "Bearer(<redacted>)");
    }

    #[test]
    fn credentials_from_a_secret_object() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "prom", "namespace": "monitoring"},
            "data": {"username": "dXNlcg=="}
        }))
        .unwrap();
        assert_eq!(
            Credentials::from_secret(&secret),
            Err(CredentialsError::Incomplete {
                secret: "monitoring/prom".into(),
                present: "username",
                missing: "password"
            })
        );
    }
}
