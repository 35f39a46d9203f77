//! Routers: the Services and traffic-routing objects Veer generates for a Canary
//! (`flagger-behaviour.md` §3), as pure builders.
//!
//! Every function here takes the Canary (and whatever live objects it needs, read by the caller) and
//! returns the *desired* object: exactly the fields Veer owns, ready to be server-side-applied with
//! [`crate::meta::FIELD_MANAGER`]. Nothing here talks to the API server, so the controller decides
//! when to read, write or skip, and every rule is tested without a cluster.
//!
//! * [`services`]: the ClusterIP Services `<svc>`, `<svc>-primary`, `<svc>-canary` (all providers).
//! * [`istio`]: two DestinationRules and the VirtualService `<svc>`.
//! * [`nginx`]: the canary Ingress `<ingressRef.name>-canary`.
//! * [`kubernetes`]: no routing object (Blue/Green by Services only).
//!
//! Weights always come in as [`Routes`] (percent, summing to 100) and each traffic router can read
//! them back from its object (`read_routes`), so that the live object, not memory, is the truth.

pub mod istio;
pub mod kubernetes;
pub mod nginx;
pub mod services;

#[cfg(test)]
mod tests;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

pub use crate::analysis::Routes;
use crate::api::{Canary, CanaryService};

/// What a router could not build or read. Each message names the object and the field, and says
/// what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// `spec.service` is absent (the CRD requires it; a stored object may still lack it).
    #[error(
        "Canary {canary}: spec.service is missing; set spec.service.port to the port the target serves on"
    )]
    MissingService { canary: String },

    /// The provider has no router in Veer.
    #[error(
        "Canary {canary}: {field}: provider {provider} is not supported by Veer yet; supported: istio, nginx, kubernetes"
    )]
    UnsupportedProvider { canary: String, field: String, provider: String },

    /// Istio: `delegation: true` together with hosts or gateways.
    #[error(
        "VirtualService {virtual_service} cannot have hosts and gateways when delegation is enabled: remove spec.service.hosts and spec.service.gateways from Canary {canary}, or set spec.service.delegation to false"
    )]
    DelegationWithHosts { virtual_service: String, canary: String },

    /// Istio: the VirtualService has no route with the primary and canary destinations.
    #[error(
        "VirtualService {virtual_service} does not contain routes for {primary} and {canary}; Veer rewrites it on the next reconcile, check that no other tool manages its spec.http/spec.tcp"
    )]
    RoutesNotFound { virtual_service: String, primary: String, canary: String },

    /// A generated object is controlled by another Canary.
    #[error(
        "{kind} {object} is controlled by another Canary ({owner}); give Canary {canary} a different spec.service.name, or delete the other Canary"
    )]
    OwnedByAnotherCanary { kind: String, object: String, owner: String, canary: String },

    /// NGINX: `spec.ingressRef` is required.
    #[error(
        "Canary {canary}: spec.ingressRef is required by provider nginx; set it to the Ingress that routes to Service {service}"
    )]
    MissingIngressRef { canary: String, service: String },

    /// NGINX: the user's Ingress does not route to the apex Service.
    #[error(
        "backend {service} not found in ingress {ingress}; add a path whose backend is Service {service}, or set spec.service.name of Canary {canary} to the Service the Ingress routes to"
    )]
    BackendNotFound { service: String, ingress: String, canary: String },

    /// NGINX: A/B testing needs a header or cookie condition.
    #[error(
        "Canary {canary}: spec.analysis.match has no header condition NGINX can route on; add headers.<name> with exact, prefix, suffix or regex (use header `cookie` with exact: <cookie name> for cookies)"
    )]
    NoNginxMatch { canary: String },

    /// NGINX: the canary Ingress carries a weight that is not a percentage.
    #[error(
        "Ingress {ingress}: annotation {annotation} is {value:?}, not a whole number from 0 to 100; remove it and Veer sets it again on the next reconcile"
    )]
    InvalidWeight { ingress: String, annotation: String, value: String },
}

/// The three Service names of a Canary: `<svc>`, `<svc>-primary`, `<svc>-canary`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNames {
    pub apex: String,
    pub primary: String,
    pub canary: String,
}

/// Service names from `spec.service.name`, or `spec.targetRef.name` when it is unset or empty.
pub fn service_names(canary: &Canary) -> ServiceNames {
    let apex = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| canary.spec.target_ref.name.clone());
    ServiceNames { primary: format!("{apex}-primary"), canary: format!("{apex}-canary"), apex }
}

/// The traffic router of a Canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    Istio,
    Nginx,
    Kubernetes,
    /// Any other value (the rest of the CRD enum, or something else).
    Unsupported(String),
}

impl Provider {
    /// Parses a provider name as written in `spec.provider` or `--mesh-provider`.
    pub fn parse(name: &str) -> Provider {
        match name {
            "istio" => Provider::Istio,
            "nginx" => Provider::Nginx,
            "kubernetes" => Provider::Kubernetes,
            other => Provider::Unsupported(other.to_string()),
        }
    }

    /// The provider of a Canary: `spec.provider`, or the controller's default when it is empty.
    pub fn of(canary: &Canary, default: &str) -> Provider {
        Provider::parse(canary.spec.provider.as_deref().filter(|p| !p.is_empty()).unwrap_or(default))
    }

    /// The provider's name.
    pub fn as_str(&self) -> &str {
        match self {
            Provider::Istio => "istio",
            Provider::Nginx => "nginx",
            Provider::Kubernetes => "kubernetes",
            Provider::Unsupported(p) => p,
        }
    }

    /// An error for an unsupported provider, so that the Canary can be marked stalled with it.
    pub fn check(&self, canary: &Canary) -> Result<(), RouterError> {
        match self {
            Provider::Unsupported(p) => {
                let from_spec = canary.spec.provider.as_deref().is_some_and(|p| !p.is_empty());
                let field =
                    if from_spec { "spec.provider" } else { "--mesh-provider (spec.provider is empty)" };
                Err(RouterError::UnsupportedProvider {
                    canary: display_name(canary),
                    field: field.into(),
                    provider: p.clone(),
                })
            }
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `<name>.<namespace>`, as Flagger writes objects in messages.
pub(crate) fn display_name(canary: &Canary) -> String {
    qualified(&canary.name_any(), canary.namespace().as_deref())
}

pub(crate) fn qualified(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{name}.{ns}"),
        _ => name.to_string(),
    }
}

/// `spec.service`, or the error saying it is missing.
pub(crate) fn service_spec(canary: &Canary) -> Result<&CanaryService, RouterError> {
    canary.spec.service.as_ref().ok_or_else(|| RouterError::MissingService { canary: display_name(canary) })
}

/// Who controls an existing object, relative to a Canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    /// This Canary is its controller: Veer manages all of it.
    ThisCanary,
    /// Another Canary controls it.
    AnotherCanary(String),
    /// Nobody, or something that is not a Canary: the user's object, adopted.
    User,
}

/// Classifies the owner references of an existing object.
pub(crate) fn control(owners: &[OwnerReference], canary: &Canary) -> Control {
    let uid = canary.metadata.uid.as_deref().unwrap_or_default();
    let Some(owner) = owners.iter().find(|o| o.controller == Some(true)) else {
        return Control::User;
    };
    let is_canary = owner.kind == "Canary" && owner.api_version.starts_with("flagger.app/");
    match (is_canary, owner.uid == uid) {
        (true, true) => Control::ThisCanary,
        (true, false) => Control::AnotherCanary(owner.name.clone()),
        (false, _) => Control::User,
    }
}

/// Escapes RE2 metacharacters, for patterns built from literal values.
pub(crate) fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
