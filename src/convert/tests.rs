//! Conversions of Argo Rollouts' own examples (`tests/convert/argo/`, each saying where it comes
//! from) and of shapes they do not cover, field by field and report entry by report entry; then
//! properties over arbitrary input.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{report::Gate, *};
use crate::{
    analysis::{Params, Settings},
    api::{CanaryAnalysis, CanaryMetric, ThresholdRange},
    metrics::template::{TemplateContext, render},
};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/convert/argo/", $name))
    };
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("bad YAML: {e}"))
}

fn run(yaml: &[&str]) -> Conversion {
    convert(yaml.iter().flat_map(|y| docs(y)).collect())
}

fn run_with(yaml: &str, options: &Options) -> Conversion {
    convert_with(docs(yaml), options)
}

fn codes(c: &Conversion) -> Vec<&'static str> {
    c.report.iter().map(|e| e.reason.code()).collect()
}

fn has(c: &Conversion, code: &str) -> bool {
    codes(c).contains(&code)
}

fn the_canary(c: &Conversion) -> &Canary {
    let all: Vec<&Canary> = c.canaries().collect();
    assert_eq!(all.len(), 1, "one Canary expected: {}", c.to_yaml());
    all[0]
}

fn analysis(c: &Conversion) -> &CanaryAnalysis {
    the_canary(c).spec.analysis.as_ref().expect("an analysis")
}

fn metric<'a>(c: &'a Conversion, name: &str) -> &'a CanaryMetric {
    analysis(c)
        .metrics
        .iter()
        .flatten()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn deployments(c: &Conversion) -> Vec<&Deployment> {
    c.objects
        .iter()
        .filter_map(|o| match o {
            Object::Deployment(d) => Some(d.as_ref()),
            _ => None,
        })
        .collect()
}

fn kept(c: &Conversion) -> Vec<&Value> {
    c.objects
        .iter()
        .filter_map(|o| match o {
            Object::Kept(v) => Some(v),
            _ => None,
        })
        .collect()
}

fn hooks(c: &Conversion) -> Vec<(String, String)> {
    analysis(c)
        .webhooks
        .iter()
        .flatten()
        .map(|h| (h.type_.clone().unwrap_or_default(), h.url.clone()))
        .collect()
}

