//! Istio (`provider: istio`, `flagger-behaviour.md` §3.2): DestinationRules `<svc>-primary` and
//! `<svc>-canary`, and the VirtualService `<svc>` that splits traffic between them.
//!
//! There is no typed Istio crate, so the objects are `serde_json::Value`s with apiVersion
//! `networking.istio.io/v1beta1`. The VirtualService is always built whole from the Canary and the
//! routes to apply: Veer has no separate "reconcile" and "set routes" writes, so drift correction
//! and weight changes are the same server-side apply (the caller passes the live weights read with
//! [`read_routes`] when it only corrects drift).

use std::{collections::BTreeMap, time::Duration};

use kube::{
    ResourceExt,
    api::{ApiResource, GroupVersionKind},
};
use serde_json::{Map, Value, json};

use super::{
    Control, Desired, Live, Router, RouterError, Routes, ServiceNames,
    affinity::{self, Plan},
    control_of, display_name, live_routing_object, qualified, regex_escape, service_names, service_spec,
};
use crate::{
    api::{
        AbMatch, Canary, CanaryService, CanaryStatus, HeaderMatch, HttpMatchRequest, SessionAffinity,
        StringMatch,
    },
    meta::{LAST_APPLIED, ORIGINAL_CONFIGURATION, flux_annotations, is_flux_key, owner_reference},
};

/// API version of the generated Istio objects.
pub const API_VERSION: &str = "networking.istio.io/v1beta1";
/// Name of the route that pins a session to the canary (Flagger's), or expires a previous run's
/// cookie.
pub const STICKY_ROUTE: &str = "sticky-route";
/// Name of the route that pins a session to the primary (`sessionAffinity.primaryCookieName`).
pub const STICKY_PRIMARY_ROUTE: &str = "sticky-route-primary";

/// The Istio kinds Veer writes and reads back.
pub const VIRTUAL_SERVICE: &str = "VirtualService";
pub const DESTINATION_RULE: &str = "DestinationRule";

/// The API coordinates of an Istio kind ([`VIRTUAL_SERVICE`], [`DESTINATION_RULE`]).
pub fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("networking.istio.io", "v1beta1", kind))
}

/// The Istio router, when the Istio CRDs are installed.
pub(super) fn resolve(canary: &Canary, live: &dyn Live) -> Result<Router, RouterError> {
    if live.serves(&resource(VIRTUAL_SERVICE)) {
        Ok(Router::Istio)
    } else {
        Err(RouterError::IstioNotInstalled { canary: display_name(canary) })
    }
}

/// The routes of the live VirtualService.
pub(super) fn read(canary: &Canary, live: &dyn Live) -> Result<Routes, String> {
    let vs = live_routing_object(canary, live, &resource(VIRTUAL_SERVICE))?;
    read_routes(canary, &vs).map_err(|e| e.to_string())
}

/// The DestinationRules and the VirtualService for `routes`, the VirtualService rewritten when the
/// live one mirrors traffic that `routes` no longer mirrors (see [`has_stale_mirror`]).
pub(super) fn desired(
    canary: &Canary,
    routes: Routes,
    status: &CanaryStatus,
    interval: Duration,
    live: &dyn Live,
) -> Result<Vec<Desired>, RouterError> {
    let rules = desired_destination_rules(canary).into_iter();
    let mut out: Vec<Desired> =
        rules.map(|object| Desired { kind: resource(DESTINATION_RULE), object, rewrite: false }).collect();
    let live_vs = live.get(&resource(VIRTUAL_SERVICE), &service_names(canary).apex);
    let vs = desired_virtual_service(canary, routes, status, live_vs.as_ref(), interval)?;
    let rewrite = live_vs.as_ref().is_some_and(|l| has_stale_mirror(&vs, l));
    out.push(Desired { kind: resource(VIRTUAL_SERVICE), object: vs, rewrite });
    Ok(out)
}

