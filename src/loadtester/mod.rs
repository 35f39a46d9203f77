//! veer-loadtester: a webhook service that answers Flagger's load tester API (`/`, `/gate/*`,
//! `/rollback/*`) so Canaries written for Flagger work unchanged, without being a remote shell.
//!
//! - [`hey`]: the built-in load generator for `type: cmd` `hey ...` command lines.
//! - [`shell`]: the policy that keeps every other command off unless the operator allows it.
//! - [`gates`]: durable gate and rollback state (file or ConfigMap).
//! - [`auth`]: the static token and ServiceAccount tokens checked with TokenReviews.
//! - [`router`]: the HTTP API; [`Args`] / [`Config`]: flags and settings.

pub mod auth;
mod config;
pub mod gates;
pub mod hey;
mod metrics;
mod server;
pub mod shell;
pub mod tasks;

pub use config::{
    Args, Config, ConfigError, DEFAULT_GATE_CONFIGMAP, DEFAULT_GATE_FILE, DEFAULT_READ_TIMEOUT,
    GateStoreSpec, NamespaceFilter, SERVICE_ACCOUNT_NAMESPACE_FILE, Token, normalize_go_flags,
};
pub use metrics::Metrics;
pub use server::{router, router_with_reviewer, serve, serve_with};
