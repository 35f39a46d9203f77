//! Bounds on the values of a Canary that meet time, memory or recursion in the controller.
//!
//! The CRD schema enforces each bound at admission (`src/api/schema.rs` builds the rules from these
//! constants), and the controller checks the same bounds again (`crate::analysis::Params::new`),
//! because objects stored under Flagger's CRD, or before an upgrade, never passed Veer's schema. Each
//! bound is far above anything Flagger's docs, tests and users' manifests use (`../shared/compat`:
//! intervals of at most 1m, webhook timeouts of at most 30s) and low enough that no arithmetic
//! on it can overflow. `docs/reliability.md` lists them for users.

use std::time::Duration;

/// `analysis.interval`: the time between steps. A day: a rollout of 10 steps then takes 10 days.
pub const MAX_ANALYSIS_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// `analysis.metrics[].interval`: the query window, written into the query (`[1m]`). 30 days.
pub const MAX_METRIC_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);
/// `analysis.webhooks[].timeout`: one attempt of one webhook. Every webhook of a tick runs inside
/// that Canary's reconcile, so an hour is already far longer than any check should take.
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(3600);
/// `analysis.webhooks[].retries`.
pub const MAX_WEBHOOK_RETRIES: i32 = 10;
/// Length of any duration string (`1h30m`); Go writes the longest valid one in 24 characters.
pub const MAX_DURATION_LENGTH: usize = 32;
/// `analysis.webhooks`: webhooks per Canary.
pub const MAX_WEBHOOKS: usize = 64;
/// `analysis.metrics`: metric checks per Canary.
pub const MAX_METRICS: usize = 64;
/// `analysis.alerts`: alerts per Canary.
pub const MAX_ALERTS: usize = 32;
/// `analysis.match` (A/B conditions) per Canary.
pub const MAX_MATCHES: usize = 64;
/// `analysis.iterations`: checks of an A/B or Blue/Green run.
pub const MAX_ITERATIONS: i32 = 10_000;
/// `analysis.threshold`: failed checks before a rollback.
pub const MAX_THRESHOLD: i32 = 10_000;
/// `spec.progressDeadlineSeconds`: a week.
pub const MAX_PROGRESS_DEADLINE_SECONDS: i32 = 7 * 24 * 3600;
/// Length of a query: an inline `analysis.metrics[].query` or a MetricTemplate's `query` (64 KiB).
/// The rendered query has its own, larger bound (`crate::metrics`).
pub const MAX_QUERY_LENGTH: usize = 64 * 1024;
/// `analysis.metrics[].templateVariables` per metric.
pub const MAX_TEMPLATE_VARIABLES: usize = 64;
/// Length of a URL: webhook `url`, `spec.metricsServer`, a MetricTemplate's `provider.address`.
pub const MAX_URL_LENGTH: usize = 4096;
