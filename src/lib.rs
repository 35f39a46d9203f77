//! Veer: a Flagger-compatible progressive-delivery controller for Kubernetes.
//!
//! `api` holds the `flagger.app/v1beta1` types, `analysis` the pure canary state machine, and
//! `revision` the change-detection hashes.

#![forbid(unsafe_code)]

pub mod analysis;
pub mod api;
pub mod http;
pub mod meta;
pub mod revision;
pub mod workload;
