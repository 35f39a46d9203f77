//! SMI TrafficSplit (`provider: linkerd`, `osm`, `smi:v1alpha1`, `smi:v1alpha2`, `smi:v1alpha3`,
//! each optionally `:<mesh>`; `flagger-behaviour.md` §3.4): the TrafficSplit `<svc>` that splits
//! the traffic addressed to the apex Service between `<svc>-canary` and `<svc>-primary`.
//!
//! * `spec.service` is `service.hosts[0]`, else the apex Service name;
//! * `spec.backends` lists the canary, then the primary, with their weights (`v1alpha1` writes them
//!   as quantities, `"10"`; later versions as integers) — the order and shapes Flagger writes;
//! * the mesh `istio` (`smi:<version>:istio`) gets the annotation
//!   `VirtualService.v1alpha3.networking.istio.io/spec.gateways` with `service.gateways`.
//!
//! A TrafficSplit splits by weight only: A/B testing (`analysis.match`) is refused with a
//! `Stalled` condition, where Flagger would send every request to the canary during the run; nor
//! can it mirror. Linkerd implements Gateway API HTTPRoutes too (`gatewayapi:v1` with a Service as
//! parent), which can do both.

use kube::{
    ResourceExt,
    api::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};

use super::{
    Control, Desired, Live, Router, RouterError, Routes, control_of, display_name, live_routing_object,
    qualified, service_names, service_spec,
};
use crate::{analysis::SmiProvider, api::Canary, meta::owner_reference};

/// The API group of TrafficSplit.
pub const GROUP: &str = "split.smi-spec.io";
/// The kind Veer writes and reads back.
pub const TRAFFIC_SPLIT: &str = "TrafficSplit";
/// The annotation an Istio-targeted SMI adapter reads the gateways from.
pub const ISTIO_GATEWAYS_ANNOTATION: &str = "VirtualService.v1alpha3.networking.istio.io/spec.gateways";

pub use crate::analysis::SmiVersion as Version;

/// The API coordinates of TrafficSplit in `version`.
pub fn resource(version: Version) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, version.as_str(), TRAFFIC_SPLIT))
}

/// The SMI router, when the Canary asks nothing a TrafficSplit cannot do and its CRD serves
/// `version`.
pub(super) fn resolve(canary: &Canary, smi: &SmiProvider, live: &dyn Live) -> Result<Router, RouterError> {
    service_spec(canary)?;
    let analysis = canary.spec.analysis.as_ref();
    if analysis.and_then(|a| a.match_.as_ref()).is_some_and(|m| !m.is_empty()) {
        return Err(RouterError::SmiCannotMatch { canary: display_name(canary), provider: smi.name.clone() });
    }
    if !live.serves(&resource(smi.version)) {
        return Err(RouterError::SmiNotInstalled {
            canary: display_name(canary),
            provider: smi.name.clone(),
            version: smi.version.as_str().into(),
        });
    }
    Ok(Router::Smi { version: smi.version, istio: smi.mesh == "istio" })
}

/// The routes of the live TrafficSplit.
pub(super) fn read(canary: &Canary, version: Version, live: &dyn Live) -> Result<Routes, String> {
    let split = live_routing_object(canary, live, &resource(version))?;
    read_routes(canary, &split).map_err(|e| e.to_string())
}

/// The TrafficSplit for `routes`.
pub(super) fn desired(
    canary: &Canary,
    version: Version,
    istio: bool,
    routes: Routes,
    live: &dyn Live,
) -> Result<Vec<Desired>, RouterError> {
    let existing = live.get(&resource(version), &service_names(canary).apex);
    let object = desired_traffic_split(canary, version, istio, routes, existing.as_ref())?;
    // Backends are a list replaced whole by server-side apply; a changed `spec.service` is a field
    // the subset comparison sees. Nothing Veer stops setting can linger.
    Ok(vec![Desired { kind: resource(version), object, rewrite: false }])
}

/// The TrafficSplit `<svc>` routing `routes` to the canary and primary Services.
///
/// `existing` is the live object: one that no Canary controls is the user's and gets no owner
/// reference; one another Canary controls is an error. `istio`: the mesh is Istio, whose SMI
/// adapter reads the gateways from an annotation.
pub fn desired_traffic_split(
    canary: &Canary,
    version: Version,
    istio: bool,
    routes: Routes,
    existing: Option<&Value>,
) -> Result<Value, RouterError> {
    let svc = service_spec(canary)?;
    let names = service_names(canary);
    let host = svc.hosts.iter().flatten().next().cloned().unwrap_or_else(|| names.apex.clone());
    let weight = |w: i32| match version {
        Version::V1alpha1 => json!(w.to_string()),
        Version::V1alpha2 | Version::V1alpha3 => json!(w),
    };
    let spec = json!({
        "service": host,
        "backends": [
            { "service": names.canary, "weight": weight(routes.canary) },
            { "service": names.primary, "weight": weight(routes.primary) },
        ],
    });

    let mut metadata = json!({ "name": names.apex, "namespace": canary.namespace() });
    // As Flagger writes it: no apex metadata, no Flux annotations (docs/compatibility.md).
    let gateways: Vec<&String> = svc.gateways.iter().flatten().collect();
    if istio && !gateways.is_empty() {
        let mut annotations = serde_json::Map::new();
        annotations.insert(ISTIO_GATEWAYS_ANNOTATION.into(), json!(json!(gateways).to_string()));
        metadata["annotations"] = Value::Object(annotations);
    }
    match existing.map(|s| control_of(s, canary)) {
        None | Some(Control::ThisCanary) => metadata["ownerReferences"] = json!([owner_reference(canary)]),
        Some(Control::AnotherCanary(owner)) => {
            return Err(RouterError::OwnedByAnotherCanary {
                kind: TRAFFIC_SPLIT.into(),
                object: qualified(&names.apex, canary.namespace().as_deref()),
                owner,
                canary: display_name(canary),
            });
        }
        Some(Control::User) => {}
    }
    let api_version = format!("{GROUP}/{}", version.as_str());
    Ok(json!({ "apiVersion": api_version, "kind": TRAFFIC_SPLIT, "metadata": metadata, "spec": spec }))
}

/// The routes read back from a live TrafficSplit: the weights of the primary and canary backends,
/// as integers or quantities (`"10"`). Like Flagger, both at zero (or absent) is an error.
pub fn read_routes(canary: &Canary, split: &Value) -> Result<Routes, RouterError> {
    let names = service_names(canary);
    let mut routes = Routes { primary: 0, canary: 0, mirrored: false };
    for backend in split["spec"]["backends"].as_array().into_iter().flatten() {
        let weight = weight_of(&backend["weight"]);
        match backend["service"].as_str() {
            Some(s) if s == names.primary => routes.primary = weight,
            Some(s) if s == names.canary => routes.canary = weight,
            _ => {}
        }
    }
    if routes.primary == 0 && routes.canary == 0 {
        return Err(RouterError::TrafficSplitBackendsNotFound {
            traffic_split: qualified(&names.apex, canary.namespace().as_deref()),
            primary: names.primary,
            canary: names.canary,
        });
    }
    Ok(routes)
}

/// A backend weight: an integer, or a quantity written as a whole number. Anything else (a
/// fraction such as `500m`, a negative or huge number) reads as 0, as Flagger reads a quantity it
/// cannot make an integer of; the next write replaces it.
fn weight_of(weight: &Value) -> i32 {
    let n = match weight {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        _ => None,
    };
    n.filter(|n| (0..=100).contains(n)).map_or(0, |n| n as i32)
}
