//! §3 Gateway API: the HTTPRoute `<svc>`.

use std::time::Duration;

use serde_json::{Value, json};

use super::{canary, flux, owner, progressive};
use crate::{
    api::CanaryStatus,
    router::{
        RouterError, Routes,
        gatewayapi::{Version, desired_http_route, read_routes},
    },
};

const INTERVAL: Duration = Duration::from_secs(15);

fn gateway() -> Value {
    json!([{"name": "public", "namespace": "istio-system"}])
}

fn route(service: Value, analysis: Value, routes: Routes) -> Value {
    route_with(service, analysis, routes, &CanaryStatus::default())
}

fn route_with(service: Value, analysis: Value, routes: Routes, status: &CanaryStatus) -> Value {
    desired_http_route(&canary(service, analysis), Version::V1, routes, status, None, INTERVAL).unwrap()
}

fn backend(name: &str, weight: i32) -> Value {
    json!({"group": "", "kind": "Service", "name": name, "port": 9898, "weight": weight})
}

const PREFIX: fn() -> Value = || json!([{"path": {"type": "PathPrefix", "value": "/"}}]);

#[test]
fn default_http_route() {
    let r = route(json!({"port": 9898, "gatewayRefs": gateway()}), progressive(), Routes::canary(10));
    assert_eq!(
        r,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "podinfo", "namespace": "test", "annotations": flux(), "ownerReferences": owner()},
            "spec": {
                "parentRefs": [{"name": "public", "namespace": "istio-system"}],
                "rules": [{
                    "matches": PREFIX(),
                    "backendRefs": [backend("podinfo-primary", 90), backend("podinfo-canary", 10)],
                }],
            },
        })
    );
    let c = canary(json!({"port": 9898, "gatewayRefs": gateway()}), progressive());
    assert_eq!(read_routes(&c, &r), Ok(Routes::canary(10)));
    let v1beta1 =
        desired_http_route(&c, Version::V1beta1, Routes::PRIMARY, &CanaryStatus::default(), None, INTERVAL)
            .unwrap();
    assert_eq!(v1beta1["apiVersion"], "gateway.networking.k8s.io/v1beta1");
}

#[test]
fn hosts_matches_filters_and_timeouts() {
    let service = json!({
        "port": 9898,
        "gatewayRefs": gateway(),
        "hosts": ["app.example.com"],
        "timeout": "30s",
        "backendTimeout": "10s",
        "match": [{"uri": {"prefix": "/api"}, "method": {"exact": "GET"},
                   "headers": {"x-b": {"regex": "^b"}, "x-a": {"exact": "a"}, "x-p": {"prefix": "p."}},
                   "queryParams": {"q": {"exact": "1"}}}],
        "headers": {"request": {"set": {"b": "2", "a": "1"}, "remove": ["x-r"]},
                    "response": {"add": {"x-resp": "v"}}},
        "rewrite": {"uri": "/v2", "type": "ReplacePrefixMatch", "authority": "internal"},
        "mirror": [{"backendRef": {"name": "shadow", "port": 80}}],
    });
    let r = route(service, progressive(), Routes::PRIMARY);
    assert_eq!(r["spec"]["hostnames"], json!(["app.example.com"]));
    let rule = &r["spec"]["rules"][0];
    assert_eq!(
        rule["matches"],
        json!([{
            "path": {"type": "PathPrefix", "value": "/api"},
            "method": "GET",
            "headers": [
                {"type": "Exact", "name": "x-a", "value": "a"},
                {"type": "RegularExpression", "name": "x-b", "value": "^b"},
                {"type": "RegularExpression", "name": "x-p", "value": "p\\..*"},
            ],
            "queryParams": [{"type": "Exact", "name": "q", "value": "1"}],
        }])
    );
    assert_eq!(
        rule["filters"],
        json!([
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}], "remove": ["x-r"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-resp", "value": "v"}]}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "internal",
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow", "port": 80}}},
        ])
    );
    assert_eq!(rule["timeouts"], json!({"request": "30s", "backendRequest": "10s"}));
}

#[test]
fn a_rewrite_without_type_replaces_the_full_path() {
    let r = route(
        json!({"port": 9898, "gatewayRefs": gateway(), "rewrite": {"uri": "/"}}),
        progressive(),
        Routes::PRIMARY,
    );
    assert_eq!(
        r["spec"]["rules"][0]["filters"],
        json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/"}}}])
    );
}

#[test]
fn ab_testing_is_two_rules() {
    let analysis = json!({"interval": "15s", "threshold": 5, "iterations": 10,
        "match": [{"headers": {"x-canary": {"exact": "insider"}}}, {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}]});
    let r = route(json!({"port": 9898, "gatewayRefs": gateway()}), analysis.clone(), Routes::canary(100));
    let rules = r["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0]["matches"],
        // With the path the API server would default, so that the live route equals this one.
        json!([
            {"path": {"type": "PathPrefix", "value": "/"},
             "headers": [{"type": "Exact", "name": "x-canary", "value": "insider"}]},
            {"path": {"type": "PathPrefix", "value": "/"},
             "headers": [{"type": "RegularExpression", "name": "cookie", "value": "^(.*?;)?(canary=always)(;.*)?$"}]},
        ])
    );
    assert_eq!(
        rules[0]["backendRefs"],
        json!([backend("podinfo-primary", 0), backend("podinfo-canary", 100)])
    );
    assert_eq!(rules[1], json!({"matches": PREFIX(), "backendRefs": [backend("podinfo-primary", 100)]}));
    let c = canary(json!({"port": 9898, "gatewayRefs": gateway()}), analysis);
    assert_eq!(read_routes(&c, &r), Ok(Routes::canary(100)));
}

