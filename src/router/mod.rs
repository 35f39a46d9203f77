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
//! * [`gatewayapi`]: the HTTPRoute `<svc>` (Gateway API, any implementation).
//! * [`smi`]: the SMI TrafficSplit `<svc>` (Linkerd, Open Service Mesh, any SMI mesh).
//! * [`kubernetes`]: no routing object (Blue/Green by Services only).
//!
//! Weights always come in as [`Routes`] (percent, summing to 100) and each traffic router can read
//! them back from its object (`read_routes`), so that the live object, not memory, is the truth.

pub mod affinity;
pub mod gatewayapi;
pub mod istio;
pub mod kubernetes;
pub mod nginx;
pub mod services;
pub mod smi;

#[cfg(test)]
mod tests;

use k8s_openapi::{api::networking::v1::Ingress, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{ResourceExt, api::ApiResource};
use serde_json::Value;

pub use crate::analysis::{Provider, Routes};
use crate::{
    analysis::{Params, Reason},
    api::{Canary, CanaryService, CanaryStatus},
};

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
        "Canary {canary}: {field}: provider {provider} is not supported by Veer yet; supported: istio, nginx, kubernetes, gatewayapi:v1, gatewayapi:v1beta1, linkerd, osm, smi:v1alpha1, smi:v1alpha2, smi:v1alpha3"
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

    /// Istio: the Istio CRDs are not installed.
    #[error(
        "Canary {canary} uses provider istio but the Istio CRDs (networking.istio.io) are not installed; install Istio and restart Veer (it looks for the CRDs at start), or set spec.provider"
    )]
    IstioNotInstalled { canary: String },

    /// Gateway API: `spec.service.gatewayRefs` is required.
    #[error(
        "Canary {canary}: spec.service.gatewayRefs is required by the Gateway API providers; list the Gateways (or, for a mesh, the Service) the HTTPRoute attaches to"
    )]
    MissingGatewayRefs { canary: String },

    /// Gateway API: the HTTPRoute CRD does not serve the version the Canary asks for.
    #[error(
        "Canary {canary} uses provider gatewayapi:{version} but the Gateway API CRDs do not serve HTTPRoute {version} (gateway.networking.k8s.io); install them and restart Veer (it looks for the CRDs at start), or set spec.provider"
    )]
    GatewayApiNotInstalled { canary: String, version: String },

    /// Gateway API: a match condition HTTPRoute cannot express.
    #[error("Canary {canary}: {field}{detail} (HTTPRoute cannot express it)")]
    UnsupportedMatch { canary: String, field: String, detail: String },

    /// Gateway API: a parent has not accepted the HTTPRoute's current generation.
    #[error(
        "HTTPRoute {http_route} parent {parent} is not ready (status: {status}, observed generation: {observed}, current generation: {generation}); check the Gateway and its controller"
    )]
    ParentNotReady { http_route: String, parent: String, status: String, observed: i64, generation: i64 },

    /// Gateway API: no rule of the HTTPRoute has both backends.
    #[error(
        "HTTPRoute {http_route} has no rule with the backends {primary} and {canary}; Veer rewrites it on the next reconcile, check that no other tool manages its spec.rules"
    )]
    HttpRouteBackendsNotFound { http_route: String, primary: String, canary: String },

    /// SMI: the TrafficSplit CRD does not serve the version the provider writes.
    #[error(
        "Canary {canary} uses provider {provider} but the SMI TrafficSplit CRD does not serve {version} (split.smi-spec.io); install the mesh's SMI extension (for Linkerd: linkerd-smi) and restart Veer (it looks for the CRDs at start), or set spec.provider"
    )]
    SmiNotInstalled { canary: String, provider: String, version: String },

    /// SMI: A/B testing asks for header matches, which a TrafficSplit cannot express.
    #[error(
        "Canary {canary}: spec.analysis.match: provider {provider} splits traffic by weight only (SMI TrafficSplit) and cannot route by header or cookie; remove spec.analysis.match for a Blue/Green run, or use provider gatewayapi:v1 (Linkerd and Istio implement HTTPRoute)"
    )]
    SmiCannotMatch { canary: String, provider: String },

    /// SMI: the TrafficSplit has no weight for the primary or the canary.
    #[error(
        "TrafficSplit {traffic_split} does not contain routes for {primary} and {canary}; Veer rewrites it on the next reconcile, check that no other tool manages its spec.backends"
    )]
    TrafficSplitBackendsNotFound { traffic_split: String, primary: String, canary: String },

    /// NGINX: the Ingress `spec.ingressRef` names does not exist.
    #[error("Ingress {ingress} not found: create it, or fix spec.ingressRef of Canary {canary}")]
    IngressNotFound { ingress: String, canary: String },

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

