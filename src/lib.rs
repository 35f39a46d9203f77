//! Veer: a Flagger-compatible progressive-delivery controller for Kubernetes.
//!
//! - `app`: the composition root of `veer controller` (flags to configuration, wiring); read
//!   `docs/architecture.md` for the path from a watch event to a write.
//! - `api`: the `flagger.app/v1beta1` types and the CRD generation.
//! - `analysis`: the canary state machine, a pure function.
//! - `controller`: the watches, caches, reconcile and its writes, around `analysis`.
//! - `metrics`: metric queries (templates, built-in PromQL, the Prometheus client).
//! - `router`: the Services and routing objects (Istio, NGINX) as pure builders, and the router
//!   registry (`Router`).
//! - `workload`: the primary workload, tracked configs, readiness and scaling as pure builders.
//! - `notify`: alerts to Slack, MS Teams, Discord, Rocket.Chat and Google Chat.
//! - `webhook`: the webhook client; `revision`: change-detection hashes; `meta`: shared names.
//! - `cli`, `telemetry`, `signal`, `http`, `duration`: flags, logs and self-metrics, shutdown on
//!   SIGTERM/SIGINT, the HTTP client setup, Go durations.
//! - `inspect`: `veer status`, a Canary's state one line per change.
//! - `failpoint`: named places where a debug build can be made to fail (for the end-to-end tests).
//! - `fixtures` (unit tests only): shared test objects, a Canary builder.
//! - `loadtester`: the Flagger-compatible load tester (`veer-loadtester`).
//! - `trafficsim`: the metrics simulator used by the end-to-end tests.
//!
//! Unsafe code is forbidden in every target (Cargo.toml, `[lints.rust]`).

pub mod actions;
pub mod analysis;
pub mod api;
pub mod app;
pub mod cli;
pub mod controller;
pub mod convert;
pub mod dashboard;
pub mod duration;
pub mod failpoint;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod http;
pub mod inspect;
pub mod loadtester;
pub mod meta;
pub mod metrics;
pub mod notify;
pub mod revision;
pub mod router;
pub mod signal;
pub mod telemetry;
pub mod trafficsim;
pub mod wait;
pub mod webhook;
pub mod workload;
