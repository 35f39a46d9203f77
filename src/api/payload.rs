//! The JSON body Flagger (and Veer) POSTs to webhooks, and that the load tester reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Webhook request body: `{"name","namespace","phase","checksum","metadata"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct WebhookPayload {
    /// Canary name.
    pub name: String,
    /// Canary namespace.
    pub namespace: String,
    /// Phase sent with this call (`Progressing`, `Succeeded`, `Failed`, ...).
    #[serde(default)]
    pub phase: String,
    /// Opaque identifier of the revision and tracked configs under analysis.
    #[serde(default)]
    pub checksum: String,
    /// The webhook's `metadata` (omitted when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}