impl RouterError {
    /// The reason of the `Stalled` condition that shows this error on the Canary.
    pub fn reason(&self) -> Reason {
        match self {
            RouterError::MissingService { .. } => Reason::ServiceMissing,
            RouterError::UnsupportedProvider { .. } => Reason::UnsupportedProvider,
            RouterError::IstioNotInstalled { .. } => Reason::IstioNotInstalled,
            RouterError::IngressNotFound { .. } => Reason::IngressNotFound,
            RouterError::MissingIngressRef { .. } => Reason::IngressRefMissing,
            RouterError::GatewayApiNotInstalled { .. } => Reason::GatewayApiNotInstalled,
            RouterError::MissingGatewayRefs { .. } => Reason::GatewayRefsMissing,
            RouterError::SmiNotInstalled { .. } => Reason::SmiNotInstalled,
            _ => Reason::InvalidRouting,
        }
    }
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

/// The traffic router of a Canary is [`Provider`], from the analysis' vocabulary (parsed there once
/// for the decision); what only the routers ask of it is here.
impl Provider {
    /// The error of an unsupported provider, naming the field it comes from.
    pub(crate) fn unsupported(&self, canary: &Canary) -> RouterError {
        let from_spec = canary.spec.provider.as_deref().is_some_and(|p| !p.is_empty());
        let field = if from_spec { "spec.provider" } else { "--mesh-provider (spec.provider is empty)" };
        RouterError::UnsupportedProvider {
            canary: display_name(canary),
            field: field.into(),
            provider: self.as_str().to_string(),
        }
    }
}

/// `<name>.<namespace>`, as Flagger writes objects in messages.
pub fn display_name(canary: &Canary) -> String {
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
    match controlling_canary(owners) {
        None => Control::User,
        Some(owner) if owner.uid == uid => Control::ThisCanary,
        Some(owner) => Control::AnotherCanary(owner.name.clone()),
    }
}

/// [`control`] of an object given as JSON (a cached custom resource).
pub(crate) fn control_of(object: &Value, canary: &Canary) -> Control {
    control(&json_owner_references(object), canary)
}

pub(crate) fn json_owner_references(object: &Value) -> Vec<OwnerReference> {
    serde_json::from_value(object["metadata"]["ownerReferences"].clone()).unwrap_or_default()
}

/// The cached routing object of `kind` named after the apex Service, or why the routes cannot be
/// read yet.
pub(crate) fn live_routing_object(
    canary: &Canary,
    live: &dyn Live,
    kind: &ApiResource,
) -> Result<Value, String> {
    let name = service_names(canary).apex;
    live.get(kind, &name).ok_or_else(|| {
        format!("{} {} not found yet", kind.kind, qualified(&name, canary.namespace().as_deref()))
    })
}

/// The Canary that controls an object (its controller owner reference), if a Canary does.
pub(crate) fn controlling_canary(owners: &[OwnerReference]) -> Option<&OwnerReference> {
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .filter(|o| o.kind == "Canary" && o.api_version.starts_with("flagger.app/"))
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

/// The cached objects a router reads, in the Canary's namespace: the controller's caches.
pub trait Live: Sync {
    /// The cached object of `kind` named `name`, as JSON.
    fn get(&self, kind: &ApiResource, name: &str) -> Option<Value>;
    /// Whether the API server serves `kind` (for a custom resource: its CRD is installed).
    fn serves(&self, kind: &ApiResource) -> bool;
}

/// An object to server-side apply with [`crate::meta::FIELD_MANAGER`]: exactly the fields Veer owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub kind: ApiResource,
    pub object: Value,
    /// Apply even when the cached object already has every field: the builder stopped setting a
    /// field the live object still has, which a comparison of the fields set cannot see.
    pub rewrite: bool,
}

impl Desired {
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// Router settings from the controller's flags.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// `--ingress-annotations-prefix` (NGINX).
    pub ingress_annotations_prefix: String,
}

/// The traffic router of one Canary, resolved once per reconcile together with what it needs from
/// the caches. Each router is a module of pure builders; this enum registers it: adding a router is
/// its module, a variant, and its arm in each method below.
#[derive(Clone, Debug)]
pub enum Router {
    /// The VirtualService `<svc>` and the DestinationRules `<svc>-primary`, `<svc>-canary`.
    Istio,
    /// The canary Ingress, a copy of the user's Ingress (`spec.ingressRef`).
    Nginx { user_ingress: Box<Ingress>, annotations_prefix: String },
    /// The HTTPRoute `<svc>` in this version.
    GatewayApi { version: gatewayapi::Version },
    /// The SMI TrafficSplit `<svc>` in this version; `istio`: the mesh is Istio.
    Smi { version: smi::Version, istio: bool },
    /// No routing object: the Services alone (Blue/Green).
    Kubernetes,
}

impl Router {
    /// The router of a Canary whose provider is `provider`, or what the user must fix first.
    pub fn resolve(
        provider: &Provider,
        canary: &Canary,
        live: &dyn Live,
        config: &RouterConfig,
    ) -> Result<Router, RouterError> {
        match provider {
            Provider::Istio => istio::resolve(canary, live),
            Provider::Nginx => Ok(Router::Nginx {
                user_ingress: Box::new(nginx::user_ingress(canary, live)?),
                annotations_prefix: config.ingress_annotations_prefix.clone(),
            }),
            Provider::Kubernetes => Ok(Router::Kubernetes),
            Provider::GatewayApi(version) => gatewayapi::resolve(canary, *version, live),
            Provider::Smi(smi) => smi::resolve(canary, smi, live),
            Provider::Unsupported(_) => Err(provider.unsupported(canary)),
        }
    }

