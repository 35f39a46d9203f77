//! The workload layer: pure builders and evaluators for the target workload (Deployment or
//! DaemonSet), its `-primary` copy, the tracked ConfigMaps/Secrets and the primary HPA
//! (`flagger-behaviour.md` §2.4–2.8, §2.14–2.16, §10).
//!
//! Nothing here talks to the API server or reads a clock: the controller reads objects from its
//! caches, passes them (and `now`) in, and applies what comes back. Generated objects are complete
//! desired states (fit for server-side apply); scaling is expressed as JSON merge patches (see
//! [`scale_up_patch`]). Choices where Flagger's behaviour is a quirk are listed in
//! `docs/workload.md`.

mod configs;
mod error;
mod hpa;
mod primary;
mod readiness;
mod scale;
mod selector;
mod template;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment},
        core::v1::PodTemplateSpec,
    },
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};

use crate::analysis::TargetKind;

pub use configs::{
    ConfigId, ConfigKind, ConfigRef, TrackedConfigs, config_refs, is_tracked_secret_type, primary_config_map,
    primary_owner_references, primary_secret, track_configs, tracking_disabled,
};
pub use error::WorkloadError;
pub use hpa::{hpa_ref, primary_hpa};
pub use primary::{PrimaryContext, primary_daemon_set, primary_deployment};
pub use readiness::{Role, daemon_set_readiness, deployment_readiness};
pub use scale::{
    hpa_min_replicas, is_scaled_up, revert_patch, scale_to_zero_patch, scale_up_patch, scale_up_replicas,
};
pub use selector::{Selector, selector};
pub use template::{TemplateMapping, primary_revision, target_revision, template_revision};

/// Suffix of every generated primary object (`<target>-primary`, `<config>-primary`, `<hpa>-primary`).
pub const PRIMARY_SUFFIX: &str = "-primary";

/// The name of the primary copy of an object.
pub fn primary_name(name: &str) -> String {
    format!("{name}{PRIMARY_SUFFIX}")
}

/// Controller-wide settings of the workload layer (Flagger's flags of the same meaning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadSettings {
    /// `--selector-labels`: selector keys, in order of preference.
    pub selector_labels: Vec<String>,
    /// `--include-label-prefix`: label prefixes copied to generated objects (`*` = all).
    pub include_label_prefixes: Vec<String>,
    /// `--enable-config-tracking`.
    pub config_tracking: bool,
}

impl Default for WorkloadSettings {
    fn default() -> Self {
        WorkloadSettings {
            selector_labels: vec!["app".into(), "name".into(), "app.kubernetes.io/name".into()],
            include_label_prefixes: Vec::new(),
            config_tracking: true,
        }
    }
}

/// A target or primary workload, borrowed: what the kind-independent functions need to read.
#[derive(Clone, Copy, Debug)]
pub enum Workload<'a> {
    Deployment(&'a Deployment),
    DaemonSet(&'a DaemonSet),
}

impl<'a> Workload<'a> {
    /// `Deployment` or `DaemonSet`.
    pub fn kind(self) -> TargetKind {
        match self {
            Workload::Deployment(_) => TargetKind::Deployment,
            Workload::DaemonSet(_) => TargetKind::DaemonSet,
        }
    }

    pub fn name(self) -> &'a str {
        let meta = match self {
            Workload::Deployment(d) => &d.metadata,
            Workload::DaemonSet(d) => &d.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(self) -> &'a str {
        let meta = match self {
            Workload::Deployment(d) => &d.metadata,
            Workload::DaemonSet(d) => &d.metadata,
        };
        meta.namespace.as_deref().unwrap_or_default()
    }

    /// `spec.selector`, when there is a spec.
    pub fn label_selector(self) -> Option<&'a LabelSelector> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref().map(|s| &s.selector),
            Workload::DaemonSet(d) => d.spec.as_ref().map(|s| &s.selector),
        }
    }

    /// `spec.template`, when there is a spec.
    pub fn template(self) -> Option<&'a PodTemplateSpec> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref().map(|s| &s.template),
            Workload::DaemonSet(d) => d.spec.as_ref().map(|s| &s.template),
        }
    }
}