#[test]
fn blue_green_mirrors_to_the_canary_while_mirroring() {
    let analysis = json!({"interval": "15s", "threshold": 5, "iterations": 5, "mirror": true});
    let mirrored = Routes { mirrored: true, ..Routes::PRIMARY };
    let r = route(json!({"port": 9898, "gatewayRefs": gateway()}), analysis.clone(), mirrored);
    assert_eq!(
        r["spec"]["rules"][0]["filters"],
        json!([{"type": "RequestMirror", "requestMirror": {"backendRef":
            {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898}}}])
    );
    let c = canary(json!({"port": 9898, "gatewayRefs": gateway()}), analysis.clone());
    assert_eq!(read_routes(&c, &r), Ok(mirrored));
    let plain = route(json!({"port": 9898, "gatewayRefs": gateway()}), analysis, Routes::PRIMARY);
    assert!(plain["spec"]["rules"][0].get("filters").is_none());
}

#[test]
fn session_affinity_pins_sessions_and_expires_the_cookie_after_the_run() {
    let analysis = json!({"interval": "15s", "threshold": 5, "stepWeight": 10,
        "sessionAffinity": {"cookieName": "flagger-cookie", "maxAge": 60}});
    let status = CanaryStatus { session_affinity_cookie: "flagger-cookie=abc".into(), ..Default::default() };
    let r = route_with(
        json!({"port": 9898, "gatewayRefs": gateway()}),
        analysis.clone(),
        Routes::canary(10),
        &status,
    );
    let rules = r["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0]["matches"],
        json!([{"path": {"type": "PathPrefix", "value": "/"},
                "headers": [{"type": "RegularExpression", "name": "Cookie", "value": ".*flagger-cookie.*abc.*"}]}])
    );
    assert_eq!(
        rules[0]["backendRefs"],
        json!([backend("podinfo-primary", 0), backend("podinfo-canary", 100)])
    );
    assert_eq!(
        rules[1]["backendRefs"][1]["filters"],
        json!([{"type": "ResponseHeaderModifier", "responseHeaderModifier":
            {"add": [{"name": "Set-Cookie", "value": "flagger-cookie=abc; Max-Age=60"}]}}])
    );
    let c = canary(json!({"port": 9898, "gatewayRefs": gateway()}), analysis.clone());
    assert_eq!(read_routes(&c, &r), Ok(Routes::canary(10)), "the weighted rule is read, not the sticky one");

    let after =
        CanaryStatus { previous_session_affinity_cookie: "flagger-cookie=abc".into(), ..Default::default() };
    let r = route_with(json!({"port": 9898, "gatewayRefs": gateway()}), analysis, Routes::PRIMARY, &after);
    let rules = r["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0]["filters"],
        json!([{"type": "ResponseHeaderModifier", "responseHeaderModifier":
            {"add": [{"name": "Set-Cookie", "value": "flagger-cookie=abc; Max-Age=-1"}]}}])
    );
    assert_eq!(read_routes(&c, &r), Ok(Routes::PRIMARY));
}

#[test]
fn a_parent_that_has_not_accepted_the_route_holds_the_steps() {
    let c = canary(json!({"port": 9898, "gatewayRefs": gateway()}), progressive());
    let mut r = route(json!({"port": 9898, "gatewayRefs": gateway()}), progressive(), Routes::canary(20));
    r["metadata"]["generation"] = json!(3);
    r["status"] = json!({"parents": [{"parentRef": {"name": "public"}, "conditions": [
        {"type": "Accepted", "status": "True", "observedGeneration": 2}]}]});
    let e = read_routes(&c, &r).unwrap_err();
    assert_eq!(
        e.to_string(),
        "HTTPRoute podinfo.test parent public is not ready (status: True, observed generation: 2, current generation: 3); check the Gateway and its controller"
    );
    r["status"]["parents"][0]["conditions"][0]["observedGeneration"] = json!(3);
    assert_eq!(read_routes(&c, &r), Ok(Routes::canary(20)));
}

#[test]
fn bad_input_names_the_field() {
    let c = canary(
        json!({"port": 9898, "gatewayRefs": gateway(), "match": [{"method": {"prefix": "G"}}]}),
        progressive(),
    );
    let e = desired_http_route(&c, Version::V1, Routes::PRIMARY, &CanaryStatus::default(), None, INTERVAL)
        .unwrap_err();
    assert_eq!(
        e,
        RouterError::UnsupportedMatch {
            canary: "podinfo.test".into(),
            field: "spec.service.match".into(),
            detail: "[0].method: HTTPRoute matches methods exactly; use exact".into(),
        }
    );
    let e = crate::router::Router::resolve(
        &crate::router::Provider::parse("gatewayapi:v1"),
        &canary(json!({"port": 9898}), progressive()),
        &super::registry::Objects::istio(),
        &crate::router::RouterConfig { ingress_annotations_prefix: "nginx.ingress.kubernetes.io".into() },
    )
    .unwrap_err();
    assert_eq!(e.reason(), crate::analysis::Reason::GatewayRefsMissing);
    assert!(e.to_string().contains("spec.service.gatewayRefs is required"), "{e}");
}
