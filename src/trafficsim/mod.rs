//! The traffic simulator behind the end-to-end tests (`veer-trafficsim`): a Prometheus target that
//! exports Istio-, Linkerd-, NGINX-ingress- and generic-shaped request metrics for named workloads,
//! whose request rate, error rate and latency are set at run time over a small JSON API. The full
//! description (routes, metric shapes, limits) is in `e2e/TRAFFICSIM.md`.
//!
//! Traffic is synthetic: counters are the configured rates integrated over time, piecewise across
//! changes, kept as floats ([`model::Traffic`]). Real requests to `/traffic/...` add to the same
//! counters. The numbers are laid out so that Flagger's built-in queries give the configured
//! values back exactly through Prometheus:
//! * success rate: the 2xx and 5xx counters grow in the exact ratio `1 - errorRate : errorRate`, and
//!   series scraped together share their timestamps, so `rate()` extrapolates both alike;
//! * latency: 1 % of requests at `L` minus 1 µs, 98 % at `L`, 1 % at `L` plus 1 µs, and `L` (with
//!   both tails) made a bucket boundary. Exactly 99 % lie at or below `L`, so
//!   `histogram_quantile(0.99, ...)` lands on the top of that bucket (the Istio, Linkerd and generic
//!   P99), or a hair above it when rounding tips the rank over, and the mean is `L` (NGINX's average).
//!
//! Use [`server::serve`] to run it in-process and [`client::Client`] to drive it.

pub mod api;
pub mod client;
pub mod exposition;
pub mod model;
#[cfg(test)]
mod promql_model;
pub mod server;
pub mod sim;

pub use api::{IstioSpec, IstioView, NginxSpec, NginxView};
pub use client::{Client, ClientError};
