//! The AlertProvider custom resource (`alertproviders.flagger.app`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretReference;

/// AlertProviderSpec defines the desired state of an AlertProvider. Exactly one of `address` and
/// `secretRef` is set.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "AlertProvider",
    namespaced,
    status = "AlertProviderStatus",
    category = "all",
    doc = "AlertProvider is the Schema for the AlertProvider API.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#
)]
#[schemars(extend("oneOf" = [
    {"required": ["type", "address"]},
    {"required": ["type", "secretRef"]}
]))]
pub struct AlertProviderSpec {
    /// Provider type.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = ["slack", "msteams", "discord", "rocket", "gchat"]))]
    pub type_: String,
    /// Channel; default `general`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Bot user name; default `flagger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Incoming webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// HTTP(S) proxy URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Secret with `address` (overrides spec.address) and optional `token`.
    #[serde(default, rename = "secretRef", skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

/// AlertProvider status (unused, kept for compatibility).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct AlertProviderStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<super::CanaryCondition>,
}