/// An adopted VirtualService (one no Canary controls) with its original spec back.
pub(super) fn reverted(canary: &Canary, live: &dyn Live) -> Vec<Desired> {
    let Some(vs) = live.get(&resource(VIRTUAL_SERVICE), &service_names(canary).apex) else {
        return Vec::new();
    };
    if super::controlling_canary(&super::json_owner_references(&vs)).is_some() {
        return Vec::new();
    }
    let reverted = reverted_virtual_service(&vs);
    reverted
        .map(|object| Desired { kind: resource(VIRTUAL_SERVICE), object, rewrite: true })
        .into_iter()
        .collect()
}

const COOKIE_HEADER: &str = "Cookie";
const SET_COOKIE_HEADER: &str = "Set-Cookie";

/// The DestinationRules `[<svc>-primary, <svc>-canary]`: host = own name, `trafficPolicy` copied
/// verbatim from `spec.service.trafficPolicy`, owned by the Canary.
pub fn desired_destination_rules(canary: &Canary) -> Vec<Value> {
    let names = service_names(canary);
    let policy = canary.spec.service.as_ref().and_then(|s| s.traffic_policy.clone());
    [names.primary, names.canary]
        .into_iter()
        .map(|name| {
            let mut spec = json!({ "host": name });
            if let Some(policy) = &policy {
                spec["trafficPolicy"] = policy.clone();
            }
            json!({
                "apiVersion": API_VERSION,
                "kind": "DestinationRule",
                "metadata": {
                    "name": name,
                    "namespace": canary.namespace(),
                    "ownerReferences": [owner_reference(canary)],
                },
                "spec": spec,
            })
        })
        .collect()
}

/// The VirtualService `<svc>` routing `routes` to the primary and canary.
///
/// * `status`: the session affinity cookies (`sessionAffinityCookie`, `primarySessionAffinityCookie`,
///   `previousSessionAffinityCookie`), which the decision core creates; no cookie, no cookie route.
/// * `existing`: the live VirtualService. One without a Canary controller is the user's, adopted:
///   it gets no owner reference, and its spec before Veer is kept in the annotation
///   `flagger.kubernetes.io/original-configuration` (unless kubectl's last-applied-configuration
///   already records it) so that [`reverted_virtual_service`] can restore it.
/// * `interval`: the effective analysis interval, the `Max-Age` of the primary session cookie.
///
/// A/B testing (`analysis.match`) takes precedence over session affinity, as in Flagger. TCP routes
/// cannot mirror, so `routes.mirrored` is ignored with `appProtocol: tcp`. The mirror goes on the
/// weighted route (Flagger puts it on the first route, which with session affinity is the sticky
/// one).
pub fn desired_virtual_service(
    canary: &Canary,
    routes: Routes,
    status: &CanaryStatus,
    existing: Option<&Value>,
    interval: Duration,
) -> Result<Value, RouterError> {
    let svc = service_spec(canary)?;
    let names = service_names(canary);
    let namespace = canary.namespace();
    let vs_name = qualified(&names.apex, namespace.as_deref());
    let delegation = svc.delegation == Some(true);
    let user_hosts = svc.hosts.clone().unwrap_or_default();
    let user_gateways = svc.gateways.clone().unwrap_or_default();
    if delegation && (!user_hosts.is_empty() || !user_gateways.is_empty()) {
        return Err(RouterError::DelegationWithHosts {
            virtual_service: vs_name,
            canary: display_name(canary),
        });
    }
    // A delegate VirtualService must have neither hosts nor gateways.
    let (hosts, gateways) = if delegation {
        (vec![], vec![])
    } else {
        let mut hosts = user_hosts;
        if !hosts.iter().any(|h| *h == names.apex || h == "*") {
            hosts.push(names.apex.clone());
        }
        let gateways =
            if user_gateways.is_empty() { vec!["mesh".to_string()] } else { user_gateways.clone() };
        (hosts, gateways)
    };
    // Behind an ingress gateway (or a delegating VirtualService) the Services have several ports, so
    // the destination must name one.
    let through_gateway = delegation || user_gateways.first().is_some_and(|g| g != "mesh");
    let builder =
        Builder { svc, names: &names, port: (svc.port_discovery && through_gateway).then_some(svc.port) };

    let mut spec = json!({ "hosts": hosts, "gateways": gateways });
    if is_tcp(svc) {
        spec["tcp"] = json!([builder.tcp_route(routes)]);
    } else {
        let analysis = canary.spec.analysis.as_ref();
        let ab = analysis.and_then(|a| a.match_.as_deref()).filter(|m| !m.is_empty());
        let http = match (ab, analysis.and_then(|a| a.session_affinity.as_ref())) {
            (Some(ab), _) => builder.ab_routes(ab, routes, mirror_weight(canary)),
            (None, affinity) => {
                builder.weighted_routes(routes, mirror_weight(canary), affinity, status, interval)
            }
        };
        spec["http"] = Value::Array(http.into_iter().map(Value::Object).collect());
    }

    let apex = svc.apex.as_ref();
    let labels: BTreeMap<String, String> = apex.and_then(|m| m.labels.clone()).unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = apex
        .and_then(|m| m.annotations.as_ref())
        .into_iter()
        .flatten()
        .filter(|(k, _)| !is_flux_key(k) && *k != LAST_APPLIED && *k != ORIGINAL_CONFIGURATION)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.extend(flux_annotations());

    let mut metadata = json!({ "name": names.apex, "namespace": namespace });
    match existing.map(|vs| control_of(vs, canary)) {
        None | Some(Control::ThisCanary) => metadata["ownerReferences"] = json!([owner_reference(canary)]),
        Some(Control::AnotherCanary(owner)) => {
            return Err(RouterError::OwnedByAnotherCanary {
                kind: "VirtualService".into(),
                object: vs_name,
                owner,
                canary: display_name(canary),
            });
        }
        Some(Control::User) => {
            if let Some(original) = existing.and_then(original_configuration) {
                annotations.insert(ORIGINAL_CONFIGURATION.into(), original);
            }
        }
    }
    if !labels.is_empty() {
        metadata["labels"] = json!(labels);
    }
    metadata["annotations"] = json!(annotations);
    Ok(json!({ "apiVersion": API_VERSION, "kind": "VirtualService", "metadata": metadata, "spec": spec }))
}

