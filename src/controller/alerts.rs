//! Alerts decided by the analysis, delivered through the Canary's AlertProviders (or the global
//! Slack / MS Teams settings) in the background: delivery never blocks or fails the analysis.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;

use super::{
    context::{Context, cached},
    observe::Routing,
};
use crate::{
    analysis::Severity,
    api::AlertProvider,
    notify::{Alert, ProviderLookup},
};

/// Looks AlertProviders and their Secrets up in the caches.
struct Caches<'a>(&'a Context);

impl ProviderLookup for Caches<'_> {
    fn provider(&self, namespace: &str, name: &str) -> Option<Arc<AlertProvider>> {
        cached(&self.0.stores.alert_providers, namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        cached(&self.0.stores.secrets, namespace, name)
    }
}

/// Sends an alert without waiting for it. Returns the problems found resolving its receivers
/// (missing provider, Secret or address), for a Warning Event.
pub fn send(r: &Routing, ctx: &Context, severity: Severity, message: &str, details: bool) -> Vec<String> {
    let alert = Alert { canary: &r.canary, severity, message, details, params: &r.params };
    ctx.notifier.alert(&alert, &Caches(ctx)).into_iter().map(|e| e.to_string()).collect()
}
