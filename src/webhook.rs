//! The webhook client: Flagger's payload POSTed as JSON, success only for HTTP 200–202, a timeout
//! per attempt and retries with exponential backoff on connection errors, 429 and 5xx. With
//! [`WebhookAuth`], a bearer token goes to the allowed hosts only ([`auth`]).
//!
//! Everything a Canary author sets is bounded at run time too, since stored Canaries may predate
//! the CRD's bounds: at most [`MAX_RETRIES`] retries, a per-attempt timeout of at most
//! [`MAX_TIMEOUT`], at most [`MAX_CALL_TIME`] for a whole call, and at most
//! [`crate::http::ERROR_BODY_BYTES`] of an answer read.

mod auth;
mod events;

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use reqwest::{StatusCode, header::RETRY_AFTER};
use tokio::time::Instant;

use crate::{
    analysis::HookResult,
    api::{CanaryWebhook, WebhookPayload, limits},
};

use auth::Bearer;
pub use auth::{AuthError, HostEntry, REFRESH as TOKEN_REFRESH, WebhookAuth};
pub use events::{EventCall, QueueError};

/// Default per-attempt timeout of a webhook.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest error text kept from a response body.
const MAX_BODY: usize = 512;
/// The most retries of one call ([`limits::MAX_WEBHOOK_RETRIES`], which the CRD enforces). A
/// reconcile waits for its hooks; with the backoff capped at 30 s, ten retries already keep trying
/// for minutes, and more only delay a rollback.
pub const MAX_RETRIES: u32 = limits::MAX_WEBHOOK_RETRIES as u32;
/// The longest per-attempt timeout ([`limits::MAX_WEBHOOK_TIMEOUT`], which the CRD enforces): the
/// default timeout of a load test run by the load tester (`--timeout`), the longest thing a hook
/// is expected to wait for.
pub const MAX_TIMEOUT: Duration = limits::MAX_WEBHOOK_TIMEOUT;
/// The longest one call may take, all attempts and waits together: 1 hour, the longest single
/// attempt. A hook holds one of the controller's reconcile slots while it runs, so
/// `retries × timeout` must not add up to days.
pub const MAX_CALL_TIME: Duration = MAX_TIMEOUT;

