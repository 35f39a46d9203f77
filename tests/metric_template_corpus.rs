//! Every MetricTemplate of the Flagger compatibility corpus (`../shared/compat/flagger/valid`,
//! beside the repository, or `$VEER_COMPAT_DIR/valid`) renders with Veer's template engine.

#[path = "common/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;

use veer::{
    api::{Canary, CanaryMetric, MetricTemplate},
    metrics::template::{self, TemplateContext, TemplateError},
};

fn corpus() -> Vec<(String, MetricTemplate)> {
    corpus::of_kind("valid", "MetricTemplate")
}

/// A Canary with every name distinct, so the test can see which function filled which slot.
fn context() -> TemplateContext {
    let canary: Canary = serde_json::from_value(serde_json::json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo-app"},
            "service": {"port": 80, "name": "podinfo-svc"},
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo-ing"},
            "analysis": {"interval": "1m"}
        }
    }))
    .expect("a valid Canary");
    let metric = CanaryMetric {
        name: "custom".into(),
        interval: Some("2m".into()),
        // The variables the corpus references.
        template_variables: Some(BTreeMap::from([
            ("direction".into(), "inbound".into()),
            ("reporter".into(), "destination".into()),
            ("path".into(), "/api".into()),
        ])),
        ..Default::default()
    };
    TemplateContext::new(&canary, &metric)
}

#[test]
fn every_corpus_metric_template_renders() {
    let templates = corpus();
    assert_eq!(templates.len(), 34, "the corpus has 34 MetricTemplates");
    let ctx = context();
    for (name, t) in &templates {
        let out = template::render(&t.spec.query, &ctx).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!out.contains("{{") && !out.contains("}}"), "{name} left an action unrendered:\n{out}");
    }
}

#[test]
fn corpus_renders_the_expected_values() {
    let ctx = context();
    let by_name: BTreeMap<String, MetricTemplate> = corpus().into_iter().collect();
    let render = |file: &str| template::render(&by_name[file].spec.query, &ctx).expect(file);

    let linkerd = render("MetricTemplate--test-linkerd-test-canary-1.yaml");
    assert!(linkerd.contains(r#"namespace="test""#), "{linkerd}");
    assert!(linkerd.contains(r#"deployment=~"podinfo-app""#), "{linkerd}");
    assert!(linkerd.contains(r#"direction="inbound""#), "{linkerd}");
    assert!(linkerd.contains("}[2m]"), "{linkerd}");

    // The one printf in the corpus: namespace, ingress and service, in that order.
    let skipper = render("MetricTemplate--docs-gitbook-tutorials-skipper-progressive-delivery-2.yaml");
    assert!(
        skipper.contains(r#"route=~"kube(ew)?_test__podinfo-ing_canary__.*__podinfo-svc_canary(_[0-9]+)?""#),
        "{skipper}"
    );

    let apisix = render("MetricTemplate--docs-gitbook-tutorials-apisix-progressive-delivery-2.yaml");
    // No routeRef: route falls back to the target.
    assert!(apisix.contains(r#"route=~"test_podinfo-app-podinfo-app-canary_.+""#), "{apisix}");
}

#[test]
fn corpus_templates_name_a_missing_variable() {
    let mut ctx = context();
    ctx.variables.remove("reporter");
    let by_name: BTreeMap<String, MetricTemplate> = corpus().into_iter().collect();
    let e = template::render(&by_name["MetricTemplate--test-istio-test-canary-1.yaml"].spec.query, &ctx)
        .expect_err("reporter is missing");
    assert!(matches!(&e, TemplateError::MissingVariable { key, .. } if key == "reporter"), "{e}");
}
