//! veer-loadtester: a webhook service that answers Flagger's load tester API (`/`, `/gate/*`,
//! `/rollback/*`) so Canaries written for Flagger work unchanged, without being a remote shell.
//!
//! - [`hey`]: the built-in load generator for `type: cmd` `hey ...` command lines.
//! - [`shell`]: the policy that keeps every other command off unless the operator allows it.
//! - [`gates`]: durable gate and rollback state (file or ConfigMap).

pub mod duration;
pub mod gates;
pub mod hey;
pub mod shell;