/// Calls webhooks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WebhookClient {
    verified: reqwest::Client,
    unverified: reqwest::Client,
    /// First backoff between attempts (1 s; shorter in tests).
    first_backoff: Duration,
    /// The bearer token and the hosts it may go to; `None`: no headers, as in Flagger.
    auth: Option<Arc<WebhookAuth>>,
    /// The longest one call may take ([`MAX_CALL_TIME`]; shorter in tests).
    max_call_time: Duration,
    /// Event webhook calls waiting, per Canary ([`events`]).
    events: Arc<events::EventQueues>,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the webhook HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl WebhookClient {
    pub fn new() -> Result<Self, ClientError> {
        Ok(WebhookClient {
            verified: crate::http::client_builder().build()?,
            unverified: crate::http::client_builder().danger_accept_invalid_certs(true).build()?,
            first_backoff: Duration::from_secs(1),
            auth: None,
            max_call_time: MAX_CALL_TIME,
            events: Default::default(),
        })
    }

    /// The same client sending a bearer token to some hosts.
    pub fn with_auth(mut self, auth: Option<WebhookAuth>) -> Self {
        self.auth = auth.map(Arc::new);
        self
    }

    /// The same client with the token of `--webhook-token-file` for the `--webhook-token-hosts`
    /// (nothing changes when neither is set); reads the file now.
    pub async fn with_token_file(self, file: Option<&Path>, hosts: &[String]) -> Result<Self, ClientError> {
        Ok(self.with_auth(WebhookAuth::from_flags(file, hosts).await?))
    }

    /// The same client with another first backoff (tests).
    pub fn with_first_backoff(mut self, d: Duration) -> Self {
        self.first_backoff = d;
        self
    }

    /// The same client with another limit on the time of one call (tests).
    pub fn with_max_call_time(mut self, d: Duration) -> Self {
        self.max_call_time = d;
        self
    }

    /// Calls a webhook of a Canary: `Passed` for HTTP 200–202, otherwise `Failed` with the reason.
    pub async fn call(&self, hook: &CanaryWebhook, payload: &WebhookPayload) -> HookResult {
        let timeout = hook_timeout(hook);
        let retries = hook_retries(hook);
        let client = if hook.disable_tls.unwrap_or(false) { &self.unverified } else { &self.verified };
        match self.post(client, &hook.url, payload, timeout, retries).await {
            Ok(()) => HookResult::Passed,
            Err(e) => HookResult::Failed(e),
        }
    }

    /// Sends an event to an event webhook (`type: event` or `--event-webhook`) with the hook's
    /// timeout, retries, TLS setting and `metadata`, where the event's own keys win, as in
    /// Flagger. Failures are returned for logging only.
    pub async fn send_event(
        &self,
        hook: &CanaryWebhook,
        payload: &WebhookPayload,
        message: &str,
        warning: bool,
        unix_millis: i64,
    ) -> Result<(), String> {
        let mut payload = payload.clone();
        let mut metadata = hook.metadata.clone().unwrap_or_default();
        metadata.extend(BTreeMap::from([
            ("eventMessage".to_string(), message.to_string()),
            ("eventType".to_string(), if warning { "Warning" } else { "Normal" }.to_string()),
            ("timestamp".to_string(), unix_millis.to_string()),
        ]));
        payload.metadata = Some(metadata);
        let client = if hook.disable_tls.unwrap_or(false) { &self.unverified } else { &self.verified };
        self.post(client, &hook.url, &payload, hook_timeout(hook), hook_retries(hook)).await
    }

    /// The bearer token for `url`, if it may have one.
    async fn token_for(&self, url: &str) -> Option<Arc<str>> {
        match &self.auth {
            Some(auth) => auth.token_for(url).await,
            None => None,
        }
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        url: &str,
        payload: &WebhookPayload,
        timeout: Duration,
        retries: u32,
    ) -> Result<(), String> {
        let token = self.token_for(url).await;
        let deadline = Instant::now() + self.max_call_time;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The last attempt gets only what is left of the call's time.
            let timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
            let (retriable, error, retry_after) =
                match client.post(url).bearer(token.as_deref()).json(payload).timeout(timeout).send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        if (200..=202).contains(&status.as_u16()) {
                            return Ok(());
                        }
                        let retry_after = resp
                            .headers()
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                        let body = crate::http::read_capped(resp, crate::http::ERROR_BODY_BYTES)
                            .await
                            .map(|b| b.text())
                            .unwrap_or_default();
                        let retriable = status == StatusCode::TOO_MANY_REQUESTS
                            || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED);
                        (retriable, describe_status(status, &body), retry_after)
                    }
                    Err(e) if e.is_timeout() => {
                        (true, format!("POST {url} timed out after {timeout:?}"), None)
                    }
                    Err(e) => (true, format!("POST {url} failed: {}", root_cause(&e)), None),
                };
            if !retriable || attempt > retries {
                return Err(if retries > 0 {
                    format!("{error} (giving up after {attempt} attempt(s))")
                } else {
                    error
                });
            }
            let backoff = self.first_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_BACKOFF);
            let wait = retry_after.map_or(backoff, |r| r.min(MAX_BACKOFF));
            if Instant::now() + wait >= deadline {
                return Err(format!(
                    "{error} (giving up after {attempt} attempt(s): another would pass the limit of {} for one \
                     webhook call)",
                    crate::duration::format(self.max_call_time)
                ));
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// The per-attempt timeout of a hook: its `timeout`, or 10 s; at most [`MAX_TIMEOUT`].
pub fn hook_timeout(hook: &CanaryWebhook) -> Duration {
    hook.timeout
        .as_deref()
        .and_then(|t| crate::duration::parse(t).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_TIMEOUT)
        .min(MAX_TIMEOUT)
}

/// The retries of a hook after a failed attempt: its `retries`, from 0 to [`MAX_RETRIES`].
pub fn hook_retries(hook: &CanaryWebhook) -> u32 {
    hook.retries.map_or(0, |r| r.clamp(0, MAX_RETRIES as i32) as u32)
}

fn describe_status(status: StatusCode, body: &str) -> String {
    let body = body.trim();
    let body = match body.char_indices().nth(MAX_BODY) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    };
    if body.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {body}") }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::{Json, Router, extract::State, http::StatusCode as Code, routing::post};

    use super::*;

    struct Server {
        url: String,
        calls: Arc<AtomicUsize>,
        bodies: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    }

    /// A webhook receiver answering with the given statuses in turn (the last one repeats).
    async fn server(statuses: Vec<u16>, delay: Duration) -> Server {
        let calls = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let state = (calls.clone(), bodies.clone(), Arc::new(statuses), delay);
        type S = (Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<serde_json::Value>>>, Arc<Vec<u16>>, Duration);
        async fn handle(
            State((calls, bodies, statuses, delay)): State<S>,
            Json(body): Json<serde_json::Value>,
        ) -> (Code, String) {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            bodies.lock().unwrap().push(body);
            tokio::time::sleep(delay).await;
            let status = statuses[n.min(statuses.len() - 1)];
            (Code::from_u16(status).unwrap(), format!("answer {n}"))
        }
        let app = Router::new().route("/hook", post(handle)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server { url, calls, bodies }
    }

    fn hook(url: &str) -> CanaryWebhook {
        CanaryWebhook { name: "h".into(), url: url.into(), ..Default::default() }
    }

    fn payload() -> WebhookPayload {
        WebhookPayload {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: "Progressing".into(),
            checksum: "abc".into(),
            metadata: Some(BTreeMap::from([("cmd".into(), "hey".into())])),
        }
    }

    fn client() -> WebhookClient {
        WebhookClient::new().unwrap().with_first_backoff(Duration::from_millis(10))
    }

    #[tokio::test]
    async fn success_is_200_to_202_only() {
        for (status, passed) in
            [(200, true), (201, true), (202, true), (203, false), (204, false), (403, false)]
        {
            let s = server(vec![status], Duration::ZERO).await;
            let r = client().call(&hook(&s.url), &payload()).await;
            assert_eq!(r == HookResult::Passed, passed, "HTTP {status}: {r:?}");
        }
    }

    #[tokio::test]
    async fn payload_is_flaggers() {
        let s = server(vec![200], Duration::ZERO).await;
        client().call(&hook(&s.url), &payload()).await;
        let body = s.bodies.lock().unwrap()[0].clone();
        assert_eq!(
            body,
            serde_json::json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "abc", "metadata": {"cmd": "hey"}})
        );
    }

    #[tokio::test]
    async fn failures_carry_the_response_body() {
        let s = server(vec![403], Duration::ZERO).await;
        let r = client().call(&hook(&s.url), &payload()).await;
        assert_eq!(r, HookResult::Failed("HTTP 403 Forbidden: answer 0".into()));
    }

    #[tokio::test]
    async fn retries_on_5xx_and_429_but_not_4xx() {
        let s = server(vec![503, 429, 200], Duration::ZERO).await;
        let mut h = hook(&s.url);
        h.retries = Some(3);
        assert_eq!(client().call(&h, &payload()).await, HookResult::Passed);
        assert_eq!(s.calls.load(Ordering::SeqCst), 3);

        let s = server(vec![400, 200], Duration::ZERO).await;
        let mut h = hook(&s.url);
        h.retries = Some(3);
        assert!(matches!(client().call(&h, &payload()).await, HookResult::Failed(_)));
        assert_eq!(s.calls.load(Ordering::SeqCst), 1, "4xx is final");

        let s = server(vec![500], Duration::ZERO).await;
        let mut h = hook(&s.url);
        h.retries = Some(2);
        let r = client().call(&h, &payload()).await;
        assert_eq!(s.calls.load(Ordering::SeqCst), 3);
        assert!(
            matches!(r, HookResult::Failed(ref e) if e.contains("giving up after 3 attempt(s)")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_hook_times_out() {
        let s = server(vec![200], Duration::from_secs(5)).await;
        let mut h = hook(&s.url);
        h.timeout = Some("200ms".into());
        let r = client().call(&h, &payload()).await;
        assert!(matches!(r, HookResult::Failed(ref e) if e.contains("timed out")), "{r:?}");
    }

    #[tokio::test]
    async fn unreachable_hooks_fail_with_the_cause() {
        // Bind and drop a listener so that the port is closed.
        let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let r = client().call(&hook(&format!("http://127.0.0.1:{port}/")), &payload()).await;
        assert!(matches!(r, HookResult::Failed(ref e) if e.contains("POST http://127.0.0.1")), "{r:?}");
    }

    #[tokio::test]
    async fn events_carry_message_type_and_time() {
        let s = server(vec![200], Duration::ZERO).await;
        let mut h = hook(&s.url);
        h.metadata =
            Some(BTreeMap::from([("cmd".into(), "hey".into()), ("eventType".into(), "mine".into())]));
        client()
            .send_event(&h, &payload(), "Advance podinfo.test canary weight 10", false, 1700000000000)
            .await
            .unwrap();
        let body = s.bodies.lock().unwrap()[0].clone();
        assert_eq!(body["metadata"]["eventMessage"], "Advance podinfo.test canary weight 10");
        assert_eq!(body["metadata"]["eventType"], "Normal");
        assert_eq!(body["metadata"]["timestamp"], "1700000000000");
        assert_eq!(body["metadata"]["cmd"], "hey");
    }

    #[tokio::test]
    async fn events_use_the_hooks_retries() {
        let s = server(vec![503, 503, 200], Duration::ZERO).await;
        let mut h = hook(&s.url);
        assert!(client().send_event(&h, &payload(), "m", true, 0).await.is_err(), "no retries by default");
        h.retries = Some(1);
        client().send_event(&h, &payload(), "m", true, 0).await.unwrap();
        assert_eq!(s.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_stop_at_10() {
        let s = server(vec![500], Duration::ZERO).await;
        let mut h = hook(&s.url);
        h.retries = Some(i32::MAX);
        let fast = WebhookClient::new().unwrap().with_first_backoff(Duration::from_millis(1));
        let r = fast.call(&h, &payload()).await;
        assert_eq!(s.calls.load(Ordering::SeqCst), 11);
        assert!(
            matches!(r, HookResult::Failed(ref e) if e.contains("giving up after 11 attempt(s)")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_call_ends_within_its_time_limit_whatever_the_retries() {
        let s = server(vec![503], Duration::ZERO).await;
        let mut h = hook(&s.url);
        h.retries = Some(10);
        let client = WebhookClient::new()
            .unwrap()
            .with_first_backoff(Duration::from_millis(100))
            .with_max_call_time(Duration::from_millis(500));
        let started = std::time::Instant::now();
        let r = client.call(&h, &payload()).await;
        // Attempts at 0, 100 and 300 ms; the next would start at 700 ms, past the limit.
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        assert_eq!(s.calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            r,
            HookResult::Failed(
                "HTTP 503 Service Unavailable: answer 2 (giving up after 3 attempt(s): another would pass the \
                 limit of 500ms for one webhook call)"
                    .into()
            )
        );
        // A slow hook's last attempt gets only what is left of the time.
        let slow = server(vec![200], Duration::from_secs(5)).await;
        let mut h = hook(&slow.url);
        h.timeout = Some("1h".into());
        let started = std::time::Instant::now();
        let r = client.call(&h, &payload()).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(matches!(r, HookResult::Failed(ref e) if e.contains("timed out")), "{r:?}");
    }

    #[tokio::test]
    async fn an_endless_error_body_is_cut_and_the_call_ends_at_once() {
        let (url, _server) = crate::http::endless_body_server(500).await;
        let mut h = hook(&url);
        h.timeout = Some("30s".into());
        let started = std::time::Instant::now();
        let r = client().call(&h, &payload()).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let want = format!("HTTP 500 Internal Server Error: {}…", "x".repeat(MAX_BODY));
        assert_eq!(r, HookResult::Failed(want));
    }

    #[test]
    fn retries_and_timeouts_are_clamped() {
        let with = |retries: Option<i32>, timeout: Option<&str>| CanaryWebhook {
            retries,
            timeout: timeout.map(Into::into),
            ..hook("x")
        };
        assert_eq!(hook_retries(&with(None, None)), 0);
        assert_eq!(hook_retries(&with(Some(-5), None)), 0);
        assert_eq!(hook_retries(&with(Some(3), None)), 3);
        assert_eq!(hook_retries(&with(Some(10), None)), 10);
        assert_eq!(hook_retries(&with(Some(11), None)), MAX_RETRIES);
        assert_eq!(hook_retries(&with(Some(i32::MAX), None)), MAX_RETRIES);
        assert_eq!(hook_timeout(&with(None, Some("1h"))), MAX_TIMEOUT);
        assert_eq!(hook_timeout(&with(None, Some("59m59s"))), Duration::from_secs(3599));
        assert_eq!(hook_timeout(&with(None, Some("100000h"))), MAX_TIMEOUT);
    }

    #[test]
    fn default_timeout() {
        assert_eq!(hook_timeout(&hook("x")), DEFAULT_TIMEOUT);
        let mut h = hook("x");
        h.timeout = Some("30s".into());
        assert_eq!(hook_timeout(&h), Duration::from_secs(30));
    }
}
