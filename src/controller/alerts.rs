//! Alerts decided by the analysis. Delivery through AlertProviders is wired in by the notify
//! module; until then alerts are logged.

use super::{context::Context, observe::Resolved};
use crate::analysis::Severity;

/// Sends an alert without waiting for it: delivery never blocks or fails the analysis.
pub fn send(r: &Resolved, _ctx: &Context, severity: Severity, message: &str, _details: bool) {
    tracing::info!(canary = %r.display(), ?severity, "alert: {message}");
}
