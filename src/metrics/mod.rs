//! Metric queries: from a Canary's `analysis.metrics[]` entry to a `MetricResult` for the
//! decision core.

mod gofmt;
pub mod template;

pub use template::{TemplateContext, TemplateError};