/// What Veer itself makes of the output: the analysis parameters of each Canary, and each metric
/// query rendered with the Canary's variables.
fn veer_accepts(c: &Conversion) {
    for canary in c.canaries() {
        Params::new(&canary.spec, &Settings::default()).unwrap_or_else(|e| panic!("{e}: {}", c.to_yaml()));
        for m in canary.spec.analysis.iter().flat_map(|a| a.metrics.iter().flatten()) {
            let name = &m.template_ref.as_ref().expect("a templateRef").name;
            let mt = c
                .metric_templates()
                .find(|t| {
                    t.metadata.name.as_deref() == Some(name)
                        && t.metadata.namespace == canary.metadata.namespace
                })
                .unwrap_or_else(|| panic!("no MetricTemplate {name} beside the Canary"));
            render(&mt.spec.query, &TemplateContext::new(canary, m))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    // The YAML reads back as the same objects.
    let back = docs(&c.to_yaml());
    let values: Vec<Value> = c.objects.iter().map(Object::to_value).collect();
    assert_eq!(back, values);
}

// ------------------------------------------------------------------------------------ examples

#[test]
fn canary_with_an_indefinite_pause_and_timed_ones() {
    let c = run(&[fixture!("rollout-canary.yaml")]);
    veer_accepts(&c);
    let d = deployments(&c);
    assert_eq!(d.len(), 1);
    let spec = d[0].spec.as_ref().unwrap();
    assert_eq!((spec.replicas, spec.revision_history_limit), (Some(5), Some(2)));
    assert_eq!(
        spec.template.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("argoproj/rollouts-demo:blue")
    );
    let canary = the_canary(&c);
    assert_eq!(canary.spec.target_ref.name, "rollout-canary");
    assert_eq!(canary.spec.provider, None);
    assert_eq!(canary.spec.service.as_ref().unwrap().port, 8080);
    let a = analysis(&c);
    assert_eq!(a.step_weights, Some(vec![20, 40, 60, 80]));
    assert_eq!((a.max_weight, a.threshold), (Some(80), Some(1)));
    // 40s, 20s, 20s: the most common.
    assert_eq!(a.interval.as_deref(), Some("20s"));
    assert_eq!(
        hooks(&c),
        [
            ("confirm-traffic-increase".into(), "http://flagger-loadtester.default/gate/check".into()),
            ("post-rollout".into(), "http://flagger-loadtester.default/gate/close".into())
        ]
    );
    assert_eq!(codes(&c), ["no-traffic-routing", "pause-gate-midway", "pause-durations-differ"]);
    let differ = c.report.iter().find(|e| e.reason.code() == "pause-durations-differ").unwrap();
    assert_eq!(differ.path, "spec.strategy.canary.steps");
    assert!(differ.reason.message().contains("40%: 40s, 60%: 20s, 80%: 20s"), "{}", differ.reason.message());
    assert!(!c.complete());
}

#[test]
fn blue_green_with_manual_promotion() {
    let c = run(&[fixture!("rollout-bluegreen.yaml")]);
    veer_accepts(&c);
    let canary = the_canary(&c);
    assert_eq!(canary.spec.provider.as_deref(), Some("kubernetes"));
    let svc = canary.spec.service.as_ref().unwrap();
    assert_eq!(svc.name.as_deref(), Some("rollout-bluegreen-active"));
    assert_eq!((svc.port, svc.target_port.clone()), (80, Some(IntOrString::Int(8080))));
    let a = analysis(&c);
    assert_eq!((a.iterations, a.interval.as_deref(), a.step_weights.as_ref()), (Some(1), Some("1m"), None));
    assert_eq!(hooks(&c)[0].0, "confirm-promotion");
    assert_eq!(a.webhooks.as_ref().unwrap()[0].name, Gate::ConfirmPromotion.webhook_name());
    assert_eq!(codes(&c), ["service-adopted", "service-replaced", "interval-chosen", "pause-gate"]);
    // The Argo Services are not in the output: Veer generates its own.
    assert!(kept(&c).is_empty(), "{}", c.to_yaml());
    assert!(c.complete(), "only info entries");
}

#[test]
fn background_analysis_with_istio_and_a_prometheus_template() {
    let c = run(&[fixture!("docs-background-analysis.yaml")]);
    veer_accepts(&c);
    let canary = the_canary(&c);
    assert_eq!(canary.spec.provider.as_deref(), Some("istio"));
    let svc = canary.spec.service.as_ref().unwrap();
    assert_eq!(svc.name.as_deref(), Some("guestbook-svc"));
    assert_eq!((svc.port, svc.port_name.as_deref()), (80, Some("http")));
    assert_eq!(svc.target_port, Some(IntOrString::String("http".into())));
    assert_eq!(svc.hosts, Some(vec!["istio-rollout.dev.argoproj.io".to_string()]));
    assert_eq!(svc.gateways, Some(vec!["istio-rollout-gateway".to_string()]));
    let a = analysis(&c);
    assert_eq!(a.interval.as_deref(), Some("10m"));
    // failureLimit 3: the fourth failure fails the metric.
    assert_eq!(a.threshold, Some(4));
    let m = metric(&c, "success-rate");
    assert_eq!(m.threshold_range, Some(ThresholdRange { min: Some(0.95), max: None }));
    assert_eq!(m.interval.as_deref(), Some("5m"));
    assert_eq!(m.template_ref.as_ref().unwrap().name, "success-rate");
    assert_eq!(
        m.template_variables.as_ref().unwrap().get("service-name").map(String::as_str),
        Some("guestbook-svc.default.svc.cluster.local")
    );
    let mt = c.metric_templates().next().unwrap();
    assert_eq!(mt.spec.provider.address.as_deref(), Some("http://prometheus.example.com:9090"));
    assert!(mt.spec.query.contains(r#"destination_service=~"{{ index variables "service-name" }}""#));
    assert!(!mt.spec.query.contains("args."));
    for code in [
        "routing-object-replaced",
        "service-adopted",
        "service-replaced",
        "analysis-starting-step",
        "argument-names-argo-service",
        "measurement-cadence",
    ] {
        assert!(has(&c, code), "{code} in {:?}", codes(&c));
    }
    // The VirtualService and both Services are replaced by Veer's.
    assert!(kept(&c).is_empty());
}

#[test]
fn analysis_templates_from_the_documentation() {
    let c = run(&[fixture!("docs-prometheus.yaml")]);
    veer_accepts(&c);
    let names: Vec<(Option<&str>, &str)> = c
        .metric_templates()
        .map(|t| (t.metadata.namespace.as_deref(), t.metadata.name.as_deref().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            (None, "success-rate-tenant"),
            (None, "range-query-example"),
            (None, "error-rate"),
            (None, "rates"),
            (None, "total-errors"),
            (Some("shop"), "success-rate"),
        ]
    );
    let tenant = c.metric_templates().next().unwrap();
    assert_eq!(
        tenant.spec.provider.headers.as_ref().unwrap().get("X-Scope-OrgID"),
        Some(&vec!["tenant_a".to_string()])
    );
    // The address's argument has a default in the template.
    let cluster = c.metric_templates().last().unwrap();
    assert_eq!(cluster.spec.provider.address.as_deref(), Some("http://prometheus.example.com:9090"));
    let m = metric(&c, "success-rate");
    assert_eq!(m.threshold_range, Some(ThresholdRange { min: Some(0.95), max: None }));
    assert_eq!(m.template_ref.as_ref().unwrap().namespace, None, "the copy is in the Canary's namespace");
    assert_eq!(analysis(&c).interval.as_deref(), Some("5m"));
    let at =
        |code: &str| c.report.iter().find(|e| e.reason.code() == code).unwrap_or_else(|| panic!("{code}"));
    assert_eq!(at("prometheus-timeout").object.name, "success-rate-tenant");
    assert_eq!(at("range-query").path, "spec.metrics[0].provider.prometheus.rangeQuery");
    assert_eq!(at("condition-unmapped").path, "spec.metrics[0].successCondition");
    let strict = at("strict-bound");
    assert_eq!(
        (strict.object.name.as_str(), strict.path.as_str()),
        ("total-errors", "spec.metrics[0].failureCondition")
    );
    assert_eq!(at("cluster-template-copied").object.kind, "ClusterAnalysisTemplate");
    assert!(has(&c, "step-analysis"));
}

#[test]
fn istio_subset_and_host_splitting() {
    let c = run(&[fixture!("istio-subset-split.yaml")]);
    veer_accepts(&c);
    let canary = the_canary(&c);
    let svc = canary.spec.service.as_ref().unwrap();
    // Subset-level: the one Service of the route is the apex, named like the target.
    assert_eq!(svc.name, None);
    assert_eq!(svc.hosts, Some(vec!["istio-subset-split".to_string()]));
    assert_eq!((svc.port, svc.target_port.clone()), (80, Some(IntOrString::String("http".into()))));
    assert_eq!(analysis(&c).step_weights, Some(vec![10]));
    assert_eq!(hooks(&c)[0].0, "confirm-promotion");
    assert_eq!(
        codes(&c),
        [
            "routing-object-replaced",
            "routing-object-replaced",
            "service-adopted",
            "pause-gate",
            "interval-chosen"
        ]
    );
    assert!(c.complete());

    let c = run(&[fixture!("istio-host-split.yaml")]);
    veer_accepts(&c);
    let svc = the_canary(&c).spec.service.clone().unwrap();
    assert_eq!(svc.name.as_deref(), Some("istio-host-split-stable"));
    assert_eq!(svc.hosts, Some(vec!["istio-host-split".to_string()]));
    assert!(c.complete(), "{:?}", codes(&c));
}

#[test]
fn nginx_smi_and_steps_without_weights() {
    let c = run(&[fixture!("nginx.yaml")]);
    veer_accepts(&c);
    let canary = the_canary(&c);
    assert_eq!(canary.spec.provider.as_deref(), Some("nginx"));
    assert_eq!(canary.spec.ingress_ref.as_ref().unwrap().name, "nginx-demo-ingress");
    assert_eq!(canary.spec.service.as_ref().unwrap().name.as_deref(), Some("nginx-demo-stable"));
    assert_eq!(analysis(&c).step_weights, Some(vec![100]));
    assert!(has(&c, "no-set-weight"));
    // The user's Ingress stays: the canary Ingress is made from it.
    assert_eq!(kept(&c).len(), 1);
    assert_eq!(kept(&c)[0]["kind"], "Ingress");
    let replaced = c.report.iter().find(|e| e.reason.code() == "routing-object-replaced").unwrap();
    assert!(replaced.reason.message().contains("nginx-demo-nginx-demo-ingress-canary"));

    let c = run(&[fixture!("rollout-smi-experiment.yaml")]);
    veer_accepts(&c);
    assert_eq!(the_canary(&c).spec.provider.as_deref(), Some("smi:v1alpha1"));
    assert!(has(&c, "experiment") && has(&c, "smi-version"));
}

#[test]
fn workload_ref_keeps_the_deployment_with_the_rollouts_replicas() {
    let c = run(&[fixture!("workload-ref.yaml")]);
    veer_accepts(&c);
    assert!(deployments(&c).is_empty(), "no Deployment is generated");
    let k = kept(&c);
    assert_eq!(k.len(), 1);
    assert_eq!(
        (k[0]["metadata"]["name"].as_str(), &k[0]["spec"]["replicas"]),
        (Some("rollout-ref-deployment"), &json!(5))
    );
    assert_eq!(the_canary(&c).spec.target_ref.name, "rollout-ref-deployment");
    assert_eq!(the_canary(&c).spec.service.as_ref().unwrap().port, 8080);
    assert_eq!(codes(&c), ["workload-ref-scaled", "no-traffic-routing"]);

    // Without the Deployment, the report says to scale it.
    let rollout = docs(fixture!("workload-ref.yaml")).pop().unwrap();
    let c = convert(vec![rollout]);
    let e = c.report.iter().find(|e| e.reason.code() == "workload-ref-not-in-input").unwrap();
    assert!(
        e.reason.hint().contains("kubectl scale deployment rollout-ref-deployment --replicas 5"),
        "{}",
        e.reason.hint()
    );
    assert!(has(&c, "service-port-unknown"));
}

#[test]
fn job_web_and_experiment_analyses_are_reported() {
    let c = run(&[
        fixture!("analysis-templates.yaml"),
        fixture!("cluster-analysis-templates.yaml"),
        fixture!("rollout-analysis-step.yaml"),
    ]);
    veer_accepts(&c);
    assert_eq!(analysis(&c).metrics, None);
    let jobs: Vec<&str> =
        c.report.iter().filter(|e| e.reason.code() == "job-metric").map(|e| e.object.name.as_str()).collect();
    assert_eq!(jobs, ["pass", "random-fail", "always-pass"]);
    assert!(has(&c, "step-analysis"));
    assert_eq!(c.metric_templates().count(), 0);

    let c = run(&[fixture!("analysistemplate-web-background.yaml")]);
    assert_eq!(codes(&c), ["web-metric"]);
    let hint = c.report[0].reason.hint();
    assert!(hint.contains("url: https://kubernetes.default.svc/version"), "{hint}");

    let c = run(&[fixture!("rollout-bg-analysis-with-args.yaml")]);
    veer_accepts(&c);
    assert!(has(&c, "web-metric") && has(&c, "analysis-starting-step"));
    // The Secret passes through unchanged.
    assert_eq!(kept(&c).iter().map(|v| v["kind"].as_str().unwrap()).collect::<Vec<_>>(), ["Secret"]);

    let c = run(&[fixture!("rollout-experiment-step.yaml")]);
    assert!(has(&c, "experiment"));
    let c = run(&[fixture!("istio-mirror.yaml")]);
    veer_accepts(&c);
    for code in ["managed-routes", "set-canary-scale", "set-mirror-route", "no-set-weight", "pause-gate"] {
        assert!(has(&c, code), "{code} in {:?}", codes(&c));
    }
    // The Gateway the VirtualService uses stays.
    assert_eq!(kept(&c)[0]["kind"], "Gateway");
}

// ------------------------------------------------------------------------------------ shapes

const POD: &str = r#"
  replicas: 2
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers: [{name: podinfod, image: "stefanprodan/podinfo:6.0.0", ports: [{containerPort: 9898}]}]
"#;

fn rollout(strategy: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: podinfo, namespace: test}}\nspec:{POD}  strategy:\n{strategy}"
    )
}

const TEMPLATE: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: checks, namespace: test}
spec:
  args: [{name: service}, {name: hash}, {name: env}, {name: token, valueFrom: {secretKeyRef: {name: s, key: k}}}]
  metrics:
  - name: success
    interval: 1m
    successCondition: "{{args.cond}}"
    failureLimit: 2
    provider:
      prometheus:
        address: http://prometheus:9090
        query: sum(rate(requests{svc="{{args.service}}"}[1m]))
