//! Veer: a Flagger-compatible progressive-delivery controller for Kubernetes.
//!
//! `api` holds the `flagger.app/v1beta1` types, `analysis` the pure canary state machine,
//! `revision` the change-detection hashes, and `trafficsim` the metrics simulator used by the
//! end-to-end tests.

#![forbid(unsafe_code)]

pub mod analysis;
pub mod api;
pub mod cli;
pub mod http;
pub mod meta;
pub mod revision;
pub mod telemetry;
pub mod trafficsim;
pub mod webhook;
