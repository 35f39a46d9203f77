//! Sending: a JSON POST per receiver with a bounded timeout. The controller calls
//! [`Notifier::alert`], which returns at once; deliveries run as tasks and failures are logged,
//! so a slow or broken chat service never delays or fails an analysis.

use std::{sync::Arc, time::Duration};

use reqwest::{Proxy, StatusCode, header::AUTHORIZATION};
use tokio::task::JoinHandle;

use super::{Alert, Delivery, GlobalAlerts, ProviderLookup, ResolveError, targets};

/// Flagger's timeout for one alert request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest error text kept from a response body.
const MAX_BODY: usize = 512;

/// Sends alerts. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    client: reqwest::Client,
    timeout: Duration,
    global: Arc<GlobalAlerts>,
}

/// The HTTP client could not be built (TLS setup).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for alerts: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// Why one delivery failed. Logged; never fails an analysis.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("alert to {receiver} rejected: HTTP {status}{body}", body = if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status { receiver: String, status: StatusCode, body: String },
    #[error("alert to {receiver} got no answer within {after:?}; check that the service is reachable")]
    Timeout { receiver: String, after: Duration },
    #[error("alert to {receiver} failed: {reason}")]
    Request { receiver: String, reason: String },
    #[error("alert to {receiver}: cannot use its proxy: {reason}")]
    Proxy { receiver: String, reason: String },
}

impl Notifier {
    /// A notifier with the global settings and the 5 s timeout.
    pub fn new(global: GlobalAlerts) -> Result<Notifier, ClientError> {
        Ok(Notifier {
            client: crate::http::client_builder().build()?,
            timeout: DEFAULT_TIMEOUT,
            global: Arc::new(global),
        })
    }

    /// The same notifier with another request timeout (tests).
    pub fn with_timeout(mut self, timeout: Duration) -> Notifier {
        self.timeout = timeout;
        self
    }

    pub fn global(&self) -> &GlobalAlerts {
        &self.global
    }

    /// Sends an alert to every receiver without waiting, and returns why some receivers cannot
    /// get it (missing AlertProvider, Secret, address...) for the caller to report. Must be called
    /// within a Tokio runtime.
    pub fn alert(&self, alert: &Alert<'_>, lookup: &dyn ProviderLookup) -> Vec<ResolveError> {
        let mut errors = Vec::new();
        for target in targets(alert, lookup, &self.global) {
            match target {
                Ok(delivery) => drop(self.send(delivery)),
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Delivers in a task, logging the outcome. Dropping the handle does not cancel the task.
    pub fn send(&self, delivery: Delivery) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            match this.deliver(&delivery).await {
                Ok(()) => {
                    tracing::debug!(canary = %delivery.canary, receiver = %delivery.receiver, "alert sent")
                }
                Err(e) => tracing::warn!(canary = %delivery.canary, error = %e, "alert not delivered"),
            }
        })
    }

    /// POSTs one delivery: success is any 2xx answer within the timeout.
    pub async fn deliver(&self, d: &Delivery) -> Result<(), SendError> {
        let client = match &d.proxy {
            None => self.client.clone(),
            // Alerts are rare; a client per proxied request keeps no state to invalidate.
            Some(proxy) => Proxy::all(proxy.clone())
                .and_then(|p| crate::http::client_builder().proxy(p).build())
                .map_err(|e| SendError::Proxy { receiver: d.receiver.clone(), reason: root_cause(e) })?,
        };
        let mut request = client.post(d.url.clone()).json(&d.payload).timeout(self.timeout);
        if let Some(token) = &d.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = request.send().await.map_err(|e| self.request_error(d, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // At most ERROR_BODY_BYTES of it: a receiver cannot make the controller hold more.
        let body = crate::http::read_capped(response, crate::http::ERROR_BODY_BYTES)
            .await
            .map(|b| b.text())
            .unwrap_or_default();
        Err(SendError::Status { receiver: d.receiver.clone(), status, body: trim_body(&body) })
    }

    fn request_error(&self, d: &Delivery, e: reqwest::Error) -> SendError {
        if e.is_timeout() {
            SendError::Timeout { receiver: d.receiver.clone(), after: self.timeout }
        } else {
            SendError::Request { receiver: d.receiver.clone(), reason: root_cause(e) }
        }
    }
}

fn trim_body(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(MAX_BODY) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

/// The innermost cause. Without the URL that reqwest adds: webhook URLs hold credentials.
fn root_cause(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut cause: &(dyn std::error::Error + 'static) = &e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