"#;

fn with_condition(success: &str, failure: Option<&str>) -> Conversion {
    let mut t = TEMPLATE.replace("\"{{args.cond}}\"", &format!("{success:?}"));
    if let Some(f) = failure {
        t = t.replace("    failureLimit: 2", &format!("    failureCondition: {f:?}\n    failureLimit: 2"));
    }
    let r = rollout(
        "    canary:\n      analysis:\n        templates: [{templateName: checks}]\n        args: [{name: service, value: podinfo}]\n      steps: [{setWeight: 50}, {pause: {duration: 1m}}]\n",
    );
    run(&[&t, &r])
}

#[test]
fn conditions_become_threshold_ranges() {
    for (success, failure, range, want) in [
        ("result[0] >= 0.99", None, Some((Some(0.99), None)), vec![]),
        ("result[0] <= 500", None, Some((None, Some(500.0))), vec![]),
        ("result[0] > 0.9", None, Some((Some(0.9), None)), vec!["strict-bound"]),
        ("len(result) == 0 || result[0] >= 0.95", None, Some((Some(0.95), None)), vec!["no-data-passes"]),
        ("result[0] >= 0.9 && result[0] <= 1", None, Some((Some(0.9), Some(1.0))), vec![]),
        ("result[0] >= 0.95", Some("result[0] < 0.95"), Some((Some(0.95), None)), vec![]),
        ("result[0] >= 0.95", Some("result[0] < 0.5"), Some((Some(0.95), None)), vec!["inconclusive"]),
        ("result == 'true'", None, None, vec!["condition-unmapped"]),
        ("result[0] < 1 || result[0] > 2", None, None, vec!["condition-unmapped"]),
    ] {
        let c = with_condition(success, failure);
        veer_accepts(&c);
        let got =
            analysis(&c).metrics.as_ref().map(|m| m[0].threshold_range.unwrap()).map(|r| (r.min, r.max));
        assert_eq!(got, range, "{success} / {failure:?}");
        let mine: Vec<&str> = codes(&c)
            .into_iter()
            .filter(|c| {
                matches!(*c, "strict-bound" | "no-data-passes" | "inconclusive" | "condition-unmapped")
            })
            .collect();
        assert_eq!(mine, want, "{success} / {failure:?}");
    }
    // Conditions may use arguments too.
    let t = TEMPLATE.replace("\"{{args.cond}}\"", "\"result[0] >= {{args.min}}\"");
    let r = rollout(
        "    canary:\n      analysis:\n        templates: [{templateName: checks}]\n        args: [{name: service, value: podinfo}, {name: min, value: '0.9'}]\n      steps: [{setWeight: 50}]\n",
    );
    let c = run(&[&t, &r]);
    assert_eq!(metric(&c, "success").threshold_range.unwrap().min, Some(0.9));
}

