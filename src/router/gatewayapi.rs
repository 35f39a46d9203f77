//! Gateway API (`provider: gatewayapi:v1` or `gatewayapi:v1beta1`, `flagger-behaviour.md` §3): the
//! HTTPRoute `<svc>` whose rules split traffic between the `<svc>-primary` and `<svc>-canary`
//! Services. Any implementation of HTTPRoute routes it: Envoy Gateway, Istio (also ambient), Linkerd
//! (GAMMA, with a Service as parent), Cilium, Contour, Kong, NGINX Gateway Fabric.
//!
//! The route is built whole on every write, like the VirtualService (see [`super::istio`]):
//!
//! * `parentRefs` from `service.gatewayRefs` (required), `hostnames` from `service.hosts`;
//! * one weighted rule: the service matches (default: path prefix `/`), the header, rewrite, static
//!   mirror and CORS filters, `timeouts` from `service.timeout` and `service.backendTimeout`, and the
//!   two backendRefs with the Service port and their weights;
//! * A/B testing (`analysis.match`): the weighted rule matches the analysis conditions, a second rule
//!   sends everything else to the primary;
//! * Blue/Green with `analysis.mirror`: a RequestMirror filter to the canary while mirroring;
//! * session affinity: a rule for requests carrying the canary cookie (and the primary cookie), the
//!   `Set-Cookie` response header on the weighted backends, and after a run a rule that expires the
//!   previous cookie.

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
    api::{Canary, CanaryService, CanaryStatus, HttpMatchRequest, SessionAffinity, StringMatch},
    meta::{LAST_APPLIED, flux_annotations, is_flux_key, owner_reference},
};

/// The API group of HTTPRoute.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The kind Veer writes and reads back.
pub const HTTP_ROUTE: &str = "HTTPRoute";

pub use crate::analysis::GatewayApiVersion as Version;

/// The API coordinates of HTTPRoute in `version`.
pub fn resource(version: Version) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, version.as_str(), HTTP_ROUTE))
}

/// The Gateway API router, when the Canary names its Gateways and the HTTPRoute CRD serves
/// `version`.
pub(super) fn resolve(canary: &Canary, version: Version, live: &dyn Live) -> Result<Router, RouterError> {
    let svc = service_spec(canary)?;
    if svc.gateway_refs.as_ref().is_none_or(Vec::is_empty) {
        return Err(RouterError::MissingGatewayRefs { canary: display_name(canary) });
    }
    if !live.serves(&resource(version)) {
        return Err(RouterError::GatewayApiNotInstalled {
            canary: display_name(canary),
            version: version.as_str().into(),
        });
    }
    Ok(Router::GatewayApi { version })
}

/// The routes of the live HTTPRoute.
pub(super) fn read(canary: &Canary, version: Version, live: &dyn Live) -> Result<Routes, String> {
    let route = live_routing_object(canary, live, &resource(version))?;
    read_routes(canary, &route).map_err(|e| e.to_string())
}

/// The HTTPRoute for `routes`.
pub(super) fn desired(
    canary: &Canary,
    version: Version,
    routes: Routes,
    status: &CanaryStatus,
    interval: Duration,
    live: &dyn Live,
) -> Result<Vec<Desired>, RouterError> {
    let existing = live.get(&resource(version), &service_names(canary).apex);
    let object = desired_http_route(canary, version, routes, status, existing.as_ref(), interval)?;
    // A filter or rule that goes (a mirror, a cookie) is a field the live route has and the desired
    // one lacks, which the subset comparison of the write path cannot see: rewrite the rules then.
    let rewrite = existing.as_ref().is_some_and(|l| l["spec"]["rules"] != object["spec"]["rules"]);
    Ok(vec![Desired { kind: resource(version), object, rewrite }])
}

const COOKIE_HEADER: &str = "Cookie";
const SET_COOKIE_HEADER: &str = "Set-Cookie";