/// The value of `flagger.kubernetes.io/original-configuration` for an adopted VirtualService: the one
/// already recorded (the live spec is Veer's by then), or the live spec when kubectl's
/// last-applied-configuration does not already hold it.
fn original_configuration(vs: &Value) -> Option<String> {
    let annotations = &vs["metadata"]["annotations"];
    if let Some(recorded) = annotations[ORIGINAL_CONFIGURATION].as_str() {
        return Some(recorded.to_string());
    }
    if annotations.get(LAST_APPLIED).is_some() {
        return None;
    }
    Some(vs.get("spec").cloned().unwrap_or_else(|| json!({})).to_string())
}

/// The routes read back from a live VirtualService: the http (or, for `appProtocol: tcp`, tcp) route
/// with a `<svc>-canary` destination gives both weights, and it is mirrored when it has a mirror
/// host. Sticky-session routes are skipped, so the weighted route is read.
pub fn read_routes(canary: &Canary, vs: &Value) -> Result<Routes, RouterError> {
    let names = service_names(canary);
    let tcp = canary.spec.service.as_ref().is_some_and(is_tcp);
    let list = vs["spec"][if tcp { "tcp" } else { "http" }].as_array().map(Vec::as_slice).unwrap_or_default();
    let has_canary = |r: &&Value| destinations(r).any(|(host, _)| host == names.canary);
    let is_sticky = |r: &&Value| r["name"].as_str().is_some_and(|n| n.starts_with(STICKY_ROUTE));
    let route =
        list.iter().filter(has_canary).rfind(|r| !is_sticky(r)).or_else(|| list.iter().rfind(has_canary));
    let weight_of = |host: &str| {
        route
            .into_iter()
            .flat_map(destinations)
            .filter(|(h, _)| *h == host)
            .map(|(_, w)| w)
            .last()
            .unwrap_or(0)
    };
    let (primary, canary_weight) = (weight_of(&names.primary), weight_of(&names.canary));
    if primary == 0 && canary_weight == 0 {
        return Err(RouterError::RoutesNotFound {
            virtual_service: qualified(&names.apex, canary.namespace().as_deref()),
            primary: names.primary,
            canary: names.canary,
        });
    }
    let mirrored = route.is_some_and(|r| r["mirror"]["host"].as_str().is_some_and(|h| !h.is_empty()));
    Ok(Routes { primary, canary: canary_weight, mirrored })
}