#[test]
fn arguments_the_canary_cannot_carry() {
    let query_with = |arg: &str| {
        TEMPLATE
            .replace("\"{{args.cond}}\"", "\"result[0] >= 1\"")
            .replace("{{args.service}}", &format!("{{{{args.{arg}}}}}"))
    };
    let canary_with = |args: &str| {
        rollout(&format!(
            "    canary:\n      analysis:\n        templates: [{{templateName: checks}}]\n        args: {args}\n      steps: [{{setWeight: 50}}]\n"
        ))
    };
    // A pod template hash exists only at run time: the metric is left out.
    let c = run(&[
        &query_with("hash"),
        &canary_with("[{name: hash, valueFrom: {podTemplateHashValue: Latest}}]"),
    ]);
    veer_accepts(&c);
    assert_eq!(analysis(&c).metrics, None);
    let e = c.report.iter().find(|e| e.reason.code() == "argument-unresolved").unwrap();
    assert_eq!(e.path, "spec.strategy.canary.analysis.args");
    assert!(e.reason.hint().contains("{{ target }}"));
    // A Secret, and an argument nobody gives a value.
    for (arg, args) in [("token", "[]"), ("env", "[]")] {
        let c = run(&[&query_with(arg), &canary_with(args)]);
        assert!(has(&c, "argument-unresolved"), "{arg}");
        assert_eq!(analysis(&c).metrics, None);
    }
    // A field of the Rollout as written is read now.
    let r = canary_with("[{name: env, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['env']\"}}}]")
        .replace(
            "metadata: {name: podinfo, namespace: test}",
            "metadata: {name: podinfo, namespace: test, labels: {env: prod}}",
        );
    let c = run(&[&query_with("env"), &r]);
    veer_accepts(&c);
    assert_eq!(metric(&c, "success").template_variables.as_ref().unwrap()["env"], "prod");
    assert!(has(&c, "argument-from-field"));
    // A missing template.
    let c = run(&[&canary_with("[]")]);
    assert!(has(&c, "template-not-in-input"));
}