/// The HTTPRoute `<svc>` routing `routes` to the primary and canary Services.
///
/// `status` holds the session affinity cookies the decision core creates; `existing` is the live
/// route: one that no Canary controls is the user's and gets no owner reference; one another Canary
/// controls is an error. `interval` is the `Max-Age` of the primary session cookie.
pub fn desired_http_route(
    canary: &Canary,
    version: Version,
    routes: Routes,
    status: &CanaryStatus,
    existing: Option<&Value>,
    interval: Duration,
) -> Result<Value, RouterError> {
    let svc = service_spec(canary)?;
    let names = service_names(canary);
    let namespace = canary.namespace();
    let route_name = qualified(&names.apex, namespace.as_deref());
    let field = |f: &str| format!("spec.service.match{f}");
    let service_matches = svc.match_.as_deref().unwrap_or_default();
    let matches = route_matches(service_matches).map_err(|detail| RouterError::UnsupportedMatch {
        canary: display_name(canary),
        field: field(""),
        detail,
    })?;
    let builder = Builder { svc, names: &names, matches, filters: filters(svc) };

    let analysis = canary.spec.analysis.as_ref();
    let ab = analysis.and_then(|a| a.match_.as_deref()).filter(|m| !m.is_empty());
    let mirror = routes.mirrored && analysis.and_then(|a| a.iterations).unwrap_or(0) > 0;
    let rules = match (ab, analysis.and_then(|a| a.session_affinity.as_ref())) {
        (Some(ab), _) => {
            let merged = super::istio::merge_ab_matches(ab, service_matches);
            let ab_matches = route_matches(&merged).map_err(|detail| RouterError::UnsupportedMatch {
                canary: display_name(canary),
                field: "spec.analysis.match".into(),
                detail,
            })?;
            let mut weighted = builder.weighted_rule(routes, mirror);
            weighted.insert("matches".into(), Value::Array(ab_matches));
            vec![weighted, builder.rule(builder.matches.clone(), vec![builder.backend(&names.primary, 100)])]
        }
        (None, affinity) => {
            builder.affinity_rules(builder.weighted_rule(routes, mirror), routes, affinity, status, interval)
        }
    };

    let parent_refs: Vec<Value> =
        svc.gateway_refs.iter().flatten().map(|r| serde_json::to_value(r).unwrap_or_default()).collect();
    let mut spec = json!({ "parentRefs": parent_refs, "rules": rules.into_iter().map(Value::Object).collect::<Vec<_>>() });
    if let Some(hosts) = svc.hosts.as_ref().filter(|h| !h.is_empty()) {
        spec["hostnames"] = json!(hosts);
    }

    let apex = svc.apex.as_ref();
    let labels: BTreeMap<String, String> = apex.and_then(|m| m.labels.clone()).unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = apex
        .and_then(|m| m.annotations.as_ref())
        .into_iter()
        .flatten()
        .filter(|(k, _)| !is_flux_key(k) && *k != LAST_APPLIED)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // As on every routing object: Flux must not undo the weights.
    annotations.extend(flux_annotations());
    let mut metadata = json!({ "name": names.apex, "namespace": namespace });
    match existing.map(|r| control_of(r, canary)) {
        None | Some(Control::ThisCanary) => metadata["ownerReferences"] = json!([owner_reference(canary)]),
        Some(Control::AnotherCanary(owner)) => {
            return Err(RouterError::OwnedByAnotherCanary {
                kind: HTTP_ROUTE.into(),
                object: route_name,
                owner,
                canary: display_name(canary),
            });
        }
        Some(Control::User) => {}
    }
    if !labels.is_empty() {
        metadata["labels"] = json!(labels);
    }
    metadata["annotations"] = json!(annotations);
    let api_version = format!("{GROUP}/{}", version.as_str());
    Ok(json!({ "apiVersion": api_version, "kind": HTTP_ROUTE, "metadata": metadata, "spec": spec }))
}

