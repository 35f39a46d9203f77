//! Tests of the alert module, with shared fixtures: a Canary `podinfo.test`.

mod payload;

use super::Alert;
use crate::{
    analysis::{Params, Settings, Severity},
    api::{Canary, CanaryAlert, CanaryAnalysis, CanarySpec, LocalObjectReference},
};

/// `podinfo.test`, Deployment `podinfo-app`, threshold 5, step 10 max 50, deadline 60s.
fn canary(alerts: Option<Vec<CanaryAlert>>) -> Canary {
    let mut c = Canary::new(
        "podinfo",
        CanarySpec {
            target_ref: LocalObjectReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "podinfo-app".into(),
            },
            progress_deadline_seconds: Some(60),
            analysis: Some(CanaryAnalysis {
                threshold: Some(5),
                step_weight: Some(10),
                max_weight: Some(50),
                alerts,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    c.metadata.namespace = Some("test".into());
    c
}

fn params(c: &Canary) -> Params {
    Params::new(&c.spec, &Settings::default())
}

fn alert<'a>(c: &'a Canary, p: &'a Params, severity: Severity, details: bool) -> Alert<'a> {
    Alert { canary: c, severity, message: "Failed checks threshold reached 5", details, params: p }
}
