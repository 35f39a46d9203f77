//! The `flagger.app/v1beta1` API: Canary, MetricTemplate and AlertProvider.
//!
//! Types only. Field names, defaults, enums and phase strings follow Flagger 1.44 so that every
//! manifest written for Flagger keeps working. Rust types are lenient (strings where Flagger has
//! enums) so that one odd stored object never breaks a whole watch; the generated CRD schema is
//! where strictness lives (see `crds/` and `src/api/schema.rs`).

mod alert_provider;
mod canary;
mod istio;
pub mod limits;
mod metric_template;
mod payload;
pub mod schema;
mod status;

pub use alert_provider::*;
pub use canary::*;
pub use istio::*;
pub use metric_template::*;
pub use payload::*;
pub use status::*;

/// API group served by Veer (the same as Flagger's).
pub const GROUP: &str = "flagger.app";
/// API version served by Veer.
pub const VERSION: &str = "v1beta1";