#[test]
fn weights_pauses_and_gates() {
    let steps = |s: &str| {
        rollout(&format!(
            "    canary:\n      trafficRouting: {{istio: {{virtualService: {{name: vs}}}}}}\n      steps: {s}\n"
        ))
    };
    // Weights only grow; 0 and repeats are left out; above 100 is 100.
    let c = run(&[&steps(
        "[{setWeight: 0}, {setWeight: 10}, {setWeight: 10}, {setWeight: 5}, {setWeight: 50}, {setWeight: 120}]",
    )]);
    veer_accepts(&c);
    assert_eq!(analysis(&c).step_weights, Some(vec![10, 50, 100]));
    let mine: Vec<&str> = codes(&c).into_iter().filter(|c| c.contains("weight")).collect();
    assert_eq!(mine, ["zero-weight", "weight-not-increasing", "weight-not-increasing", "weight-above-100"]);

    // An indefinite pause before the first weight holds the rollout; after the last, the promotion.
    let c = run(&[&steps(
        "[{pause: {}}, {setWeight: 10}, {pause: {duration: 30}}, {setWeight: 20}, {pause: {duration: '30s'}}, {pause: {}}]",
    )]);
    veer_accepts(&c);
    let types: Vec<String> = hooks(&c).into_iter().map(|(t, _)| t).collect();
    assert_eq!(types, ["confirm-rollout", "confirm-promotion", "post-rollout"]);
    assert_eq!(analysis(&c).interval.as_deref(), Some("30s"));
    assert!(has(&c, "shared-gate"));
    assert!(!has(&c, "pause-durations-differ"));

    // Hours, and the bounds of the interval.
    let c = run(&[&steps(
        "[{setWeight: 10}, {pause: {duration: 1h}}, {setWeight: 20}, {pause: {duration: 3600}}]",
    )]);
    assert_eq!(analysis(&c).interval.as_deref(), Some("1h"));
    let c = run(&[&steps("[{setWeight: 10}, {pause: {duration: 48h}}]")]);
    veer_accepts(&c);
    assert_eq!(analysis(&c).interval.as_deref(), Some("24h"));
    assert!(has(&c, "interval-capped"));
    let c = run(&[&steps("[{setWeight: 10}, {pause: {duration: 5s}}]")]);
    assert!(has(&c, "interval-below-minimum"));
    let c = run(&[&steps("[{setWeight: 10}, {pause: {duration: soon}}]")]);
    assert!(has(&c, "invalid-duration"));

    // maxTrafficWeight: weights become percentages.
    let r = rollout(
        "    canary:\n      trafficRouting: {maxTrafficWeight: 1000, istio: {virtualService: {name: vs}}}\n      steps: [{setWeight: 50}, {setWeight: 255}]\n",
    );
    let c = run(&[&r]);
    assert_eq!(analysis(&c).step_weights, Some(vec![5, 26]));
    assert!(has(&c, "weights-scaled"));

    // The load tester's URL: the Rollout's namespace, or the options.
    let c = run(&[&steps("[{setWeight: 10}, {pause: {}}]")]);
    assert_eq!(hooks(&c)[0].1, "http://flagger-loadtester.test/gate/check");
    let options = Options { loadtester_url: Some("http://lt.example:8080".into()), namespace: None };
    let c = run_with(&steps("[{setWeight: 10}, {pause: {}}]"), &options);
    assert_eq!(hooks(&c)[1].1, "http://lt.example:8080/gate/close");
}