fn destinations(route: &Value) -> impl Iterator<Item = (&str, i32)> {
    route["route"].as_array().into_iter().flatten().filter_map(|d| {
        let host = d["destination"]["host"].as_str()?;
        Some((host, d["weight"].as_i64().unwrap_or(0) as i32))
    })
}

/// For `revertOnDeletion` (§2.16): the VirtualService with the spec it had before Veer adopted it,
/// taken from kubectl's last-applied-configuration or else from
/// `flagger.kubernetes.io/original-configuration`. `None` when neither records it (or it does not
/// parse): then there is nothing to restore. Apply it with Veer's field manager, so that what Veer
/// added (routes, its annotations) goes away.
pub fn reverted_virtual_service(existing: &Value) -> Option<Value> {
    let annotations = &existing["metadata"]["annotations"];
    let spec = if let Some(applied) = annotations[LAST_APPLIED].as_str() {
        serde_json::from_str::<Value>(applied).ok()?.get("spec")?.clone()
    } else {
        serde_json::from_str::<Value>(annotations[ORIGINAL_CONFIGURATION].as_str()?).ok()?
    };
    Some(json!({
        "apiVersion": existing["apiVersion"].as_str().unwrap_or(API_VERSION),
        "kind": "VirtualService",
        "metadata": {
            "name": existing["metadata"]["name"],
            "namespace": existing["metadata"]["namespace"],
        },
        "spec": spec,
    }))
}

/// `appProtocol: tcp` (any case) switches the VirtualService to TCP routes.
fn is_tcp(svc: &CanaryService) -> bool {
    svc.app_protocol.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("tcp"))
}

/// `mirrorWeight` when set above 0 (else Istio mirrors 100%).
fn mirror_weight(canary: &Canary) -> Option<i32> {
    canary.spec.analysis.as_ref().and_then(|a| a.mirror_weight).filter(|w| *w > 0)
}

type Route = Map<String, Value>;

/// Builds routes of one Canary.
struct Builder<'a> {
    svc: &'a CanaryService,
    names: &'a ServiceNames,
    /// Destination port, when one must be named.
    port: Option<i32>,
}

