//! Alerts: the decision core's `Effect::Alert` sent to chat tools, through the AlertProviders of a
//! Canary's `analysis.alerts` or, for Canaries without alerts, the global Slack / MS Teams flags.
//!
//! - `payload`: the JSON bodies of `slack`, `msteams`, `discord`, `rocket` and `gchat` (pure).
//! - `global`: the `--slack-*` / `--msteams-*` receivers of Canaries without alerts.
//! - `resolve`: who receives an alert, at which URL, with which body (pure; AlertProviders and
//!   Secrets come from the controller's caches through [`ProviderLookup`]).
//! - `send`: the HTTP POST; [`Notifier::alert`] never blocks the analysis.
//!
//! Behaviour: flagger-behaviour.md §6.3; where Veer differs, docs/alerts.md.

mod global;
mod payload;
mod resolve;
mod send;

#[cfg(test)]
mod tests;

use kube::ResourceExt;

pub use global::GlobalAlerts;
pub use payload::{ProviderKind, discord_url, gchat_payload, msteams_payload, rocket_payload, slack_payload};
pub use resolve::{Delivery, ProviderLookup, ResolveError, targets};
pub use send::{ClientError, DEFAULT_TIMEOUT, Notifier, SendError};

use crate::{
    analysis::{Params, Severity},
    api::Canary,
};

/// One alert of one Canary: an `Effect::Alert` with what the payloads need from the Canary.
#[derive(Clone, Copy, Debug)]
pub struct Alert<'a> {
    pub canary: &'a Canary,
    pub severity: Severity,
    pub message: &'a str,
    /// Add the Canary's analysis settings as fields (`Target`, `Failed checks threshold`, ...).
    pub details: bool,
    pub params: &'a Params,
}

/// A name/value pair shown under the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub value: String,
}

/// What every provider shows, whatever its format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `<canary>.<namespace>`.
    pub title: String,
    pub text: String,
    pub fields: Vec<Field>,
    pub severity: Severity,
}

impl Message {
    /// The message of an alert; `cluster_name` (`--cluster-name`) adds a `Cluster` field when set.
    pub fn new(alert: &Alert<'_>, cluster_name: &str) -> Message {
        let canary = alert.canary;
        let namespace = canary.namespace().unwrap_or_default();
        let mut fields = Vec::new();
        if !cluster_name.is_empty() {
            fields.push(Field { name: "Cluster", value: cluster_name.to_string() });
        }
        if alert.details {
            let target = &canary.spec.target_ref;
            let p = alert.params;
            fields.extend([
                Field { name: "Target", value: format!("{}/{}.{namespace}", target.kind, target.name) },
                Field { name: "Failed checks threshold", value: p.threshold.to_string() },
                Field { name: "Progress deadline", value: format!("{}s", p.progress_deadline.as_secs()) },
                Field { name: "Traffic routing", value: p.routing_description() },
            ]);
        }
        Message {
            title: format!("{}.{namespace}", canary.name_any()),
            text: alert.message.to_string(),
            fields,
            severity: alert.severity,
        }
    }
}

/// The lowest severity an `analysis.alerts[].severity` value receives; `None` for an unknown value.
/// Empty means `info`, as Flagger's docs say (Flagger itself never alerts then, §9.3 #5).
pub fn entry_severity(value: Option<&str>) -> Option<Severity> {
    match value.unwrap_or("") {
        "" => Some(Severity::Info),
        s => Severity::parse(s),
    }
}

/// Whether an alert entry of severity `entry` receives an alert of severity `alert`: `info` gets
/// everything, `warn` gets warn and error, `error` only errors.
pub fn receives(entry: Severity, alert: Severity) -> bool {
    alert >= entry
}
