//! §3.2 Istio.

use std::time::Duration;

use serde_json::{Value, json};

use super::{canary, flux, owner, progressive};
use crate::{
    api::CanaryStatus,
    meta::{LAST_APPLIED, ORIGINAL_CONFIGURATION},
    router::{
        RouterError, Routes,
        istio::{desired_destination_rules, desired_virtual_service, read_routes, reverted_virtual_service},
    },
};

const INTERVAL: Duration = Duration::from_secs(15);

fn vs(service: Value, analysis: Value, routes: Routes) -> Value {
    vs_with(service, analysis, routes, &CanaryStatus::default())
}

fn vs_with(service: Value, analysis: Value, routes: Routes, status: &CanaryStatus) -> Value {
    desired_virtual_service(&canary(service, analysis), routes, status, None, INTERVAL).unwrap()
}

fn dest(host: &str, weight: i32) -> Value {
    json!({"destination": {"host": host}, "weight": weight})
}

#[test]
fn destination_rules_copy_the_traffic_policy() {
    let policy = json!({"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "LEAST_REQUEST"}});
    let c = canary(json!({"port": 9898, "trafficPolicy": policy}), progressive());
    let drs = desired_destination_rules(&c);
    assert_eq!(drs.len(), 2);
    for (dr, name) in drs.iter().zip(["podinfo-primary", "podinfo-canary"]) {
        assert_eq!(
            *dr,
            json!({
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": "test", "ownerReferences": owner()},
                "spec": {"host": name, "trafficPolicy": policy},
            })
        );
    }
    let drs = desired_destination_rules(&canary(json!({"port": 9898}), progressive()));
    assert_eq!(drs[1]["spec"], json!({"host": "podinfo-canary"}));
}

#[test]
fn default_virtual_service() {
    let v = vs(json!({"port": 9898}), progressive(), Routes::PRIMARY);
    assert_eq!(
        v,
        json!({
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "podinfo", "namespace": "test", "annotations": flux(), "ownerReferences": owner()},
            "spec": {
                "hosts": ["podinfo"],
                "gateways": ["mesh"],
                "http": [{"route": [dest("podinfo-primary", 100), dest("podinfo-canary", 0)]}],
            },
        })
    );
}

#[test]
fn apex_metadata_goes_on_the_virtual_service() {
    let v = vs(
        json!({"port": 9898, "apex": {"labels": {"team": "a"}, "annotations": {"note": "x"}}}),
        progressive(),
        Routes::PRIMARY,
    );
    assert_eq!(v["metadata"]["labels"], json!({"team": "a"}));
    let mut annotations = flux();
    annotations["note"] = json!("x");
    assert_eq!(v["metadata"]["annotations"], annotations);
}

#[test]
fn hosts_and_gateways() {
    let v = vs(
        json!({"port": 80, "hosts": ["app.example.com"], "gateways": ["public/gw"]}),
        progressive(),
        Routes::PRIMARY,
    );
    assert_eq!(v["spec"]["hosts"], json!(["app.example.com", "podinfo"]), "the apex host is appended");
    assert_eq!(v["spec"]["gateways"], json!(["public/gw"]), "mesh is not added to user gateways");
    let v = vs(json!({"port": 80, "hosts": ["*"]}), progressive(), Routes::PRIMARY);
    assert_eq!(v["spec"]["hosts"], json!(["*"]));
    let v = vs(
        json!({"port": 80, "hosts": ["podinfo", "a"], "gateways": ["mesh", "gw"]}),
        progressive(),
        Routes::PRIMARY,
    );
    assert_eq!(v["spec"]["hosts"], json!(["podinfo", "a"]));
    assert_eq!(v["spec"]["gateways"], json!(["mesh", "gw"]));
}

#[test]
fn destination_port_only_with_port_discovery_behind_a_gateway() {
    let port_of = |service: Value| {
        vs(service, progressive(), Routes::PRIMARY)["spec"]["http"][0]["route"][0]["destination"]["port"]
            .clone()
    };
    assert_eq!(
        port_of(json!({"port": 80, "portDiscovery": true, "gateways": ["public/gw", "mesh"]})),
        json!({"number": 80})
    );
    assert_eq!(
        port_of(json!({"port": 80, "portDiscovery": true, "delegation": true})),
        json!({"number": 80})
    );
    assert_eq!(
        port_of(json!({"port": 80, "portDiscovery": true, "gateways": ["mesh", "public/gw"]})),
        Value::Null
    );
    assert_eq!(port_of(json!({"port": 80, "portDiscovery": true})), Value::Null);
    assert_eq!(port_of(json!({"port": 80, "gateways": ["public/gw"]})), Value::Null);
}

#[test]
fn delegation_empties_hosts_and_gateways() {
    let v = vs(json!({"port": 80, "delegation": true}), progressive(), Routes::PRIMARY);
    assert_eq!(v["spec"]["hosts"], json!([]));
    assert_eq!(v["spec"]["gateways"], json!([]));
    for service in [
        json!({"port": 80, "delegation": true, "hosts": ["a"]}),
        json!({"port": 80, "delegation": true, "gateways": ["g"]}),
    ] {
        let err = desired_virtual_service(
            &canary(service, progressive()),
            Routes::PRIMARY,
            &CanaryStatus::default(),
            None,
            INTERVAL,
        )
        .unwrap_err();
        assert!(matches!(err, RouterError::DelegationWithHosts { .. }));
        assert!(
            err.to_string().starts_with(
                "VirtualService podinfo.test cannot have hosts and gateways when delegation is enabled"
            ),
            "{err}"
        );
    }
}

#[test]
fn http_route_carries_the_service_options() {
    let service = json!({
        "port": 9898,
        "match": [{"uri": {"prefix": "/api"}}],
        "rewrite": {"uri": "/", "authority": "backend", "type": "ReplacePrefixMatch"},
        "timeout": "5s",
        "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx"},
        "corsPolicy": {"allowOrigins": [{"exact": "https://a.example"}], "allowMethods": ["GET"], "maxAge": "24h"},
        "headers": {"request": {"add": {"x-a": "1"}}, "response": {"remove": ["x-b"]}},
    });
    let v = vs(service, progressive(), Routes::canary(30));
    assert_eq!(
        v["spec"]["http"],
        json!([{
            "match": [{"uri": {"prefix": "/api"}}],
            "rewrite": {"uri": "/", "authority": "backend"},
            "timeout": "5s",
            "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx"},
            "corsPolicy": {"allowOrigins": [{"exact": "https://a.example"}], "allowMethods": ["GET"], "maxAge": "24h"},
            "headers": {"request": {"add": {"x-a": "1"}}, "response": {"remove": ["x-b"]}},
            "route": [dest("podinfo-primary", 70), dest("podinfo-canary", 30)],
        }])
    );
}

