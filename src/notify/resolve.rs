//! Who receives an alert, at which URL, with which body. Pure: AlertProviders and Secrets come from
//! the controller's caches through [`ProviderLookup`], the global settings from the flags.

use std::{fmt, sync::Arc};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use reqwest::Url;
use serde_json::Value;

use super::global::global_targets;
use super::{Alert, GlobalAlerts, Message, ProviderKind, entry_severity, receives};
use crate::api::{AlertProvider, CanaryAlert};

/// Read access to the AlertProviders and Secrets (the controller's caches).
pub trait ProviderLookup {
    /// The AlertProvider `namespace/name`, if it exists.
    fn provider(&self, namespace: &str, name: &str) -> Option<Arc<AlertProvider>>;
    /// The Secret `namespace/name`, if it exists.
    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>>;
}

/// One POST to make.
#[derive(Clone, PartialEq)]
pub struct Delivery {
    /// `<canary>.<namespace>`, for logs.
    pub canary: String,
    /// Who receives it, for logs and errors: `AlertProvider <ns>/<name> (<type>)`, `global Slack
    /// (--slack-url)` or `global MS Teams (--msteams-url)`.
    pub receiver: String,
    pub kind: ProviderKind,
    /// The final URL (Discord's `/slack` suffix included).
    pub url: Url,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub proxy: Option<Url>,
    pub payload: Value,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("canary", &self.canary)
            .field("receiver", &self.receiver)
            .field("kind", &self.kind)
            .field(
                "url",
                &format_args!("{}://{}/<redacted>", self.url.scheme(), self.url.host_str().unwrap_or("")),
            )
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("proxy", &self.proxy.as_ref().map(|_| "<redacted>"))
            .field("payload", &self.payload)
            .finish()
    }
}

/// Why an alert cannot be sent to a receiver. Each names the object and field at fault and what to
/// do: the controller records them as Warning Events on the Canary. URLs are never included (they
/// hold the webhook's credentials).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "Canary {canary} spec.analysis.alerts[{index}] ({alert:?}): severity {value:?} is not one of info, \
         warn, error; fix it (empty means info)"
    )]
    InvalidSeverity { canary: String, index: usize, alert: String, value: String },
    #[error(
        "Canary {canary} spec.analysis.alerts[{index}] ({alert:?}): AlertProvider {provider} not found; \
         create it, or fix providerRef (the namespace defaults to the Canary's)"
    )]
    ProviderNotFound { canary: String, index: usize, alert: String, provider: String },
    #[error(
        "AlertProvider {provider} spec.type {type_:?} is not supported; use one of slack, msteams, discord, \
         rocket, gchat"
    )]
    UnsupportedType { provider: String, type_: String },
    #[error(
        "AlertProvider {provider} spec.secretRef: Secret {secret} not found; create it in the AlertProvider's \
         namespace with the webhook URL under the key `address`"
    )]
    SecretNotFound { provider: String, secret: String },
    #[error(
        "Secret {secret} (spec.secretRef of AlertProvider {provider}) has no key `address`; add the webhook \
         URL under `address`"
    )]
    SecretWithoutAddress { provider: String, secret: String },
    #[error("Secret {secret} (spec.secretRef of AlertProvider {provider}): key `{key}` is not UTF-8 text")]
    NotText { provider: String, secret: String, key: &'static str },
    #[error("AlertProvider {provider} has neither spec.address nor spec.secretRef; set one of them")]
    NoAddress { provider: String },
    #[error("{what} is not a valid http(s) URL ({reason}); fix it")]
    InvalidAddress { what: String, reason: String },
    #[error("{what} is not a valid http(s) proxy URL ({reason}); fix it")]
    InvalidProxy { what: String, reason: String },
}