#[test]
fn blue_green_timing_and_analysis() {
    let t = TEMPLATE.replace("\"{{args.cond}}\"", "\"result[0] >= 0.99\"");
    let r = rollout(
        "    blueGreen:\n      activeService: podinfo\n      autoPromotionSeconds: 150\n      scaleDownDelaySeconds: 30\n      prePromotionAnalysis:\n        templates: [{templateName: checks}]\n        args: [{name: service, value: podinfo-preview}]\n      postPromotionAnalysis:\n        templates: [{templateName: checks}]\n        args: [{name: service, value: podinfo}]\n",
    );
    let c = run(&[&t, &r]);
    veer_accepts(&c);
    let a = analysis(&c);
    // The metrics' interval (1m): 150s are three iterations.
    assert_eq!((a.interval.as_deref(), a.iterations), (Some("1m"), Some(3)));
    assert_eq!(
        a.metrics.as_ref().unwrap().iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["success", "success-2"]
    );
    assert_eq!(a.threshold, Some(3));
    for code in ["auto-promotion-rounded", "post-promotion-analysis", "scale-down-delay", "metric-renamed"] {
        assert!(has(&c, code), "{code} in {:?}", codes(&c));
    }
    // The apex Service is named like the target: no service.name.
    assert_eq!(the_canary(&c).spec.service.as_ref().unwrap().name, None);
}

#[test]
fn virtual_service_routes_and_destination_rules() {
    let r = rollout(
        "    canary:\n      stableService: podinfo\n      canaryService: podinfo-canary\n      trafficRouting:\n        istio:\n          virtualService: {name: podinfo, routes: [primary], tcpRoutes: [{port: 3000}]}\n          destinationRule: {name: podinfo, canarySubsetName: canary, stableSubsetName: stable}\n      steps: [{setWeight: 20}, {pause: {duration: 1m}}]\n",
    );
    let vs = r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: podinfo, namespace: test}
spec:
  hosts: [podinfo, app.example.com]
  gateways: [mesh, public]
  http:
  - name: primary
    match: [{uri: {prefix: /api}}]
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 1s}
    fault: {abort: {percentage: {value: 1}, httpStatus: 500}}
    route: [{destination: {host: podinfo}, weight: 100}, {destination: {host: podinfo-canary}, weight: 0}]
  - name: legacy
    route: [{destination: {host: legacy}}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: podinfo, namespace: test}
spec:
  host: podinfo
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
  subsets: [{name: stable, labels: {app: podinfo}}, {name: canary, labels: {app: podinfo}}]
"#;
    let c = run(&[&r, vs]);
    veer_accepts(&c);
    let svc = the_canary(&c).spec.service.clone().unwrap();
    assert_eq!(svc.hosts, Some(vec!["podinfo".to_string(), "app.example.com".to_string()]));
    assert_eq!(svc.gateways, Some(vec!["mesh".to_string(), "public".to_string()]));
    assert_eq!(svc.timeout.as_deref(), Some("5s"));
    assert_eq!(svc.retries.as_ref().unwrap().attempts, Some(3));
    assert_eq!(svc.match_.as_ref().unwrap()[0].uri.as_ref().unwrap().prefix.as_deref(), Some("/api"));
    assert_eq!(svc.traffic_policy, Some(json!({"loadBalancer": {"simple": "LEAST_REQUEST"}})));
    assert_eq!(svc.app_protocol.as_deref(), Some("tcp"));
    let fields = c.report.iter().find(|e| e.reason.code() == "route-fields-dropped").unwrap();
    assert!(fields.reason.message().contains("fault"));
    let other = c.report.iter().find(|e| e.reason.code() == "other-routes-dropped").unwrap();
    assert!(other.reason.message().contains("legacy"));
    assert!(has(&c, "tcp-routes"));
    assert!(kept(&c).is_empty(), "the VirtualService and DestinationRule are replaced");
}