    /// The routes in place, read back from the live routing object; without one, the routes the
    /// status stands for.
    pub fn read_routes(
        &self,
        canary: &Canary,
        status: &CanaryStatus,
        params: &Params,
        live: &dyn Live,
    ) -> Result<Routes, String> {
        match self {
            Router::Istio => istio::read(canary, live),
            Router::Nginx { annotations_prefix, .. } => nginx::read(canary, live, annotations_prefix),
            Router::GatewayApi { version } => gatewayapi::read(canary, *version, live),
            Router::Smi { version, .. } => smi::read(canary, *version, live),
            Router::Kubernetes => Ok(kubernetes::routes(status, params)),
        }
    }

    /// The routing objects for `routes`.
    pub fn desired(
        &self,
        canary: &Canary,
        routes: Routes,
        status: &CanaryStatus,
        params: &Params,
        live: &dyn Live,
    ) -> Result<Vec<Desired>, RouterError> {
        match self {
            Router::Istio => istio::desired(canary, routes, status, params.interval, live),
            Router::Nginx { user_ingress, annotations_prefix } => {
                nginx::desired(canary, user_ingress, routes, annotations_prefix, live)
            }
            Router::GatewayApi { version } => {
                gatewayapi::desired(canary, *version, routes, status, params.interval, live)
            }
            Router::Smi { version, istio } => smi::desired(canary, *version, *istio, routes, live),
            Router::Kubernetes => Ok(Vec::new()),
        }
    }

    /// What deleting a Canary with `revertOnDeletion` restores: adopted routing objects as they
    /// were before the Canary took them over.
    pub fn reverted(&self, canary: &Canary, live: &dyn Live) -> Vec<Desired> {
        match self {
            Router::Istio => istio::reverted(canary, live),
            Router::Nginx { .. } | Router::GatewayApi { .. } | Router::Smi { .. } | Router::Kubernetes => {
                Vec::new()
            }
        }
    }
}
