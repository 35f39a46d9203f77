//! Metric queries: from a Canary's `analysis.metrics[]` entry to a `MetricResult` for the
//! decision core.

pub mod builtin;
mod gofmt;
pub mod prometheus;
pub mod template;
#[cfg(test)]
mod test_server;

pub use builtin::{BuiltinError, BuiltinQuery, Observer, builtin_query, metrics_provider};
pub use prometheus::{ClientError, Credentials, CredentialsError, Endpoint, Prometheus, QueryOutcome};
pub use template::{TemplateContext, TemplateError};