#[test]
fn routers_veer_does_not_drive_and_other_objects() {
    let r = rollout(
        "    canary:\n      stableService: podinfo\n      canaryService: podinfo-canary\n      trafficRouting:\n        alb: {ingress: podinfo, servicePort: 80}\n      steps: [{setWeight: 20}]\n",
    );
    let c = run(&[&r]);
    veer_accepts(&c);
    assert_eq!(the_canary(&c).spec.provider, None);
    assert!(has(&c, "traffic-router-unsupported"));
    let r = rollout(
        "    canary:\n      trafficRouting: {istio: {virtualService: {name: vs}}, smi: {}, traefik: {weightedTraefikServiceName: x}}\n      steps: [{setWeight: 20}]\n",
    );
    let c = run(&[&r]);
    assert_eq!(the_canary(&c).spec.provider.as_deref(), Some("istio"));
    assert!(
        has(&c, "several-traffic-routers")
            && has(&c, "traffic-router-unsupported")
            && has(&c, "virtual-service-not-in-input")
    );

    // HPAs of the Rollout scale the Deployment; the Canary copies a v2 one to the primary.
    let hpa = |v: &str, name: &str| {
        format!(
            "apiVersion: autoscaling/{v}\nkind: HorizontalPodAutoscaler\nmetadata: {{name: {name}, namespace: test}}\nspec:\n  scaleTargetRef: {{apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: podinfo}}\n  minReplicas: 2\n  maxReplicas: 4\n"
        )
    };
    let r = rollout("    canary:\n      steps: [{setWeight: 20}]\n");
    let c = run(&[&r, &hpa("v2", "podinfo"), &hpa("v1", "old")]);
    veer_accepts(&c);
    assert_eq!(the_canary(&c).spec.autoscaler_ref.as_ref().unwrap().name, "podinfo");
    for v in kept(&c) {
        assert_eq!(
            v["spec"]["scaleTargetRef"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"})
        );
    }
    assert!(has(&c, "autoscaler-retargeted") && has(&c, "autoscaler-version"));

    // Other Argo kinds are left out; other objects pass; a List is read item by item.
    let c = run(&[
        "apiVersion: argoproj.io/v1alpha1\nkind: Experiment\nmetadata: {name: e}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\njust text\n",
        "apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: ConfigMap, metadata: {name: d}}]\n",
    ]);
    assert_eq!(codes(&c), ["unsupported-kind", "not-an-object"]);
    assert_eq!(
        kept(&c).iter().map(|v| v["metadata"]["name"].as_str().unwrap()).collect::<Vec<_>>(),
        ["c", "d"]
    );

    // A selector without a label Veer knows; a pod template field Kubernetes does not know.
    let r = rollout("    canary:\n      steps: [{setWeight: 20}]\n")
        .replace("matchLabels: {app: podinfo}", "matchLabels: {tier: web}")
        .replace("labels: {app: podinfo}", "labels: {tier: web}")
        .replace("name: podinfod,", "name: podinfod, imagePullPolice: Always,");
    let c = run(&[&r]);
    assert!(has(&c, "no-selector-label"));
    let dropped = c.report.iter().find(|e| e.reason.code() == "pod-template-fields-dropped").unwrap();
    assert!(dropped.reason.message().contains("spec.template.spec.containers[0].imagePullPolice"));

    // Two Rollouts of one name: the second Canary is left out.
    let r = rollout("    canary:\n      steps: [{setWeight: 20}]\n");
    let c = run(&[&r, &r]);
    assert_eq!(c.canaries().count(), 1);
    assert!(has(&c, "duplicate-object"));
}

// ------------------------------------------------------------------------------------ properties

/// Any JSON value, biased towards the keys a Rollout has.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("spec".to_string()),
        Just("strategy".to_string()),
        Just("canary".to_string()),
        Just("blueGreen".to_string()),
        Just("steps".to_string()),
        Just("setWeight".to_string()),
        Just("pause".to_string()),
        Just("duration".to_string()),
        Just("analysis".to_string()),
        Just("templates".to_string()),
        Just("templateName".to_string()),
        Just("args".to_string()),
        Just("trafficRouting".to_string()),
        Just("istio".to_string()),
        Just("virtualService".to_string()),
        Just("name".to_string()),
        Just("metadata".to_string()),
        Just("template".to_string()),
        Just("selector".to_string()),
        Just("workloadRef".to_string()),
        Just("metrics".to_string()),
        Just("successCondition".to_string()),
        Just("provider".to_string()),
        Just("prometheus".to_string()),
        Just("query".to_string()),
        "[a-zA-Z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1000i64..1000).prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("10m"),
            Just("{{args.x}}"),
            Just("result[0] >= 1"),
            Just("-1"),
            Just("99999999999h")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A fixture's documents with one value somewhere replaced by `replacement`.
fn mutate(mut v: Value, path: &[usize], replacement: Value) -> Value {
    fn walk(v: &mut Value, path: &[usize], replacement: Value) {
        let Some((first, rest)) = path.split_first() else {
            *v = replacement;
            return;
        };
        match v {
            Value::Object(m) if !m.is_empty() => {
                let key = m.keys().nth(first % m.len()).cloned().unwrap();
                walk(m.get_mut(&key).unwrap(), rest, replacement);
            }
            Value::Array(a) if !a.is_empty() => {
                let n = a.len();
                walk(&mut a[first % n], rest, replacement);
            }
            other => *other = replacement,
        }
    }
    walk(&mut v, path, replacement);
    v
}

const ALL_FIXTURES: [&str; 8] = [
    fixture!("rollout-canary.yaml"),
    fixture!("rollout-bluegreen.yaml"),
    fixture!("docs-background-analysis.yaml"),
    fixture!("docs-prometheus.yaml"),
    fixture!("istio-subset-split.yaml"),
    fixture!("workload-ref.yaml"),
    fixture!("nginx.yaml"),
    fixture!("rollout-bg-analysis-with-args.yaml"),
];

/// What holds for any output: Veer accepts every Canary, weights grow within 1..=100, and the
/// YAML reads back.
fn invariants(c: &Conversion) -> Result<(), TestCaseError> {
    for canary in c.canaries() {
        prop_assert!(Params::new(&canary.spec, &Settings::default()).is_ok(), "{}", c.to_yaml());
        let a = canary.spec.analysis.as_ref().unwrap();
        if let Some(w) = &a.step_weights {
            prop_assert!(!w.is_empty());
            prop_assert!(w.windows(2).all(|p| p[0] < p[1]), "{:?}", w);
            prop_assert!(w.iter().all(|x| (1..=100).contains(x)), "{:?}", w);
            prop_assert_eq!(a.max_weight, w.last().copied());
        }
        let interval = crate::duration::parse(a.interval.as_deref().unwrap()).unwrap();
        prop_assert!(interval <= crate::api::limits::MAX_ANALYSIS_INTERVAL);
    }
    let back: Vec<Value> =
        serde_saphyr::from_multiple(&c.to_yaml()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(back.len(), c.objects.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any documents at all: no panic, and the invariants hold.
    #[test]
    fn any_json_converts_without_panicking(docs in prop::collection::vec(any_json(), 0..4)) {
        let c = convert(docs);
        invariants(&c)?;
    }

    /// The examples with any one value replaced by anything.
    #[test]
    fn damaged_examples_convert_without_panicking(
        which in 0..ALL_FIXTURES.len(),
        doc in 0usize..8,
        path in prop::collection::vec(0usize..16, 0..8),
        replacement in any_json(),
    ) {
        let mut all = docs(ALL_FIXTURES[which]);
        let n = all.len();
        let i = doc % n;
        all[i] = mutate(all[i].clone(), &path, replacement);
        let c = convert(all);
        invariants(&c)?;
    }

    /// Any list of steps: the weights grow strictly within 1..=100, the last is maxWeight, and
    /// every step left out is reported.
    #[test]
    fn step_weights_grow(steps in prop::collection::vec(prop_oneof![
        (-50i64..250).prop_map(|w| json!({"setWeight": w})),
        (0u64..200_000).prop_map(|d| json!({"pause": {"duration": d}})),
        Just(json!({"pause": {}})),
        Just(json!({"analysis": {"templates": [{"templateName": "t"}]}})),
    ], 0..12)) {
        let mut r = docs(&rollout("    canary:\n      steps: []\n")).remove(0);
        r["spec"]["strategy"]["canary"]["steps"] = Value::Array(steps.clone());
        let c = convert(vec![r]);
        invariants(&c)?;
        let kept = analysis(&c).step_weights.clone().unwrap();
        let written = steps.iter().filter(|s| s.get("setWeight").is_some()).count();
        let left_out = codes(&c).iter().filter(|c| matches!(**c, "zero-weight" | "weight-not-increasing")).count();
        let kept_from_steps = if written == left_out { 0 } else { kept.len() };
        prop_assert_eq!(kept_from_steps + left_out, written);
    }
}

#[test]
fn a_routing_object_named_like_veers_own_is_taken_over_not_deleted() {
    let r = rollout(
        "    canary:\n      stableService: podinfo\n      trafficRouting: {istio: {virtualService: {name: podinfo}}}\n      steps: [{setWeight: 20}]\n",
    );
    let c = run(&[&r]);
    let e = c.report.iter().find(|e| e.reason.code() == "routing-object-adopted").expect("adopted");
    assert!(e.reason.hint().contains("do not delete it"), "{}", e.reason.hint());
    assert!(!has(&c, "routing-object-replaced"));
}
