//! JSON bodies of the control API, shared by the server and [`super::client`].

use serde::{Deserialize, Serialize};

/// Body of `PUT /api/istio/{namespace}/{workload}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioSpec {
    /// Synthetic requests per second.
    pub rps: f64,
    /// Fraction of requests answered with 500, 0 to 1.
    pub error_rate: f64,
    /// The p99 (and mean) latency in milliseconds.
    pub latency_ms: f64,
}

/// Body of `PUT /api/nginx/{namespace}/{ingress}`: the canary-served traffic, plus optional
/// traffic served by the primary (no errors, same latency), which the built-in queries must ignore.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NginxSpec {
    pub rps: f64,
    pub error_rate: f64,
    /// The mean (and p99) latency in milliseconds.
    pub latency_ms: f64,
    #[serde(default)]
    pub primary_rps: f64,
}

/// An Istio workload as `GET` returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioView {
    pub namespace: String,
    pub workload: String,
    pub rps: f64,
    pub error_rate: f64,
    /// The effective latency (rounded to a microsecond).
    pub latency_ms: f64,
    /// `istio_requests_total` over both response codes, synthetic and real.
    pub requests_total: f64,
    /// The `response_code="500"` part of it.
    pub errors_total: f64,
    /// Requests received on `/traffic/...`.
    pub real_requests: u64,
}

/// An NGINX ingress as `GET` returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NginxView {
    pub namespace: String,
    pub ingress: String,
    /// Value of the `canary` label on canary-served series.
    pub canary: String,
    pub rps: f64,
    pub error_rate: f64,
    pub latency_ms: f64,
    pub primary_rps: f64,
    /// Canary-served requests, synthetic and real.
    pub requests_total: f64,
    pub errors_total: f64,
    /// Primary-served requests (`canary=""`).
    pub primary_requests_total: f64,
    /// Requests received on `/traffic-nginx/...`.
    pub real_requests: u64,
}

/// Body of every error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