/// The routes read back from a live HTTPRoute: the weights of the rule with both backends (with
/// session affinity, the one whose backends set the cookie), mirrored when a rule mirrors to the
/// canary. Like Flagger, a parent Gateway that has not accepted the route's current generation is
/// an error: steps wait until the data plane has the weights.
pub fn read_routes(canary: &Canary, route: &Value) -> Result<Routes, RouterError> {
    let names = service_names(canary);
    let name = qualified(&names.apex, canary.namespace().as_deref());
    let generation = route["metadata"]["generation"].as_i64().unwrap_or(0);
    for parent in route["status"]["parents"].as_array().into_iter().flatten() {
        let accepted =
            parent["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Accepted");
        if let Some(c) = accepted {
            let observed = c["observedGeneration"].as_i64().unwrap_or(0);
            if c["status"] != "True" || observed < generation {
                return Err(RouterError::ParentNotReady {
                    http_route: name,
                    parent: parent["parentRef"]["name"].as_str().unwrap_or_default().to_string(),
                    status: c["status"].as_str().unwrap_or_default().to_string(),
                    observed,
                    generation,
                });
            }
        }
    }
    let rules = route["spec"]["rules"].as_array().map(Vec::as_slice).unwrap_or_default();
    // Each rule's backends as (name, weight, has filters), read once.
    let backends: Vec<Vec<(&str, i32, bool)>> = rules
        .iter()
        .map(|r| {
            let refs = r["backendRefs"].as_array().map(Vec::as_slice).unwrap_or_default();
            refs.iter()
                .map(|b| {
                    let filters = b["filters"].as_array().is_some_and(|f| !f.is_empty());
                    (
                        b["name"].as_str().unwrap_or_default(),
                        b["weight"].as_i64().unwrap_or(1) as i32,
                        filters,
                    )
                })
                .collect()
        })
        .collect();
    let both = |b: &&Vec<(&str, i32, bool)>| {
        b.len() == 2
            && b.iter().any(|(n, ..)| *n == names.primary)
            && b.iter().any(|(n, ..)| *n == names.canary)
    };
    let weighted = backends
        .iter()
        .filter(both)
        .find(|b| b.iter().any(|(.., filters)| *filters))
        .or_else(|| backends.iter().rfind(both));
    let Some(weighted) = weighted else {
        return Err(RouterError::HttpRouteBackendsNotFound {
            http_route: name,
            primary: names.primary,
            canary: names.canary,
        });
    };
    let weight = |svc: &str| weighted.iter().find(|(n, ..)| *n == svc).map_or(0, |(_, w, _)| *w);
    let mirrored = rules.iter().flat_map(|r| r["filters"].as_array().into_iter().flatten()).any(|f| {
        f["type"] == "RequestMirror" && f["requestMirror"]["backendRef"]["name"] == names.canary.as_str()
    });
    Ok(Routes { primary: weight(&names.primary), canary: weight(&names.canary), mirrored })
}

type Rule = Map<String, Value>;

/// Builds the rules of one Canary.
struct Builder<'a> {
    svc: &'a CanaryService,
    names: &'a ServiceNames,
    /// The service matches, default path prefix `/`.
    matches: Vec<Value>,
    /// The header, rewrite, static mirror and CORS filters.
    filters: Vec<Value>,
}