impl Builder<'_> {
    fn destination(&self, host: &str, weight: i32) -> Value {
        let mut destination = json!({ "host": host });
        if let Some(port) = self.port {
            destination["port"] = json!({ "number": port });
        }
        // Weight is always written, even 0, so that the split is explicit.
        json!({ "destination": destination, "weight": weight })
    }

    fn split(&self, routes: Routes) -> Value {
        json!([
            self.destination(&self.names.primary, routes.primary),
            self.destination(&self.names.canary, routes.canary)
        ])
    }

    /// An HTTP route with the Canary's match, rewrite, timeout, retries, CORS policy and headers.
    fn http_route(&self, matches: &[HttpMatchRequest], destinations: Value) -> Route {
        let svc = self.svc;
        let mut route = Route::new();
        if !matches.is_empty() {
            route.insert("match".into(), json!(matches));
        }
        if let Some(rw) = svc.rewrite.as_ref().filter(|r| r.uri.is_some() || r.authority.is_some()) {
            // Istio's rewrite has no `type` (that is Gateway API's).
            let mut rewrite = Map::new();
            if let Some(uri) = &rw.uri {
                rewrite.insert("uri".into(), json!(uri));
            }
            if let Some(authority) = &rw.authority {
                rewrite.insert("authority".into(), json!(authority));
            }
            route.insert("rewrite".into(), Value::Object(rewrite));
        }
        if let Some(timeout) = svc.timeout.as_ref().filter(|t| !t.is_empty()) {
            route.insert("timeout".into(), json!(timeout));
        }
        if let Some(retries) = &svc.retries {
            route.insert("retries".into(), json!(retries));
        }
        if let Some(cors) = &svc.cors_policy {
            route.insert("corsPolicy".into(), json!(cors));
        }
        if let Some(headers) = &svc.headers {
            route.insert("headers".into(), json!(headers));
        }
        route.insert("route".into(), destinations);
        route
    }

    fn service_matches(&self) -> &[HttpMatchRequest] {
        self.svc.match_.as_deref().unwrap_or_default()
    }

    fn tcp_route(&self, routes: Routes) -> Value {
        let mut route = json!({ "route": self.split(routes) });
        // TCP routes can only match on the port.
        let matches: Vec<Value> = self
            .service_matches()
            .iter()
            .map(|m| m.port.map_or_else(|| json!({}), |port| json!({ "port": port })))
            .collect();
        if !matches.is_empty() {
            route["match"] = json!(matches);
        }
        route
    }

    /// A/B testing: the requests matching `analysis.match` are split by `routes`; the rest go to
    /// the primary.
    fn ab_routes(&self, ab: &[AbMatch], routes: Routes, mirror_weight: Option<i32>) -> Vec<Route> {
        let mut weighted = self.http_route(&merge_ab_matches(ab, self.service_matches()), self.split(routes));
        mirror(&mut weighted, routes, &self.names.canary, mirror_weight);
        // A lone destination takes all traffic in Istio whatever its weight; 100 says so.
        let rest =
            self.http_route(self.service_matches(), json!([self.destination(&self.names.primary, 100)]));
        vec![weighted, rest]
    }

    /// Progressive or Blue/Green: one weighted route, preceded by the session affinity routes.
    fn weighted_routes(
        &self,
        routes: Routes,
        mirror_weight: Option<i32>,
        affinity: Option<&SessionAffinity>,
        status: &CanaryStatus,
        interval: Duration,
    ) -> Vec<Route> {
        let mut weighted = self.http_route(self.service_matches(), self.split(routes));
        mirror(&mut weighted, routes, &self.names.canary, mirror_weight);
        match affinity::plan(routes, affinity, status, interval) {
            Plan::None => vec![weighted],
            Plan::Pinned { canary, primary } => {
                // Responses from the canary set the cookie; requests carrying it stay on the canary.
                add_response_header(destination_mut(&mut weighted, 1), SET_COOKIE_HEADER, canary.set_cookie);
                let sticky_canary = json!([
                    self.destination(&self.names.primary, 0),
                    self.destination(&self.names.canary, 100)
                ]);
                let mut out = vec![self.sticky_route(STICKY_ROUTE, canary.cookie, sticky_canary)];
                if let Some(primary) = primary {
                    add_response_header(
                        destination_mut(&mut weighted, 0),
                        SET_COOKIE_HEADER,
                        primary.set_cookie,
                    );
                    let sticky_primary = json!([self.destination(&self.names.primary, 100)]);
                    out.push(self.sticky_route(STICKY_PRIMARY_ROUTE, primary.cookie, sticky_primary));
                }
                out.push(weighted);
                out
            }
            Plan::Expire { cookie, set_cookie } => {
                let mut expire = self.sticky_route(STICKY_ROUTE, cookie, self.split(routes));
                add_response_header(&mut expire, SET_COOKIE_HEADER, set_cookie);
                vec![expire, weighted]
            }
        }
    }

    /// A route named `name` for the requests that carry `cookie` (`<name>=<value>`), within the
    /// service matches.
    fn sticky_route(&self, name: &str, cookie: &str, destinations: Value) -> Route {
        let (key, value) = cookie.split_once('=').unwrap_or((cookie, ""));
        let cookie_match = StringMatch { regex: Some(format!(".*{key}.*{value}.*")), ..Default::default() };
        let service = self.service_matches();
        let matches: Vec<HttpMatchRequest> = if service.is_empty() {
            vec![HttpMatchRequest {
                headers: Some(BTreeMap::from([(COOKIE_HEADER.to_string(), cookie_match)])),
                ..Default::default()
            }]
        } else {
            // Keep the service's own header conditions: the sticky route must not widen the match.
            service
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    m.headers.get_or_insert_default().insert(COOKIE_HEADER.into(), cookie_match.clone());
                    m
                })
                .collect()
        };
        let mut route = Route::new();
        route.insert("name".into(), json!(name));
        route.extend(self.http_route(&matches, destinations));
        route
    }
}