/// Every receiver of an alert, with its body, or why a receiver cannot get it. A Canary with
/// `analysis.alerts` gets its entries whose severity accepts the alert, in order; a Canary without
/// gets the global Slack and MS Teams receivers (when set), whatever the severity.
pub fn targets(
    alert: &Alert<'_>,
    lookup: &dyn ProviderLookup,
    global: &GlobalAlerts,
) -> Vec<Result<Delivery, ResolveError>> {
    let msg = Message::new(alert, &global.cluster_name);
    let entries = alert.canary.spec.analysis.as_ref().and_then(|a| a.alerts.as_deref()).unwrap_or_default();
    if entries.is_empty() {
        return global_targets(&msg, global);
    }
    let namespace = alert.canary.namespace().unwrap_or_default();
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match entry_severity(entry.severity.as_deref()) {
            None => out.push(Err(ResolveError::InvalidSeverity {
                canary: msg.title.clone(),
                index,
                alert: entry.name.clone(),
                value: entry.severity.clone().unwrap_or_default(),
            })),
            Some(min) if receives(min, alert.severity) => {
                out.push(provider_target(&msg, &namespace, index, entry, lookup))
            }
            Some(_) => {}
        }
    }
    out
}

fn provider_target(
    msg: &Message,
    canary_namespace: &str,
    index: usize,
    entry: &CanaryAlert,
    lookup: &dyn ProviderLookup,
) -> Result<Delivery, ResolveError> {
    let namespace = entry.provider_ref.namespace_or(canary_namespace);
    let name = &entry.provider_ref.name;
    let id = format!("{namespace}/{name}");
    let provider = lookup.provider(namespace, name).ok_or_else(|| ResolveError::ProviderNotFound {
        canary: msg.title.clone(),
        index,
        alert: entry.name.clone(),
        provider: id.clone(),
    })?;
    let spec = &provider.spec;
    let kind = ProviderKind::parse(&spec.type_)
        .ok_or_else(|| ResolveError::UnsupportedType { provider: id.clone(), type_: spec.type_.clone() })?;

    let (address, what, token) = match &spec.secret_ref {
        Some(r) => {
            let secret_id = format!("{namespace}/{}", r.name);
            let secret = lookup.secret(namespace, &r.name).ok_or_else(|| ResolveError::SecretNotFound {
                provider: id.clone(),
                secret: secret_id.clone(),
            })?;
            let text = |key| {
                secret_text(&secret, key).map_err(|()| ResolveError::NotText {
                    provider: id.clone(),
                    secret: secret_id.clone(),
                    key,
                })
            };
            let address = text("address")?.ok_or_else(|| ResolveError::SecretWithoutAddress {
                provider: id.clone(),
                secret: secret_id.clone(),
            })?;
            let what = format!("Secret {secret_id} key `address` (spec.secretRef of AlertProvider {id})");
            (address, what, text("token")?)
        }
        None => {
            let address = non_empty(spec.address.as_deref())
                .ok_or_else(|| ResolveError::NoAddress { provider: id.clone() })?;
            (address.to_string(), format!("AlertProvider {id} spec.address"), None)
        }
    };
    let url = http_url(&address).map_err(|reason| ResolveError::InvalidAddress { what, reason })?;
    let proxy = non_empty(spec.proxy.as_deref())
        .map(|p| {
            http_url(p).map_err(|reason| ResolveError::InvalidProxy {
                what: format!("AlertProvider {id} spec.proxy"),
                reason,
            })
        })
        .transpose()?;
    let channel = non_empty(spec.channel.as_deref()).unwrap_or("general");
    let username = non_empty(spec.username.as_deref()).unwrap_or("flagger");
    Ok(Delivery {
        canary: msg.title.clone(),
        receiver: format!("AlertProvider {id} ({})", kind.as_str()),
        kind,
        url: kind.url(&url),
        token: token.filter(|_| kind.sends_token()),
        proxy,
        payload: kind.payload(msg, channel, username),
    })
}

pub(super) fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// Parses an http(s) URL. The error never contains the URL itself.
pub(super) fn http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| e.to_string())?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// A Secret value as trimmed text (`data`, then `stringData`); `Ok(None)` when absent or empty,
/// `Err` when not UTF-8. Trimmed because `echo url | kubectl create secret` adds a newline.
fn secret_text(secret: &Secret, key: &str) -> Result<Option<String>, ()> {
    let raw = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.as_bytes().to_vec())
        .or_else(|| secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone()));
    match raw {
        None => Ok(None),
        Some(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| ())?;
            Ok(non_empty(Some(&text)).map(str::to_string))
        }
    }
}
