//! Metric queries: from a Canary's `analysis.metrics[]` entry to a `MetricResult` for the
//! decision core.

pub mod builtin;
mod gofmt;
pub mod template;

pub use builtin::{BuiltinError, BuiltinQuery, Observer, builtin_query, metrics_provider};
pub use template::{TemplateContext, TemplateError};