/// Whether the live VirtualService mirrors traffic on an HTTP route where `desired` does not. A
/// server-side apply removes such a mirror, but the write would be skipped as "nothing to change"
/// (`desired` is a subset of the live object), and shadow traffic would keep reaching the canary
/// after a rollback: the caller must write then.
pub fn has_stale_mirror(desired: &serde_json::Value, live: &serde_json::Value) -> bool {
    let routes = |vs: &serde_json::Value| vs["spec"]["http"].as_array().cloned().unwrap_or_default();
    let wanted = routes(desired);
    routes(live).iter().enumerate().any(|(i, route)| {
        ["mirror", "mirrorPercentage"]
            .iter()
            .any(|k| route.get(*k).is_some() && wanted.get(i).is_none_or(|w| w.get(*k).is_none()))
    })
}

/// Mirrors the route's traffic to the canary when `routes.mirrored`.
fn mirror(route: &mut Route, routes: Routes, canary: &str, weight: Option<i32>) {
    if routes.mirrored {
        route.insert("mirror".into(), json!({ "host": canary }));
        if let Some(weight) = weight {
            route.insert("mirrorPercentage".into(), json!({ "value": weight }));
        }
    }
}

fn destination_mut(route: &mut Route, index: usize) -> &mut Route {
    route
        .get_mut("route")
        .and_then(|r| r.get_mut(index))
        .and_then(Value::as_object_mut)
        .expect("a weighted route has a primary and a canary destination")
}

/// Adds `name: value` to `headers.response.add` of a route or destination.
fn add_response_header(target: &mut Route, name: &str, value: String) {
    let headers = target.entry("headers").or_insert_with(|| json!({}));
    let add = &mut headers["response"]["add"];
    if !add.is_object() {
        *add = json!({});
    }
    add[name] = json!(value);
}

/// The A/B route's matches: every analysis match combined with every service match (a copy of the
/// service match whose `headers`, `sourceLabels` and `queryParams` are the analysis match's, where
/// it sets them); without service matches, the analysis matches themselves.
///
/// Veer keeps the analysis `queryParams` also when `service.match` is set; Flagger drops them there
/// (`flagger-behaviour.md` §9.3 quirk #21), which widens the A/B route to every request of the
/// service match. A header `suffix`, which Istio's StringMatch lacks, becomes an anchored regex.
pub fn merge_ab_matches(ab: &[AbMatch], service: &[HttpMatchRequest]) -> Vec<HttpMatchRequest> {
    if service.is_empty() {
        return ab
            .iter()
            .map(|m| HttpMatchRequest {
                headers: m.headers.as_ref().map(istio_headers),
                query_params: m.query_params.clone(),
                source_labels: m.source_labels.clone(),
                ..Default::default()
            })
            .collect();
    }
    ab.iter()
        .flat_map(|m| {
            service.iter().map(move |s| {
                let mut merged = s.clone();
                if let Some(headers) = &m.headers {
                    merged.headers = Some(istio_headers(headers));
                }
                if let Some(labels) = &m.source_labels {
                    merged.source_labels = Some(labels.clone());
                }
                if let Some(params) = &m.query_params {
                    merged.query_params = Some(params.clone());
                }
                merged
            })
        })
        .collect()
}

fn istio_headers(headers: &BTreeMap<String, HeaderMatch>) -> BTreeMap<String, StringMatch> {
    headers
        .iter()
        .map(|(name, h)| {
            let regex =
                h.regex.clone().or_else(|| h.suffix.as_ref().map(|s| format!(".*{}", regex_escape(s))));
            (name.clone(), StringMatch { exact: h.exact.clone(), prefix: h.prefix.clone(), regex })
        })
        .collect()
}
