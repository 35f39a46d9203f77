//! The MetricTemplate custom resource (`metrictemplates.flagger.app`).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// MetricTemplateSpec defines the desired state of a MetricTemplate.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "MetricTemplate",
    namespaced,
    status = "MetricTemplateStatus",
    category = "all",
    doc = "MetricTemplate is the Schema for the MetricTemplates API.",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider.type"}"#
)]
pub struct MetricTemplateSpec {
    /// Where the query runs.
    pub provider: MetricProvider,
    /// The query, a Go text/template (`{{ namespace }}`, `{{ target }}`, `{{ interval }}`,
    /// `{{ variables.<key> }}`, ...).
    #[schemars(length(max = super::limits::MAX_QUERY_LENGTH))]
    pub query: String,
}

/// The metrics backend of a MetricTemplate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    /// Backend type. Veer runs `prometheus` queries; the other types are reported as unsupported.
    #[serde(rename = "type")]
    #[schemars(extend("enum" = [
        "prometheus", "influxdb", "datadog", "externalmetrics", "stackdriver", "cloudwatch",
        "newrelic", "graphite", "dynatrace", "keptn", "splunk"
    ]))]
    pub type_: String,
    /// API address of the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::limits::MAX_URL_LENGTH))]
    pub address: Option<String>,
    /// Headers added to every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// Secret (in the template's namespace) holding credentials: `token`, or `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
    /// Region (cloud providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// A Secret in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct SecretReference {
    /// Name of the Secret.
    pub name: String,
}

/// MetricTemplate status (unused, kept for compatibility).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct MetricTemplateStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<super::CanaryCondition>,
}