impl Builder<'_> {
    fn backend(&self, service: &str, weight: i32) -> Value {
        json!({ "group": "", "kind": "Service", "name": service, "port": self.svc.port, "weight": weight })
    }

    /// A rule with the Canary's filters and timeouts.
    fn rule(&self, matches: Vec<Value>, backends: Vec<Value>) -> Rule {
        let mut rule = Rule::new();
        rule.insert("matches".into(), Value::Array(matches));
        if !self.filters.is_empty() {
            rule.insert("filters".into(), Value::Array(self.filters.clone()));
        }
        rule.insert("backendRefs".into(), Value::Array(backends));
        let mut timeouts = Map::new();
        if let Some(t) = self.svc.timeout.as_ref().filter(|t| !t.is_empty()) {
            timeouts.insert("request".into(), json!(t));
        }
        if let Some(t) = self.svc.backend_timeout.as_ref().filter(|t| !t.is_empty()) {
            timeouts.insert("backendRequest".into(), json!(t));
        }
        if !timeouts.is_empty() {
            rule.insert("timeouts".into(), Value::Object(timeouts));
        }
        rule
    }

    /// The rule that splits by weight; mirroring to the canary when `mirror` (Blue/Green).
    fn weighted_rule(&self, routes: Routes, mirror: bool) -> Rule {
        let backends = vec![
            self.backend(&self.names.primary, routes.primary),
            self.backend(&self.names.canary, routes.canary),
        ];
        let mut rule = self.rule(self.matches.clone(), backends);
        if mirror {
            let filter = json!({
                "type": "RequestMirror",
                "requestMirror": { "backendRef": {
                    "group": "", "kind": "Service", "name": self.names.canary, "port": self.svc.port,
                }},
            });
            rule.entry("filters").or_insert_with(|| json!([])).as_array_mut().expect("a list").push(filter);
        }
        rule
    }

    /// The weighted rule, preceded by the session affinity rules.
    fn affinity_rules(
        &self,
        mut weighted: Rule,
        routes: Routes,
        affinity: Option<&SessionAffinity>,
        status: &CanaryStatus,
        interval: Duration,
    ) -> Vec<Rule> {
        match affinity::plan(routes, affinity, status, interval) {
            Plan::None => vec![weighted],
            Plan::Pinned { canary, primary } => {
                // Responses from the canary set the cookie; requests carrying it stay on the canary.
                set_cookie_on(&mut weighted, 1, canary.set_cookie);
                let sticky_canary =
                    vec![self.backend(&self.names.primary, 0), self.backend(&self.names.canary, 100)];
                let mut out = vec![self.sticky_rule(canary.cookie, sticky_canary, None)];
                if let Some(primary) = primary {
                    set_cookie_on(&mut weighted, 0, primary.set_cookie);
                    let sticky_primary =
                        vec![self.backend(&self.names.primary, 100), self.backend(&self.names.canary, 0)];
                    out.push(self.sticky_rule(primary.cookie, sticky_primary, None));
                }
                out.push(weighted);
                out
            }
            Plan::Expire { cookie, set_cookie } => {
                let backends = weighted["backendRefs"].as_array().cloned().unwrap_or_default();
                let expire = self.sticky_rule(cookie, backends, Some(set_cookie));
                vec![expire, weighted]
            }
        }
    }

    /// A rule for the requests that carry `cookie` (`<name>=<value>`) within the service matches;
    /// with `set_cookie`, its responses carry that `Set-Cookie` header.
    fn sticky_rule(&self, cookie: &str, backends: Vec<Value>, set_cookie: Option<String>) -> Rule {
        let (key, value) = cookie.split_once('=').unwrap_or((cookie, ""));
        let header = json!({ "type": "RegularExpression", "name": COOKIE_HEADER, "value": format!(".*{key}.*{value}.*") });
        let matches = self
            .matches
            .iter()
            .map(|m| {
                let mut m = m.clone();
                m["headers"] = json!([header]);
                m
            })
            .collect();
        let mut rule = self.rule(matches, backends);
        if let Some(value) = set_cookie {
            let filter = json!({ "type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "add": [{ "name": SET_COOKIE_HEADER, "value": value }] } });
            rule.entry("filters").or_insert_with(|| json!([])).as_array_mut().expect("a list").push(filter);
        }
        rule
    }
}

/// Adds a `Set-Cookie` response header to backend `index` of a rule.
fn set_cookie_on(rule: &mut Rule, index: usize, value: String) {
    let backend = &mut rule["backendRefs"][index];
    backend["filters"] = json!([{ "type": "ResponseHeaderModifier", "responseHeaderModifier": {
        "add": [{ "name": SET_COOKIE_HEADER, "value": value }] } }]);
}

/// The Canary's filters: request and response header modifiers, the URL rewrite, the static
/// mirrors (`service.mirror`) and CORS, in Flagger's order. Header lists are sorted by name.
fn filters(svc: &CanaryService) -> Vec<Value> {
    let mut out = Vec::new();
    let modifier = |op: &crate::api::HeaderOperation| {
        let list = |m: &Option<BTreeMap<String, String>>| -> Vec<Value> {
            m.iter().flatten().map(|(name, value)| json!({ "name": name, "value": value })).collect()
        };
        let mut f = Map::new();
        for (key, values) in [("add", list(&op.add)), ("set", list(&op.set))] {
            if !values.is_empty() {
                f.insert(key.into(), Value::Array(values));
            }
        }
        if let Some(remove) = op.remove.as_ref().filter(|r| !r.is_empty()) {
            f.insert("remove".into(), json!(remove));
        }
        Value::Object(f)
    };
    if let Some(headers) = &svc.headers {
        if let Some(request) = &headers.request {
            out.push(json!({ "type": "RequestHeaderModifier", "requestHeaderModifier": modifier(request) }));
        }
        if let Some(response) = &headers.response {
            out.push(
                json!({ "type": "ResponseHeaderModifier", "responseHeaderModifier": modifier(response) }),
            );
        }
    }
    if let Some(rw) = &svc.rewrite {
        let mut rewrite = Map::new();
        if let Some(host) = rw.authority.as_ref().filter(|a| !a.is_empty()) {
            rewrite.insert("hostname".into(), json!(host));
        }
        if let Some(uri) = rw.uri.as_ref().filter(|u| !u.is_empty()) {
            let path = if rw.type_.as_deref() == Some("ReplacePrefixMatch") {
                json!({ "type": "ReplacePrefixMatch", "replacePrefixMatch": uri })
            } else {
                json!({ "type": "ReplaceFullPath", "replaceFullPath": uri })
            };
            rewrite.insert("path".into(), path);
        }
        out.push(json!({ "type": "URLRewrite", "urlRewrite": rewrite }));
    }
    for mirror in svc.mirror.iter().flatten() {
        out.push(json!({ "type": "RequestMirror", "requestMirror": mirror }));
    }
    if let Some(cors) = &svc.cors_policy {
        let mut c = Map::new();
        for (key, values) in [
            ("allowOrigins", &cors.allow_origin),
            ("allowMethods", &cors.allow_methods),
            ("allowHeaders", &cors.allow_headers),
            ("exposeHeaders", &cors.expose_headers),
        ] {
            if let Some(v) = values.as_ref().filter(|v| !v.is_empty()) {
                c.insert(key.into(), json!(v));
            }
        }
        if cors.allow_credentials == Some(true) {
            c.insert("allowCredentials".into(), json!(true));
        }
        if let Some(age) = cors.max_age.as_deref().and_then(|a| crate::duration::parse(a).ok()) {
            c.insert("maxAge".into(), json!(age.as_secs()));
        }
        out.push(json!({ "type": "CORS", "cors": c }));
    }
    out
}

/// HTTPRoute matches for Istio-style match requests; none gives Flagger's default, path prefix `/`.
/// What HTTPRoute cannot express is an error naming it (Flagger fails the same way).
fn route_matches(requests: &[HttpMatchRequest]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (i, m) in requests.iter().enumerate() {
        let mut r = Map::new();
        if let Some(uri) = &m.uri {
            let path = match (&uri.regex, &uri.exact, &uri.prefix) {
                (Some(v), ..) => json!({ "type": "RegularExpression", "value": v }),
                (None, Some(v), _) => json!({ "type": "Exact", "value": v }),
                (None, None, Some(v)) => json!({ "type": "PathPrefix", "value": v }),
                _ => return Err(format!("[{i}].uri: set exact, prefix or regex")),
            };
            r.insert("path".into(), path);
        } else {
            // The API server's default, written so that the live route equals the desired one
            // (otherwise every reconcile of an A/B Canary would see a difference and write).
            r.insert("path".into(), default_path());
        }
        if let Some(method) = &m.method {
            let Some(exact) = &method.exact else {
                return Err(format!("[{i}].method: HTTPRoute matches methods exactly; use exact"));
            };
            r.insert("method".into(), json!(exact));
        }
        let headers = string_matches(m.headers.as_ref()).map_err(|e| format!("[{i}].headers.{e}"))?;
        if !headers.is_empty() {
            r.insert("headers".into(), Value::Array(headers));
        }
        let params = string_matches(m.query_params.as_ref()).map_err(|e| format!("[{i}].queryParams.{e}"))?;
        if !params.is_empty() {
            r.insert("queryParams".into(), Value::Array(params));
        }
        out.push(Value::Object(r));
    }
    if out.is_empty() {
        out.push(json!({ "path": default_path() }));
    }
    Ok(out)
}

/// The path every HTTPRoute match has when it names none: prefix `/`.
fn default_path() -> Value {
    json!({ "type": "PathPrefix", "value": "/" })
}

/// Header or query parameter matches: exact, or a regular expression (a prefix becomes one).
fn string_matches(map: Option<&BTreeMap<String, StringMatch>>) -> Result<Vec<Value>, String> {
    map.into_iter()
        .flatten()
        .map(|(name, m)| match (&m.exact, &m.regex, &m.prefix) {
            (Some(v), ..) => Ok(json!({ "type": "Exact", "name": name, "value": v })),
            (None, Some(v), _) => Ok(json!({ "type": "RegularExpression", "name": name, "value": v })),
            (None, None, Some(p)) => {
                Ok(json!({ "type": "RegularExpression", "name": name, "value": format!("{}.*", regex_escape(p)) }))
            }
            _ => Err(format!("{name}: set exact, prefix or regex")),
        })
        .collect()
}