#[test]
fn tcp_routes_when_the_app_protocol_is_tcp() {
    let v = vs(
        json!({"port": 6379, "appProtocol": "TCP", "match": [{"port": 6379}, {"uri": {"prefix": "/"}}]}),
        progressive(),
        Routes::canary(40),
    );
    assert_eq!(v["spec"].get("http"), None);
    assert_eq!(
        v["spec"]["tcp"],
        json!([{"match": [{"port": 6379}, {}], "route": [dest("podinfo-primary", 60), dest("podinfo-canary", 40)]}])
    );
    let c = canary(json!({"port": 6379, "appProtocol": "tcp"}), progressive());
    let v =
        desired_virtual_service(&c, Routes::canary(40), &CanaryStatus::default(), None, INTERVAL).unwrap();
    assert_eq!(read_routes(&c, &v).unwrap(), Routes::canary(40));
}

fn ab_analysis() -> Value {
    json!({
        "interval": "1m", "threshold": 5, "iterations": 10,
        "match": [
            {"headers": {"x-canary": {"exact": "insider"}}, "queryParams": {"beta": {"exact": "1"}}},
            {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}, "sourceLabels": {"app": "tester"}},
        ],
    })
}

#[test]
fn ab_testing_crosses_analysis_and_service_matches() {
    let service = json!({
        "port": 9898,
        "match": [
            {"uri": {"prefix": "/api"}, "headers": {"x-tenant": {"exact": "a"}}},
            {"uri": {"prefix": "/v2"}, "queryParams": {"debug": {"exact": "0"}}},
        ],
    });
    let v = vs(service, ab_analysis(), Routes::canary(100));
    let http = v["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 2);
    assert_eq!(
        http[0]["match"],
        json!([
            {"uri": {"prefix": "/api"}, "headers": {"x-canary": {"exact": "insider"}}, "queryParams": {"beta": {"exact": "1"}}},
            {"uri": {"prefix": "/v2"}, "headers": {"x-canary": {"exact": "insider"}}, "queryParams": {"beta": {"exact": "1"}}},
            {"uri": {"prefix": "/api"}, "headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}, "sourceLabels": {"app": "tester"}},
            {"uri": {"prefix": "/v2"}, "headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}, "queryParams": {"debug": {"exact": "0"}}, "sourceLabels": {"app": "tester"}},
        ]),
        "queryParams of the analysis are kept (quirk #21)"
    );
    assert_eq!(http[0]["route"], json!([dest("podinfo-primary", 0), dest("podinfo-canary", 100)]));
    assert_eq!(
        http[1],
        json!({
            "match": [
                {"uri": {"prefix": "/api"}, "headers": {"x-tenant": {"exact": "a"}}},
                {"uri": {"prefix": "/v2"}, "queryParams": {"debug": {"exact": "0"}}},
            ],
            "route": [dest("podinfo-primary", 100)],
        })
    );
}

#[test]
fn ab_testing_without_service_match_uses_the_analysis_matches() {
    let v = vs(json!({"port": 9898}), ab_analysis(), Routes::PRIMARY);
    let http = &v["spec"]["http"];
    assert_eq!(
        http[0]["match"],
        json!([
            {"headers": {"x-canary": {"exact": "insider"}}, "queryParams": {"beta": {"exact": "1"}}},
            {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}, "sourceLabels": {"app": "tester"}},
        ])
    );
    assert_eq!(http[0]["route"], json!([dest("podinfo-primary", 100), dest("podinfo-canary", 0)]));
    assert_eq!(http[1], json!({"route": [dest("podinfo-primary", 100)]}));
}

#[test]
fn header_suffix_becomes_a_regex() {
    let analysis = json!({"interval": "1m", "threshold": 5, "iterations": 10, "match": [{"headers": {"user-agent": {"suffix": "(Mobile)"}}}]});
    let v = vs(json!({"port": 9898}), analysis, Routes::PRIMARY);
    assert_eq!(
        v["spec"]["http"][0]["match"],
        json!([{"headers": {"user-agent": {"regex": ".*\\(Mobile\\)"}}}])
    );
}

#[test]
fn mirroring() {
    let mut analysis =
        json!({"interval": "1m", "threshold": 5, "iterations": 10, "mirror": true, "mirrorWeight": 50});
    let mirrored = Routes { mirrored: true, ..Routes::PRIMARY };
    let v = vs(json!({"port": 9898}), analysis.clone(), mirrored);
    let route = &v["spec"]["http"][0];
    assert_eq!(route["mirror"], json!({"host": "podinfo-canary"}));
    assert_eq!(route["mirrorPercentage"], json!({"value": 50}));
    analysis["mirrorWeight"] = json!(0);
    let v = vs(json!({"port": 9898}), analysis.clone(), mirrored);
    assert_eq!(v["spec"]["http"][0]["mirror"], json!({"host": "podinfo-canary"}));
    assert_eq!(v["spec"]["http"][0].get("mirrorPercentage"), None, "mirrorWeight 0 means 100%");
    let v = vs(json!({"port": 9898}), analysis, Routes::PRIMARY);
    assert_eq!(v["spec"]["http"][0].get("mirror"), None);
}

#[test]
fn a_mirror_no_longer_wanted_forces_the_write() {
    let analysis = json!({"interval": "1m", "threshold": 5, "iterations": 10, "mirror": true});
    let mirrored = vs(json!({"port": 9898}), analysis.clone(), Routes { mirrored: true, ..Routes::PRIMARY });
    let plain = vs(json!({"port": 9898}), analysis, Routes::PRIMARY);
    // The unmirrored object is a subset of the mirrored one: without the check the write is skipped.
    assert!(crate::controller::is_subset(&plain, &mirrored));
    assert!(crate::router::istio::has_stale_mirror(&plain, &mirrored));
    assert!(!crate::router::istio::has_stale_mirror(&mirrored, &mirrored));
    assert!(!crate::router::istio::has_stale_mirror(&plain, &plain));
    assert!(!crate::router::istio::has_stale_mirror(&mirrored, &plain), "adding a mirror is a write anyway");
}

fn affinity() -> Value {
    json!({
        "interval": "15s", "threshold": 5, "stepWeight": 10,
        "sessionAffinity": {"cookieName": "flagger-cookie", "domain": "example.com", "httpOnly": true, "path": "/", "sameSite": "Strict", "secure": true},
    })
}

#[test]
fn session_affinity_pins_sessions_to_the_canary() {
    let status =
        CanaryStatus { session_affinity_cookie: "flagger-cookie=abcdefghij".into(), ..Default::default() };
    let v = vs_with(
        json!({"port": 9898, "match": [{"uri": {"prefix": "/"}}]}),
        affinity(),
        Routes::canary(20),
        &status,
    );
    let http = v["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 2);
    assert_eq!(
        http[0],
        json!({
            "name": "sticky-route",
            "match": [{"uri": {"prefix": "/"}, "headers": {"Cookie": {"regex": ".*flagger-cookie.*abcdefghij.*"}}}],
            "route": [dest("podinfo-primary", 0), dest("podinfo-canary", 100)],
        })
    );
    assert_eq!(
        http[1]["route"],
        json!([
            dest("podinfo-primary", 80),
            {
                "destination": {"host": "podinfo-canary"},
                "weight": 20,
                "headers": {"response": {"add": {"Set-Cookie":
                    "flagger-cookie=abcdefghij; Max-Age=86400; Domain=example.com; HttpOnly; Path=/; SameSite=Strict; Secure"}}},
            },
        ])
    );
    let c = canary(json!({"port": 9898}), affinity());
    let v = desired_virtual_service(&c, Routes::canary(20), &status, None, INTERVAL).unwrap();
    assert_eq!(
        read_routes(&c, &v).unwrap(),
        Routes::canary(20),
        "the weighted route is read, not the sticky one"
    );
}

#[test]
fn session_affinity_with_a_primary_cookie() {
    let mut analysis = affinity();
    analysis["sessionAffinity"] =
        json!({"cookieName": "canary", "primaryCookieName": "primary", "maxAge": 600});
    let status = CanaryStatus {
        session_affinity_cookie: "canary=aaaaaaaaaa".into(),
        primary_session_affinity_cookie: "primary=bbbbbbbbbb".into(),
        ..Default::default()
    };
    let v = vs_with(json!({"port": 9898}), analysis, Routes::canary(10), &status);
    let http = v["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 3);
    assert_eq!(http[0]["name"], "sticky-route");
    assert_eq!(
        http[1],
        json!({
            "name": "sticky-route-primary",
            "match": [{"headers": {"Cookie": {"regex": ".*primary.*bbbbbbbbbb.*"}}}],
            "route": [dest("podinfo-primary", 100)],
        })
    );
    let weighted = &http[2]["route"];
    assert_eq!(
        weighted[0]["headers"]["response"]["add"]["Set-Cookie"], "primary=bbbbbbbbbb; Max-Age=15",
        "one interval"
    );
    assert_eq!(weighted[1]["headers"]["response"]["add"]["Set-Cookie"], "canary=aaaaaaaaaa; Max-Age=600");
}

#[test]
fn session_affinity_expires_the_previous_cookie() {
    let status = CanaryStatus {
        previous_session_affinity_cookie: "flagger-cookie=oldoldoldo".into(),
        ..Default::default()
    };
    let v = vs_with(
        json!({"port": 9898, "headers": {"response": {"add": {"x-a": "1"}}}}),
        affinity(),
        Routes::PRIMARY,
        &status,
    );
    assert_eq!(
        v["spec"]["http"],
        json!([
            {
                "name": "sticky-route",
                "match": [{"headers": {"Cookie": {"regex": ".*flagger-cookie.*oldoldoldo.*"}}}],
                "headers": {"response": {"add": {"x-a": "1", "Set-Cookie": "flagger-cookie=oldoldoldo; Max-Age=-1"}}},
                "route": [dest("podinfo-primary", 100), dest("podinfo-canary", 0)],
            },
            {
                "headers": {"response": {"add": {"x-a": "1"}}},
                "route": [dest("podinfo-primary", 100), dest("podinfo-canary", 0)],
            },
        ])
    );
    // At weight 0 the current cookie is already stale.
    let status = CanaryStatus { session_affinity_cookie: "flagger-cookie=currentcur".into(), ..status };
    let v = vs_with(json!({"port": 9898}), affinity(), Routes::PRIMARY, &status);
    assert_eq!(
        v["spec"]["http"][0]["headers"]["response"]["add"]["Set-Cookie"],
        "flagger-cookie=currentcur; Max-Age=-1"
    );
    // No cookie at all: just the weighted route.
    let v = vs_with(json!({"port": 9898}), affinity(), Routes::PRIMARY, &CanaryStatus::default());
    assert_eq!(v["spec"]["http"].as_array().unwrap().len(), 1);
}

fn existing(metadata: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": metadata,
        "spec": {"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "podinfo"}}]}]},
    })
}

fn with_existing(live: &Value) -> Result<Value, RouterError> {
    let c = canary(json!({"port": 9898}), progressive());
    desired_virtual_service(&c, Routes::PRIMARY, &CanaryStatus::default(), Some(live), INTERVAL)
}

#[test]
fn an_adopted_virtual_service_records_its_original_spec() {
    let live = existing(json!({"name": "podinfo", "namespace": "test"}));
    let v = with_existing(&live).unwrap();
    assert_eq!(v["metadata"].get("ownerReferences"), None, "an adopted object gets no owner");
    let recorded: Value =
        serde_json::from_str(v["metadata"]["annotations"][ORIGINAL_CONFIGURATION].as_str().unwrap()).unwrap();
    assert_eq!(recorded, live["spec"]);

    // Once recorded, the record is kept even though the live spec is now Veer's.
    let mut later = v.clone();
    later["metadata"]["annotations"][ORIGINAL_CONFIGURATION] = json!("{\"hosts\":[\"first\"]}");
    let again = with_existing(&later).unwrap();
    assert_eq!(again["metadata"]["annotations"][ORIGINAL_CONFIGURATION], "{\"hosts\":[\"first\"]}");

    // kubectl's last-applied-configuration already records it.
    let kubectl =
        existing(json!({"name": "podinfo", "namespace": "test", "annotations": {LAST_APPLIED: "{}"}}));
    let v = with_existing(&kubectl).unwrap();
    assert_eq!(v["metadata"]["annotations"], flux());
    assert_eq!(v["metadata"].get("ownerReferences"), None);
}

#[test]
fn an_owned_virtual_service_keeps_its_owner() {
    let v =
        with_existing(&existing(json!({"name": "podinfo", "namespace": "test", "ownerReferences": owner()})))
            .unwrap();
    assert_eq!(v["metadata"]["ownerReferences"], owner());
    assert_eq!(v["metadata"]["annotations"], flux());
    let other = existing(json!({"name": "podinfo", "ownerReferences": [
        {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "other", "uid": "2", "controller": true}
    ]}));
    let err = with_existing(&other).unwrap_err();
    assert!(
        err.to_string().starts_with("VirtualService podinfo.test is controlled by another Canary (other)"),
        "{err}"
    );
}

#[test]
fn read_routes_finds_the_canary_route() {
    let c = canary(json!({"port": 9898}), progressive());
    let live = json!({"spec": {"http": [
        {"match": [{"uri": {"prefix": "/health"}}], "route": [{"destination": {"host": "other"}, "weight": 100}]},
        {"route": [dest("podinfo-primary", 65), dest("podinfo-canary", 35)], "mirror": {"host": "podinfo-canary"}},
    ]}});
    assert_eq!(read_routes(&c, &live).unwrap(), Routes { primary: 65, canary: 35, mirrored: true });
    // Flagger's session affinity layout: sticky route first, weighted route last.
    let flagger = json!({"spec": {"http": [
        {"name": "sticky-route", "route": [dest("podinfo-primary", 0), dest("podinfo-canary", 100)]},
        {"route": [dest("podinfo-primary", 90), dest("podinfo-canary", 10)]},
    ]}});
    assert_eq!(read_routes(&c, &flagger).unwrap(), Routes::canary(10));
}

#[test]
fn read_routes_errors_name_the_virtual_service() {
    let c = canary(json!({"port": 9898}), progressive());
    let expected =
        "VirtualService podinfo.test does not contain routes for podinfo-primary and podinfo-canary";
    for live in [
        json!({"spec": {"http": [{"route": [{"destination": {"host": "podinfo"}}]}]}}),
        json!({"spec": {"http": [{"route": [dest("podinfo-primary", 0), dest("podinfo-canary", 0)]}]}}),
        json!({"spec": {}}),
    ] {
        let err = read_routes(&c, &live).unwrap_err();
        assert!(err.to_string().starts_with(expected), "{err}");
    }
}

#[test]
fn revert_restores_the_recorded_spec() {
    let original = json!({"hosts": ["podinfo"], "http": [{"route": [{"destination": {"host": "podinfo"}}]}]});
    let live = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test", "annotations": {ORIGINAL_CONFIGURATION: original.to_string()}},
        "spec": {"hosts": ["podinfo"], "http": []},
    });
    assert_eq!(
        reverted_virtual_service(&live).unwrap(),
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": original,
        })
    );
    // last-applied-configuration wins and holds a whole object.
    let mut kubectl = live.clone();
    let applied = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "spec": {"hosts": ["kubectl"]}});
    kubectl["metadata"]["annotations"][LAST_APPLIED] = json!(applied.to_string());
    assert_eq!(reverted_virtual_service(&kubectl).unwrap()["spec"], json!({"hosts": ["kubectl"]}));
    // Nothing recorded: nothing to restore.
    let bare = json!({"metadata": {"name": "podinfo", "namespace": "test"}, "spec": {}});
    assert_eq!(reverted_virtual_service(&bare), None);
}
