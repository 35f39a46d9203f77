//! The Helm charts `charts/veer` and `charts/veer-loadtester`, checked with the real helm
//! (`VEER_E2E_HELM`, built by e2e/build-tools.sh): lint, rendering of several value sets (whose args
//! are parsed by the binaries' own flag parsers; among them values files for Flagger's
//! charts, tests/charts/README.md), schema and template rejections, and install /
//! upgrade / uninstall on the local control plane, where the RBAC the charts grant is checked with
//! SubjectAccessReviews and, for the load tester, by running its gate store as its ServiceAccount.
//! Timings are printed, not asserted.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clap::Parser;
use common::helm::{Helm, Rendered, chart, data_file};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{Value, json};
use veer::cli::ControllerArgs;
use veer::loadtester::gates::{ConfigMapGateStore, GateKind, GateStore, gate_key};

/// `veer controller ARGS`, as the chart runs it (`command: [/usr/local/bin/veer]`, `args: [controller, ...]`).
#[derive(Parser)]
struct VeerCli {
    #[command(subcommand)]
    command: VeerCommand,
}

#[derive(clap::Subcommand)]
enum VeerCommand {
    Controller(ControllerArgs),
}

/// Parses the rendered controller args with the controller's own flag definitions.
fn controller_args(rendered: &Rendered) -> ControllerArgs {
    let args = rendered.args();
    match VeerCli::try_parse_from(std::iter::once("veer".to_owned()).chain(args.iter().cloned())) {
        Ok(VeerCli { command: VeerCommand::Controller(a) }) => a,
        Err(e) => panic!("veer does not accept the chart's args {args:?}:\n{e}"),
    }
}

/// Parses the rendered load tester args with veer-loadtester's own flag definitions.
fn loadtester_args(rendered: &Rendered) -> veer::loadtester::Args {
    let args = rendered.args();
    let argv = std::iter::once("veer-loadtester".to_owned()).chain(args.iter().cloned()).map(Into::into);
    veer::loadtester::Args::try_parse_from(veer::loadtester::normalize_go_flags(argv))
        .unwrap_or_else(|e| panic!("veer-loadtester does not accept the chart's args {args:?}:\n{e}"))
}

/// (apiGroup, resource, verb, resourceName) of every rule, expanded.
fn grants(rules: &Value) -> BTreeSet<(String, String, String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect()).unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in rules.as_array().expect("rules") {
        assert!(rule.get("nonResourceURLs").is_none(), "no nonResourceURLs expected: {rule}");
        let names = strings(&rule["resourceNames"]);
        let names = if names.is_empty() { vec![String::new()] } else { names };
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    for n in &names {
                        out.insert((g.clone(), r.clone(), v.clone(), n.clone()));
                    }
                }
            }
        }
    }
    out
}

fn expand(table: &[(&str, &[&str], &[&str])]) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in table {
        for r in *resources {
            for v in *verbs {
                out.insert((group.to_string(), r.to_string(), v.to_string(), String::new()));
            }
        }
    }
    out
}

const WRITE: &[&str] = &["get", "list", "watch", "create", "patch"];

/// Exactly what the controller calls (see charts/veer/templates/rbac.yaml for why).
fn controller_grants(config_tracking: bool) -> BTreeSet<(String, String, String, String)> {
    let mut table: Vec<(&str, &[&str], &[&str])> = vec![
        ("flagger.app", &["canaries", "metrictemplates", "alertproviders"], &["get", "list", "watch"]),
        ("flagger.app", &["canaries", "canaries/status"], &["patch"]),
        ("flagger.app", &["canaries/finalizers"], &["update"]),
        ("apps", &["deployments", "daemonsets"], WRITE),
        ("", &["services", "configmaps"], WRITE),
        ("autoscaling", &["horizontalpodautoscalers"], WRITE),
        ("networking.k8s.io", &["ingresses"], WRITE),
        ("networking.istio.io", &["virtualservices", "destinationrules"], WRITE),
        ("gateway.networking.k8s.io", &["httproutes"], WRITE),
        ("split.smi-spec.io", &["trafficsplits"], WRITE),
        ("", &["events"], &["create", "patch"]),
        ("", &["secrets"], &["get", "list", "watch"]),
    ];
    if config_tracking {
        table.push(("", &["secrets"], &["create", "patch"]));
    }
    let mut grants = expand(&table);
    // At start-up the controller checks that the installed Canary CRD is Veer's.
    grants.insert((
        "apiextensions.k8s.io".into(),
        "customresourcedefinitions".into(),
        "get".into(),
        "canaries.flagger.app".into(),
    ));
    grants
}

fn container(rendered: &Rendered) -> &Value {
    &rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn charts_pass_helm_lint_strict() {
    let helm = Helm::new();
    let veer = chart("veer");
    let loadtester = chart("veer-loadtester");
    let flagger_values = data_file("flagger-values.yaml");
    let flagger_lt_values = data_file("flagger-loadtester-values.yaml");
    let flagger_lt_values_all = data_file("flagger-loadtester-values-all.yaml");
    let t = Instant::now();
    for args in [
        vec!["lint", "--strict", veer.to_str().unwrap()],
        vec!["lint", "--strict", veer.to_str().unwrap(), "-f", flagger_values.to_str().unwrap()],
        vec![
            "lint",
            "--strict",
            veer.to_str().unwrap(),
            "--set",
            "leaderElection.enabled=true,leaderElection.replicaCount=2,podMonitor.enabled=true,serviceMonitor.enabled=true,podDisruptionBudget.enabled=true",
        ],
        vec!["lint", "--strict", loadtester.to_str().unwrap()],
        vec![
            "lint",
            "--strict",
            loadtester.to_str().unwrap(),
            "--set",
            "allowShell=true,allowCommands[0]=helm test podinfo,token.value=t,gateStore.type=file",
        ],
        vec![
            "lint",
            "--strict",
            veer.to_str().unwrap(),
            "--set",
            "loadtesterAuth.enabled=true,loadtesterAuth.hosts[0]=flagger-loadtester.test,loadtesterAuth.hosts[1]=lt.test:80",
        ],
        vec![
            "lint",
            "--strict",
            loadtester.to_str().unwrap(),
            "--set",
            "tokenReview.allowedServiceAccounts[0]=system:serviceaccount:veer-system:veer,unauthenticatedMetrics=true,limits.readTimeout=5s",
            "--set",
            "networkPolicy.enabled=true,networkPolicy.from[0].namespaceSelector.matchLabels.team=ci",
        ],
        vec!["lint", "--strict", loadtester.to_str().unwrap(), "-f", flagger_lt_values.to_str().unwrap()],
        vec!["lint", "--strict", loadtester.to_str().unwrap(), "-f", flagger_lt_values_all.to_str().unwrap()],
    ] {
        let out = helm.ok(&args);
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
    println!("9 × helm lint --strict: {:?}", t.elapsed());
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn default_values_render_a_locked_down_controller() {
    let helm = Helm::new();
    let r = helm.template("veer", "veer", "veer-system", &[]);
    assert_eq!(
        r.kinds().into_iter().collect::<BTreeSet<_>>(),
        ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
            .map(String::from)
            .into_iter()
            .collect()
    );

    let d = r.one("Deployment");
    assert_eq!(d["metadata"]["name"], "veer");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(
        d["spec"]["strategy"]["type"], "Recreate",
        "two controllers must not overlap without leader election"
    );
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "veer");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");

    let c = container(&r);
    assert_eq!(c["command"], json!(["/usr/local/bin/veer"]));
    assert_eq!(c["args"][0], "controller");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
    );
    assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "http"}));
    assert_eq!(c["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "http"}));
    assert_eq!(c["ports"], json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(
        c["env"][0],
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    );

    // Every arg is a flag the controller knows, and the defaults come through.
    let a = controller_args(&r);
    assert_eq!(a.port, 8080);
    assert_eq!(a.metrics_server, "http://prometheus:9090");
    assert_eq!(a.mesh_provider, "istio");
    assert!(a.enable_config_tracking);
    assert!(!a.enable_leader_election);
    assert_eq!(a.namespace, "");

    let svc = r.one("Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(svc["spec"]["selector"], d["spec"]["selector"]["matchLabels"]);

    assert_eq!(grants(&r.one("ClusterRole")["rules"]), controller_grants(true));
    let binding = r.one("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "veer");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "veer", "namespace": "veer-system"}])
    );
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn leader_election_with_two_replicas() {
    let helm = Helm::new();
    let r = helm.template(
        "veer",
        "veer",
        "ops",
        &["--set", "leaderElection.enabled=true,leaderElection.replicaCount=2"],
    );
    let d = r.one("Deployment");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let a = controller_args(&r);
    assert!(a.enable_leader_election);
    assert_eq!(a.lease_namespace(), "ops");

    // Leases only in the release namespace, and only the controller's Lease beyond "create".
    let role = r.one("Role");
    assert_eq!(role["metadata"]["namespace"], "ops");
    let lease =
        |verb: &str, name: &str| ("coordination.k8s.io".into(), "leases".into(), verb.into(), name.into());
    assert_eq!(
        grants(&role["rules"]),
        [lease("create", ""), lease("get", "veer-leader-election"), lease("update", "veer-leader-election")]
            .into_iter()
            .collect()
    );
    assert_eq!(r.one("RoleBinding")["roleRef"]["name"], role["metadata"]["name"]);
    // Nothing about Leases in the ClusterRole.
    assert_eq!(grants(&r.one("ClusterRole")["rules"]), controller_grants(true));
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn monitors_and_disruption_budget() {
    let helm = Helm::new();
    let r = helm.template(
        "veer",
        "veer",
        "veer-system",
        &[
            "--set",
            "podMonitor.enabled=true,podMonitor.additionalLabels.release=prom,serviceMonitor.enabled=true,serviceMonitor.namespace=monitoring,serviceMonitor.interval=30s",
            "--set",
            "podDisruptionBudget.enabled=true,leaderElection.enabled=true,leaderElection.replicaCount=2",
        ],
    );
    let d = r.one("Deployment");
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];
    let matches =
        |selector: &Value, labels: &Value| selector.as_object().unwrap().iter().all(|(k, v)| &labels[k] == v);

    let pm = r.one("PodMonitor");
    assert_eq!(pm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(pm["metadata"]["labels"]["release"], "prom");
    assert!(matches(&pm["spec"]["selector"]["matchLabels"], pod_labels));
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "http");
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["path"], "/metrics");
    assert_eq!(pm["spec"]["namespaceSelector"]["matchNames"], json!(["veer-system"]));

    let sm = r.one("ServiceMonitor");
    assert_eq!(sm["metadata"]["namespace"], "monitoring");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "30s");
    assert!(matches(&sm["spec"]["selector"]["matchLabels"], &r.one("Service")["metadata"]["labels"]));

    let pdb = r.one("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(matches(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn a_flagger_values_file_works_unchanged() {
    let helm = Helm::new();
    let values = data_file("flagger-values.yaml");
    let r = helm.template("flagger", "veer", "flagger-system", &["-f", values.to_str().unwrap()]);
    let a = controller_args(&r);
    assert_eq!(a.log_level, "warn", "Flagger's `warning` becomes tracing's `warn`");
    assert_eq!(a.metrics_server, "http://prometheus.istio-system:9090");
    assert_eq!(a.mesh_provider, "istio");
    assert_eq!(a.concurrency, 4, "threadiness maps to --concurrency");
    assert_eq!(a.label_prefixes(), ["app.kubernetes.io"]);
    assert_eq!(a.cluster_name, "prod-eu-1");
    assert_eq!(a.slack_channel, "deployments");
    assert_eq!(a.slack_proxy_url, "http://proxy.example.invalid:3128", "slack.proxyUrl is read");
    assert!(a.enable_leader_election);

    let d = r.one("Deployment");
    assert_eq!(d["metadata"]["name"], "flagger-veer");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    // Flagger's affinity names `{{ template "flagger.name" . }}`; it resolves to this chart's pods.
    let term =
        &pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        term["podAffinityTerm"]["labelSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "veer", "app.kubernetes.io/instance": "flagger"})
    );
    let c = container(&r);
    // Helm merges the file's securityContext.context into the chart's: Flagger's user id, and the
    // chart's hardening is kept.
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsUser"], 10001);
    assert_eq!((&sc["readOnlyRootFilesystem"], &sc["runAsNonRoot"]), (&json!(true), &json!(true)));
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["env"].as_array().unwrap().last().unwrap()["name"], "SLACK_TOKEN");
    assert!(r.find("PodDisruptionBudget").is_some());
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn no_cross_namespace_refs_reaches_the_controller() {
    let helm = Helm::new();
    let r = helm.template("veer", "veer", "veer-system", &[]);
    assert!(!controller_args(&r).no_cross_namespace_refs);
    let r = helm.template("veer", "veer", "veer-system", &["--set", "noCrossNamespaceRefs=true"]);
    assert!(controller_args(&r).no_cross_namespace_refs);
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn without_config_tracking_secrets_are_read_only() {
    let helm = Helm::new();
    let r = helm.template("veer", "veer", "veer-system", &["--set", "configTracking.enabled=false"]);
    assert!(!controller_args(&r).enable_config_tracking);
    assert_eq!(grants(&r.one("ClusterRole")["rules"]), controller_grants(false));
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn every_controller_value_reaches_its_flag() {
    let helm = Helm::new();
    let r = helm.template(
        "veer",
        "veer",
        "veer-system",
        &[
            "--set",
            "logLevel=veer=debug\\,kube=warn,logFormat=plain,meshProvider=nginx,namespace=apps,selectorLabels=app\\,name",
            "--set",
            "ingressAnnotationsPrefix=custom.ingress.kubernetes.io,ingressClass=contour,eventWebhook=http://hook.example.invalid/e",
            "--set",
            "slack.url=https://hooks.example.invalid/s,slack.proxy=http://p:3128,slack.user=veer,msteams.url=https://teams.example.invalid/t,msteams.proxyUrl=http://q:3128",
            "--set",
            "minAnalysisInterval=1s,concurrency=32",
        ],
    );
    let a = controller_args(&r);
    assert_eq!(a.log_level, "veer=debug,kube=warn");
    assert_eq!(a.log_format, veer::telemetry::LogFormat::Plain);
    assert_eq!(a.mesh_provider, "nginx");
    assert_eq!(a.namespace, "apps");
    assert_eq!(a.lease_namespace(), "apps");
    assert_eq!(a.selector_labels, ["app", "name"]);
    assert_eq!(a.ingress_annotations_prefix, "custom.ingress.kubernetes.io");
    assert_eq!(a.ingress_class, "contour");
    assert_eq!(a.event_webhook, "http://hook.example.invalid/e");
    assert_eq!(a.slack_url, "https://hooks.example.invalid/s");
    assert_eq!(a.slack_proxy_url, "http://p:3128");
    assert_eq!(a.slack_user, "veer");
    assert_eq!(a.msteams_url, "https://teams.example.invalid/t");
    assert_eq!(a.msteams_proxy_url, "http://q:3128");
    assert_eq!(a.min_analysis_interval, Duration::from_secs(1));
    assert_eq!(a.concurrency, 32);
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn the_schema_rejects_bad_values_with_the_key_in_the_message() {
    let helm = Helm::new();
    let cases: &[(&str, &[&str], &str)] = &[
        ("veer", &["--set", "meshProvider=contour"], "at '/meshProvider': value must be one of"),
        ("veer", &["--set", "leaderElection.replicaCount=-1"], "at '/leaderElection/replicaCount': minimum"),
        (
            "veer",
            &["--set", "leaderElection.enabled=yes"],
            "at '/leaderElection/enabled': got string, want boolean",
        ),
        ("veer", &["--set", "concurrency=0"], "at '/concurrency': minimum"),
        ("veer", &["--set", "concurrency=many"], "at '/concurrency': got string"),
        ("veer", &["--set", "minAnalysisInterval=ten"], "at '/minAnalysisInterval'"),
        ("veer", &["--set", "metricsServer=prometheus:9090"], "at '/metricsServer'"),
        ("veer", &["--set", "logFormat=xml"], "at '/logFormat': value must be one of 'json', 'plain'"),
        ("veer", &["--set", "namespace=Not_A_Namespace"], "at '/namespace'"),
        (
            "veer",
            &["--set", "podAnnotations.prometheus\\.io/scrape=true"],
            "at '/podAnnotations/prometheus.io~1scrape': got boolean, want string",
        ),
        ("veer", &["--set", "service.port=70000"], "at '/service/port': maximum"),
        ("veer", &["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (
            "veer",
            &["--set", "podDisruptionBudget.minAvailable=half"],
            "at '/podDisruptionBudget/minAvailable'",
        ),
        ("veer", &["--set", "replicas=2"], "additional properties 'replicas' not allowed"),
        ("veer", &["--set", "slack.webhook=x"], "at '/slack': additional properties 'webhook' not allowed"),
        (
            "veer",
            &["--set", "loadtesterAuth.enabled=yes"],
            "at '/loadtesterAuth/enabled': got string, want boolean",
        ),
        ("veer", &["--set", "loadtesterAuth.hosts[0]=http://lt.test/"], "at '/loadtesterAuth/hosts/0'"),
        (
            "veer",
            &["--set", "loadtesterAuth.expirationSeconds=60"],
            "at '/loadtesterAuth/expirationSeconds': minimum",
        ),
        ("veer", &["--set", "loadtesterAuth.audience="], "at '/loadtesterAuth/audience'"),
        (
            "veer-loadtester",
            &["--set", "gateStore.type=memory"],
            "at '/gateStore/type': value must be one of 'configmap', 'file'",
        ),
        ("veer-loadtester", &["--set", "cmd.timeout=forever"], "at '/cmd/timeout'"),
        ("veer-loadtester", &["--set", "replicaCount=-2"], "at '/replicaCount': minimum"),
        ("veer-loadtester", &["--set", "allowShell=1"], "at '/allowShell': got number, want boolean"),
        ("veer-loadtester", &["--set", "limits.maxWorkers=0"], "at '/limits/maxWorkers': minimum"),
        ("veer-loadtester", &["--set", "containerPort=0"], "at '/containerPort': minimum"),
        (
            "veer-loadtester",
            &["--set", "tokenReview.allowedServiceAccounts[0]=veer"],
            "at '/tokenReview/allowedServiceAccounts/0'",
        ),
        ("veer-loadtester", &["--set", "unauthenticatedMetrics=yes"], "at '/unauthenticatedMetrics'"),
        (
            "veer-loadtester",
            &["--set", "networkPolicy.controller.namespace=Veer_System"],
            "at '/networkPolicy/controller/namespace'",
        ),
        (
            "veer-loadtester",
            &["--set", "networkPolicy.enable=true"],
            "additional properties 'enable' not allowed",
        ),
        ("veer-loadtester", &["--set", "limits.readTimeout=soon"], "at '/limits/readTimeout'"),
        // Flagger's keys are accepted, typos of them are not.
        (
            "veer-loadtester",
            &["--set", "istio.gatway.enabled=true"],
            "at '/istio': additional properties 'gatway' not allowed",
        ),
        (
            "veer-loadtester",
            &["--set", "podPriorityClassname=high"],
            "additional properties 'podPriorityClassname' not allowed",
        ),
        ("veer-loadtester", &["--set", "podPriorityClassName=High_Priority"], "at '/podPriorityClassName'"),
        (
            "veer-loadtester",
            &["--set", "rbac.serviceAccountAnnotation.a=b"],
            "at '/rbac': additional properties 'serviceAccountAnnotation' not allowed",
        ),
        ("veer-loadtester", &["--set", "rbac.scope=clsuter"], "at '/rbac/scope': value must be one of"),
        (
            "veer-loadtester",
            &["--set", "securityContext.context.runAsUsr=1"],
            "at '/securityContext/context': additional properties 'runAsUsr' not allowed",
        ),
        (
            "veer-loadtester",
            &["--set", "podSecurityContext.enable=false"],
            "at '/podSecurityContext': additional properties 'enable' not allowed",
        ),
        (
            "veer-loadtester",
            &["--set", "podSecurityContext.fsGroup=many"],
            "at '/podSecurityContext/fsGroup': got string, want integer",
        ),
        (
            "veer-loadtester",
            &["--set", "appmesh.enabled=yes"],
            "at '/appmesh/enabled': got string, want boolean",
        ),
        ("veer-loadtester", &["--set", "istio.tls.httpsRedirect=yes"], "at '/istio/tls/httpsRedirect'"),
        (
            "veer-loadtester",
            &["--set", "volumes[0].emptyDir.medium=Memory"],
            "at '/volumes/0': missing property 'name'",
        ),
        (
            "veer-loadtester",
            &["--set", "volumeMounts[0].name=scripts,volumeMounts[0].mountPath=scripts"],
            "at '/volumeMounts/0/mountPath'",
        ),
    ];
    for (chart, args, expected) in cases {
        let err = helm.template_fails(chart, args);
        assert!(err.contains(expected), "{chart} {args:?}: expected {expected:?} in:\n{err}");
    }
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn the_templates_refuse_contradictions_with_a_clear_message() {
    let helm = Helm::new();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "veer",
            &["--set", "leaderElection.replicaCount=2"],
            "leaderElection.replicaCount is 2 but leaderElection.enabled is false",
        ),
        ("veer", &["--set", "prometheus.install=true"], "this chart does not install a Prometheus"),
        ("veer", &["--set", "controlplane.kubeconfig.secretName=mesh"], "is not supported by Veer yet"),
        ("veer", &["--set", "rbac.pspEnabled=true"], "PodSecurityPolicy no longer exists"),
        (
            "veer",
            &["--set", "slack.proxy=http://a:1,slack.proxyUrl=http://b:2"],
            "slack.proxy and slack.proxyUrl are both set",
        ),
        ("veer", &["--set", "serviceAccount.create=false"], "serviceAccount.name is empty"),
        ("veer-loadtester", &["--set", "allowShell=true"], "allowShell is true but allowCommands is empty"),
        (
            "veer-loadtester",
            &["--set", "allowCommands[0]=curl .*"],
            "allowCommands is set but allowShell is false",
        ),
        (
            "veer-loadtester",
            &["--set", "token.value=a,token.secretName=b"],
            "token.secretName and token.value are both set",
        ),
        (
            "veer-loadtester",
            &["--set", "gateStore.type=file,replicaCount=2"],
            "a gate file belongs to one process",
        ),
        (
            "veer",
            &["--set", "loadtesterAuth.enabled=true"],
            "loadtesterAuth.enabled is true but loadtesterAuth.hosts is empty",
        ),
        (
            "veer",
            &["--set", "loadtesterAuth.hosts[0]=flagger-loadtester.test"],
            "loadtesterAuth.hosts is set but loadtesterAuth.enabled is false",
        ),
        (
            "veer-loadtester",
            &["--set", "unauthenticatedMetrics=true"],
            "unauthenticatedMetrics is true but no token or tokenReview.allowedServiceAccounts is set",
        ),
        (
            "veer-loadtester",
            &["--set", "securityContext.enabled=false,securityContext.runAsUser=1000"],
            "securityContext.enabled is false but securityContext also sets runAsUser",
        ),
        (
            "veer-loadtester",
            &[
                "--set",
                "podSecurityContext.enabled=false,podSecurityContext.context.fsGroup=1,podSecurityContext.fsGroup=2",
            ],
            "podSecurityContext.enabled is false but podSecurityContext also sets fsGroup",
        ),
        (
            "veer-loadtester",
            &["--set", "volumes[0].name=tmp,volumes[0].emptyDir.medium=Memory"],
            "a volume is named \"tmp\", a name the chart uses for its own volumes",
        ),
        (
            "veer-loadtester",
            &["--set", "serviceAccountName=runner,serviceAccount.name=other"],
            "serviceAccountName is \"runner\" but serviceAccount.name is \"other\"",
        ),
        (
            "veer-loadtester",
            &["--set", "serviceAccount.create=false"],
            "serviceAccount.create is false and no ServiceAccount is named",
        ),
    ];
    for (chart, args, expected) in cases {
        let err = helm.template_fails(chart, args);
        assert!(err.contains(expected), "{chart} {args:?}: expected {expected:?} in:\n{err}");
    }
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn loadtester_defaults_keep_flaggers_service_and_lock_down_the_pod() {
    let helm = Helm::new();
    // A release named like Flagger's keeps the Service name Canary webhooks call.
    let r = helm.template("flagger-loadtester", "veer-loadtester", "test", &[]);
    let svc = r.one("Service");
    assert_eq!(svc["metadata"]["name"], "flagger-loadtester");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    let c = container(&r);
    assert_eq!(c["command"], json!(["/usr/local/bin/veer-loadtester"]));
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["volumeMounts"], json!([{"name": "tmp", "mountPath": "/tmp"}]));
    assert_eq!(
        r.one("Deployment")["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "tmp", "emptyDir": {}}])
    );

    let a = loadtester_args(&r);
    assert_eq!(a.port, 8080);
    assert_eq!(a.timeout, Duration::from_secs(3600));
    assert_eq!(
        a.gate_store_spec(),
        veer::loadtester::GateStoreSpec::ConfigMap {
            namespace: "test".into(),
            name: "flagger-loadtester-gates".into()
        }
    );
    let config = a.config().expect("the default args make a valid configuration");
    assert!(!config.shell.shell_allowed());

    let role = r.one("Role");
    let cm = |verb: &str, name: &str| (String::new(), "configmaps".into(), verb.into(), name.into());
    assert_eq!(
        grants(&role["rules"]),
        [cm("create", ""), cm("get", "flagger-loadtester-gates"), cm("update", "flagger-loadtester-gates")]
            .into_iter()
            .collect()
    );
    assert!(r.find("Secret").is_none() && r.find("ClusterRole").is_none());
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn loadtester_options_reach_its_flags() {
    let helm = Helm::new();
    let r = helm.template(
        "lt",
        "veer-loadtester",
        "test",
        &[
            "--set",
            "allowShell=true,allowCommands[0]=helm test podinfo,allowCommands[1]=kubectl get pods -n test",
            "--set",
            "token.value=s3cret,gateStore.type=file,cmd.timeout=10m,cmd.namespaceRegexp=test|staging",
            "--set",
            "limits.maxWorkers=10,limits.maxTasks=4,limits.maxBodyBytes=65536,limits.outputLimitBytes=4096,logFormat=json,containerPort=9090",
            "--set",
            "rbac.scope=cluster,rbac.rules[0].apiGroups[0]=,rbac.rules[0].resources[0]=pods,rbac.rules[0].verbs[0]=list",
        ],
    );
    assert_eq!(
        r.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["openservicemesh.io/inbound-port-exclusion-list"],
        "9090",
        "the container port"
    );
    let a = loadtester_args(&r);
    assert!(a.allow_shell);
    assert_eq!(a.allow_commands, ["helm test podinfo", "kubectl get pods -n test"]);
    assert_eq!(a.port, 9090);
    assert_eq!(a.timeout, Duration::from_secs(600));
    assert_eq!(a.namespace_regexp.as_deref(), Some("test|staging"));
    assert_eq!((a.max_workers, a.max_tasks, a.max_body_bytes, a.output_limit_bytes), (10, 4, 65536, 4096));
    assert_eq!(a.log_format, "json");
    assert_eq!(
        a.gate_store_spec(),
        veer::loadtester::GateStoreSpec::File("/var/lib/veer-loadtester/gates.json".into())
    );
    assert_eq!(a.token_file.as_deref(), Some(std::path::Path::new("/etc/veer-loadtester/token/token")));

    let secret = r.one("Secret");
    assert_eq!(secret["data"]["token"], "czNjcmV0");
    let d = r.one("Deployment");
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let volumes = &d["spec"]["template"]["spec"]["volumes"];
    assert_eq!(volumes[1], json!({"name": "gates", "emptyDir": {}}));
    assert_eq!(volumes[2]["secret"]["secretName"], secret["metadata"]["name"]);
    let mounts = &container(&r)["volumeMounts"];
    assert_eq!(mounts[1], json!({"name": "gates", "mountPath": "/var/lib/veer-loadtester"}));
    assert_eq!(mounts[2]["readOnly"], true);
    // File store: no ConfigMap access; the extra rules went cluster-wide.
    assert!(r.find("Role").is_none());
    assert_eq!(grants(&r.one("ClusterRole")["rules"]), expand(&[("", &["pods"], &["list"])]));
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn loadtester_auth_gives_the_controller_a_projected_token_for_the_listed_hosts() {
    let helm = Helm::new();
    // Off by default: no volume, no flags.
    let r = helm.template("veer", "veer", "veer-system", &[]);
    assert!(r.one("Deployment")["spec"]["template"]["spec"].get("volumes").is_none());
    assert_eq!(controller_args(&r).webhook_token_file, None);

    let r = helm.template(
        "veer",
        "veer",
        "veer-system",
        &[
            "--set",
            "loadtesterAuth.enabled=true,loadtesterAuth.hosts[0]=flagger-loadtester.test,loadtesterAuth.hosts[1]=flagger-loadtester.prod.svc.cluster.local:80",
            "--set",
            "loadtesterAuth.expirationSeconds=1800,additionalVolumes[0].name=extra,additionalVolumes[0].emptyDir.medium=Memory",
            "--set",
            "additionalVolumeMounts[0].name=extra,additionalVolumeMounts[0].mountPath=/extra",
        ],
    );
    let a = controller_args(&r);
    let file = a.webhook_token_file.clone().expect("--webhook-token-file");
    assert_eq!(
        a.webhook_token_hosts,
        ["flagger-loadtester.test", "flagger-loadtester.prod.svc.cluster.local:80"]
    );
    for host in &a.webhook_token_hosts {
        host.parse::<veer::webhook::HostEntry>().unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    let pod = &r.one("Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0],
        json!({"name": "loadtester-token", "projected": {"sources": [{"serviceAccountToken":
            {"audience": "veer-loadtester", "expirationSeconds": 1800, "path": "token"}}]}})
    );
    assert_eq!(pod["volumes"][1]["name"], "extra", "additionalVolumes are kept");
    let mounts = &container(&r)["volumeMounts"];
    assert_eq!(
        mounts[0],
        json!({"name": "loadtester-token", "mountPath": "/var/run/secrets/veer/loadtester", "readOnly": true})
    );
    assert_eq!(mounts[1]["name"], "extra");
    assert_eq!(file, std::path::Path::new(mounts[0]["mountPath"].as_str().unwrap()).join("token"));
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn loadtester_token_review_and_network_policy() {
    let helm = Helm::new();
    let r = helm.template(
        "flagger-loadtester",
        "veer-loadtester",
        "test",
        &[
            "--set",
            "tokenReview.allowedServiceAccounts[0]=system:serviceaccount:veer-system:veer,tokenReview.allowedServiceAccounts[1]=system:serviceaccount:ci:runner",
            "--set",
            "tokenReview.audience=lt,unauthenticatedMetrics=true,limits.readTimeout=5s,networkPolicy.enabled=true",
            "--set",
            "networkPolicy.controller.namespace=ops,networkPolicy.from[0].namespaceSelector.matchLabels.team=ci",
        ],
    );
    let a = loadtester_args(&r);
    assert_eq!(a.read_timeout, Duration::from_secs(5));
    let config = a.config().expect("the chart's args make a valid configuration");
    let review = config.token_review.expect("TokenReview is on");
    assert_eq!(review.audience, "lt");
    let allowed: Vec<&str> = review.allowed.iter().map(|u| u.as_str()).collect();
    assert_eq!(allowed, ["system:serviceaccount:ci:runner", "system:serviceaccount:veer-system:veer"]);
    assert!(config.unauthenticated_metrics);

    // Exactly "create tokenreviews", cluster-wide, for the load tester's ServiceAccount.
    let role = r.one("ClusterRole");
    assert_eq!(role["metadata"]["name"], "flagger-loadtester-test-tokenreview");
    assert_eq!(grants(&role["rules"]), expand(&[("authentication.k8s.io", &["tokenreviews"], &["create"])]));
    let binding = r.one("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "flagger-loadtester", "namespace": "test"}])
    );

    let policy = r.one("NetworkPolicy");
    let pod_labels = &r.one("Deployment")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in policy["spec"]["podSelector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "the policy selects the load tester's pods");
    }
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "veer", "app.kubernetes.io/component": "controller"}}
                },
                {"namespaceSelector": {"matchLabels": {"team": "ci"}}}
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}]
        }])
    );
    // The policy's controller labels are those the veer chart gives its pods.
    let veer = helm.template("veer", "veer", "ops", &[]);
    let controller_pods = &veer.one("Deployment")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&controller_pods[k], v, "{k}");
    }

    // Off by default.
    let r = helm.template("flagger-loadtester", "veer-loadtester", "test", &[]);
    assert!(r.find("NetworkPolicy").is_none() && r.find("ClusterRole").is_none());
}

/// The kinds `rendered` holds, sorted.
fn kinds(rendered: &Rendered) -> BTreeSet<String> {
    rendered.kinds().into_iter().collect()
}

fn set_of(kinds: &[&str]) -> BTreeSet<String> {
    kinds.iter().map(|k| k.to_string()).collect()
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn flaggers_loadtester_values_file_works_unchanged() {
    let helm = Helm::new();
    // Flagger's own values.yaml, verbatim: its defaults as a values file.
    let values = data_file("flagger-loadtester-values.yaml");
    let r = helm.template("flagger-loadtester", "veer-loadtester", "test", &["-f", values.to_str().unwrap()]);
    assert_eq!(
        kinds(&r),
        set_of(&["Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]),
        "no App Mesh, Istio or PodDisruptionBudget objects while they are disabled"
    );
    let svc = r.one("Service");
    assert_eq!(
        (&svc["metadata"]["name"], &svc["spec"]["ports"][0]["port"]),
        (&json!("flagger-loadtester"), &json!(80))
    );

    let a = loadtester_args(&r);
    assert_eq!(a.timeout, Duration::from_secs(3600));
    assert_eq!(a.namespace_regexp, None, "an empty namespaceRegexp restricts nothing");
    assert_eq!(a.log_level, "info");
    a.config().expect("Flagger's defaults make a valid configuration");

    let template = &r.one("Deployment")["spec"]["template"];
    // As on Flagger's pods, OSM's sidecar leaves the load tester's port to the controller outside the mesh.
    assert_eq!(
        template["metadata"]["annotations"],
        json!({"prometheus.io/scrape": "true", "prometheus.io/port": "8080",
               "openservicemesh.io/inbound-port-exclusion-list": "8080"})
    );
    let pod = &template["spec"];
    let c = container(&r);
    assert_eq!(c["image"], "ghcr.io/fluxcd/flagger-loadtester:0.38.0");
    // Flagger's `enabled: false` leaves both security contexts out, as Flagger's chart does.
    assert!(c.get("securityContext").is_none() && pod.get("securityContext").is_none(), "{pod}");
    // Flagger's requests; the chart's memory limit stays (Helm merges the maps).
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
    );
    for absent in ["priorityClassName", "imagePullSecrets"] {
        assert!(pod.get(absent).is_none(), "{absent}: {pod}");
    }
    assert_eq!(pod["volumes"], json!([{"name": "tmp", "emptyDir": {}}]));

    // rbac.create is false in Flagger's file: the gate store's Role is there all the same (the load
    // tester cannot start without it), bound to the ServiceAccount the chart creates.
    let sa = r.one("ServiceAccount");
    assert_eq!(sa["metadata"]["name"], "flagger-loadtester");
    assert!(sa["metadata"].get("annotations").is_none());
    assert_eq!(pod["serviceAccountName"], "flagger-loadtester");
    let cm = |verb: &str, name: &str| (String::new(), "configmaps".into(), verb.into(), name.into());
    assert_eq!(
        grants(&r.one("Role")["rules"]),
        [cm("create", ""), cm("get", "flagger-loadtester-gates"), cm("update", "flagger-loadtester-gates")]
            .into_iter()
            .collect()
    );
    assert_eq!(
        r.one("RoleBinding")["subjects"],
        json!([{"kind": "ServiceAccount", "name": "flagger-loadtester", "namespace": "test"}])
    );
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn every_flagger_loadtester_key_reaches_the_objects() {
    let helm = Helm::new();
    let values = data_file("flagger-loadtester-values-all.yaml");
    let values = values.to_str().unwrap();
    let r = helm.template("lt", "veer-loadtester", "test", &["-f", values]);
    assert_eq!(
        kinds(&r),
        set_of(&[
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Gateway",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "VirtualService",
        ]),
        "serviceAccountName names an existing account: no ServiceAccount; App Mesh: nothing"
    );

    // Names: fullnameOverride and nameOverride.
    let d = r.one("Deployment");
    assert_eq!(d["metadata"]["name"], "flagger-loadtester");
    assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/name"], "loadtester");
    assert_eq!(d["spec"]["replicas"], 2);
    let svc = r.one("Service");
    assert_eq!(svc["metadata"]["name"], "flagger-loadtester");
    assert_eq!((&svc["spec"]["type"], &svc["spec"]["ports"][0]["port"]), (&json!("ClusterIP"), &json!(8080)));

    let a = loadtester_args(&r);
    assert_eq!(a.log_level, "warn", "Flagger's `warning` becomes tracing's `warn`");
    assert_eq!(a.timeout, Duration::from_secs(1800));
    assert_eq!(a.namespace_regexp.as_deref(), Some("test|staging"));
    a.config().expect("a valid configuration");

    let template = &d["spec"]["template"];
    assert_eq!(template["metadata"]["labels"]["team"], "platform");
    assert_eq!(template["metadata"]["annotations"]["sidecar.istio.io/inject"], "true");
    assert_eq!(template["metadata"]["annotations"]["openservicemesh.io/inbound-port-exclusion-list"], "8080");
    let pod = &template["spec"];
    assert_eq!(pod["serviceAccountName"], "loadtester-runner");
    assert_eq!(pod["priorityClassName"], "veer-e2e-loadtester");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
        1
    );
    // Flagger's podSecurityContext.context, over the chart's defaults.
    assert_eq!(
        pod["securityContext"],
        json!({"fsGroup": 101, "fsGroupChangePolicy": "OnRootMismatch", "runAsNonRoot": true,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    // The chart's volume first, then the file's.
    assert_eq!(
        pod["volumes"],
        json!([{"name": "tmp", "emptyDir": {}},
               {"name": "scripts", "configMap": {"name": "loadtester-scripts", "optional": true}}])
    );
    let c = container(&r);
    assert_eq!(c["image"], "registry.example.invalid/veer:0.1.0");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["env"], json!([{"name": "TZ", "value": "UTC"}]));
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}})
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "tmp", "mountPath": "/tmp"}, {"name": "scripts", "mountPath": "/scripts", "readOnly": true}])
    );
    let sc = &c["securityContext"];
    assert_eq!((&sc["runAsUser"], &sc["runAsGroup"]), (&json!(100), &json!(101)), "Flagger's ids");
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "the chart's hardening stays");

    let pdb = r.one("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], d["spec"]["selector"]["matchLabels"]);

    // rbac.scope cluster: the rules in a ClusterRole; the gate store's Role as always; both bound to the
    // existing account.
    let runner = json!([{"kind": "ServiceAccount", "name": "loadtester-runner", "namespace": "test"}]);
    let cluster_role = r.one("ClusterRole");
    assert_eq!(grants(&cluster_role["rules"]), expand(&[("", &["pods"], &["list", "get"])]));
    let cluster_binding = r.one("ClusterRoleBinding");
    assert_eq!(cluster_binding["roleRef"]["name"], cluster_role["metadata"]["name"]);
    assert_eq!(cluster_binding["subjects"], runner);
    assert_eq!(r.one("RoleBinding")["subjects"], runner);
    assert!(grants(&r.one("Role")["rules"]).iter().all(|(_, resource, _, _)| resource == "configmaps"));

    // Istio: the Gateway for the host on port 80 (redirecting) and 443, the VirtualService to the Service.
    let gw = r.one("Gateway");
    assert_eq!(gw["apiVersion"], "networking.istio.io/v1beta1");
    assert_eq!(gw["metadata"]["name"], "flagger-loadtester");
    assert_eq!(gw["spec"]["selector"], json!({"istio": "ingressgateway"}));
    let servers = &gw["spec"]["servers"];
    assert_eq!(servers[0]["port"], json!({"number": 80, "name": "http-default", "protocol": "HTTP"}));
    assert_eq!(servers[0]["hosts"], json!(["loadtester.example.invalid"]));
    assert_eq!(servers[0]["tls"], json!({"httpsRedirect": true}));
    assert_eq!(servers[1]["port"]["number"], 443);
    assert_eq!(servers[1]["tls"], json!({"mode": "SIMPLE", "credentialName": "flagger-loadtester"}));
    let vs = r.one("VirtualService");
    assert_eq!(vs["spec"]["gateways"], json!(["flagger-loadtester"]));
    assert_eq!(vs["spec"]["hosts"], json!(["loadtester.example.invalid"]));
    assert_eq!(
        vs["spec"]["http"],
        json!([{"route": [{"destination": {"host": "flagger-loadtester", "port": {"number": 8080}}}]}])
    );

    // Without serviceAccountName the chart creates the account, with Flagger's annotations rendered
    // by tpl and the chart's own on top.
    let r = helm.template(
        "lt",
        "veer-loadtester",
        "test",
        &["-f", values, "--set", "serviceAccountName=,serviceAccount.annotations.owner=platform"],
    );
    let sa = r.one("ServiceAccount");
    assert_eq!(sa["metadata"]["name"], "flagger-loadtester");
    assert_eq!(
        sa["metadata"]["annotations"],
        json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/lt", "owner": "platform"})
    );
    assert_eq!(r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"], "flagger-loadtester");
    assert_eq!(r.one("ClusterRoleBinding")["subjects"][0]["name"], "flagger-loadtester");

    // rbac.scope namespace: the rules join the gate store's Role; rbac.create false: no rules at all,
    // the gate store's Role stays.
    let r = helm.template("lt", "veer-loadtester", "test", &["-f", values, "--set", "rbac.scope=namespace"]);
    assert!(r.find("ClusterRole").is_none());
    assert!(grants(&r.one("Role")["rules"]).contains(&(
        String::new(),
        "pods".into(),
        "list".into(),
        String::new()
    )));
    let r = helm.template("lt", "veer-loadtester", "test", &["-f", values, "--set", "rbac.create=false"]);
    assert!(r.find("ClusterRole").is_none());
    assert!(grants(&r.one("Role")["rules"]).iter().all(|(_, resource, _, _)| resource == "configmaps"));

    // Istio without the Gateway: the VirtualService alone (bound to a Gateway of that name you provide);
    // without TLS: port 80 only, no redirect.
    let r = helm.template(
        "lt",
        "veer-loadtester",
        "test",
        &["-f", values, "--set", "istio.gateway.enabled=false"],
    );
    assert!(r.find("Gateway").is_none());
    assert_eq!(r.one("VirtualService")["spec"]["gateways"], json!(["flagger-loadtester"]));
    let r =
        helm.template("lt", "veer-loadtester", "test", &["-f", values, "--set", "istio.tls.enabled=false"]);
    assert_eq!(
        r.one("Gateway")["spec"]["servers"],
        json!([{"port": {"number": 80, "name": "http-default", "protocol": "HTTP"},
                "hosts": ["loadtester.example.invalid"]}])
    );

    // Flagger's fatal and panic are tracing's error.
    for level in ["fatal", "panic"] {
        let r = helm.template(
            "lt",
            "veer-loadtester",
            "test",
            &["-f", values, "--set", &format!("logLevel={level}")],
        );
        assert_eq!(loadtester_args(&r).log_level, "error", "{level}");
    }
}

#[test]
#[ignore = "needs the local control plane (make test)"]
fn loadtester_security_contexts_in_either_shape() {
    let helm = Helm::new();
    let pod_and_container = |args: &[&str]| {
        let r = helm.template("lt", "veer-loadtester", "test", args);
        let pod = r.one("Deployment")["spec"]["template"]["spec"]["securityContext"].clone();
        (pod, container(&r)["securityContext"].clone())
    };
    // This chart's earlier shape: fields directly under the key, over the defaults.
    let (pod, c) =
        pod_and_container(&["--set", "podSecurityContext.runAsUser=1000,securityContext.runAsUser=1000"]);
    assert_eq!(
        pod,
        json!({"fsGroup": 65532, "runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!((&c["runAsUser"], &c["readOnlyRootFilesystem"]), (&json!(1000), &json!(true)));
    // Flagger's shape: enabled and context.
    let (pod, c) = pod_and_container(&[
        "--set",
        "podSecurityContext.context.fsGroup=2000,securityContext.context.runAsGroup=3",
    ]);
    assert_eq!(pod["fsGroup"], 2000);
    assert_eq!(c["runAsGroup"], 3);
    // Both: the direct field wins over context.
    let (pod, _) = pod_and_container(&[
        "--set",
        "podSecurityContext.context.runAsUser=1,podSecurityContext.runAsUser=2",
    ]);
    assert_eq!(pod["runAsUser"], 2);
    // Switched off one at a time.
    let (pod, c) = pod_and_container(&["--set", "podSecurityContext.enabled=false"]);
    assert_eq!(pod, Value::Null);
    assert_eq!(c["runAsNonRoot"], true);
    let (pod, c) = pod_and_container(&["--set", "securityContext.enabled=false"]);
    assert_eq!(c, Value::Null);
    assert_eq!(pod["runAsNonRoot"], true);
}

// --- on the local control plane ------------------------------------------------------------------

/// Asks the API server whether the ServiceAccount may do something.
async fn can(
    client: &Client,
    sa: (&str, &str),
    verb: &str,
    group: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> bool {
    let (ns, name_sa) = sa;
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": format!("system:serviceaccount:{ns}:{name_sa}"),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
            "resourceAttributes": {
                "verb": verb, "group": group, "resource": resource, "subresource": subresource,
                "namespace": namespace, "name": name
            }
        }
    }))
    .unwrap();
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("create a SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

async fn deployment_args(client: &Client, ns: &str, name: &str) -> Result<(Vec<String>, i32, i32), String> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns).get(name).await.map_err(|e| e.to_string())?;
    let spec = d.spec.unwrap();
    let args = spec.template.spec.unwrap().containers[0].args.clone().unwrap_or_default();
    let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
    Ok((args, spec.replicas.unwrap_or(1), ready))
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn install_upgrade_uninstall_on_the_control_plane() {
    let client = common::client().await;
    let helm = Helm::new();
    let chart_dir = chart("veer");
    let chart_dir = chart_dir.to_str().unwrap();
    common::with_namespace(&client, "helm", async |ns| {
        let ns = ns.name.as_str();
        let release = common::unique_name("veer");
        let sa = (ns, release.as_str());
        let t = Instant::now();
        helm.ok(&["install", &release, chart_dir, "-n", ns, "--wait", "--timeout", "120s"]);
        let installed = t.elapsed();
        let (args, replicas, ready) = deployment_args(&client, ns, &release).await.unwrap();
        assert_eq!((replicas, ready), (1, 1), "installed with --wait: {args:?}");
        assert!(args.contains(&"--log-level=info".to_owned()), "{args:?}");

        // The CRDs came with the chart (or were there already) and stay after uninstall.
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        assert!(crds.get_opt("canaries.flagger.app").await.unwrap().is_some());

        // The RBAC as the API server evaluates it.
        let allowed: &[(&str, &str, &str, &str)] = &[
            ("list", "flagger.app", "canaries", ""),
            ("watch", "flagger.app", "metrictemplates", ""),
            ("get", "flagger.app", "alertproviders", ""),
            ("patch", "flagger.app", "canaries/status", "podinfo"),
            ("patch", "flagger.app", "canaries", "podinfo"),
            ("update", "flagger.app", "canaries/finalizers", "podinfo"),
            ("create", "apps", "deployments", ""),
            ("patch", "apps", "daemonsets", "podinfo-primary"),
            ("watch", "", "secrets", ""),
            ("create", "", "secrets", ""),
            ("patch", "", "configmaps", "podinfo-config-primary"),
            ("create", "", "services", ""),
            ("create", "autoscaling", "horizontalpodautoscalers", ""),
            ("patch", "networking.k8s.io", "ingresses", "podinfo-canary"),
            ("create", "networking.istio.io", "virtualservices", ""),
            ("patch", "networking.istio.io", "destinationrules", "podinfo-primary"),
            ("create", "", "events", ""),
            ("patch", "", "events", "podinfo.1"),
        ];
        let denied: &[(&str, &str, &str, &str)] = &[
            ("delete", "apps", "deployments", "podinfo"),
            ("update", "apps", "deployments", "podinfo"),
            ("update", "flagger.app", "canaries", "podinfo"),
            ("delete", "flagger.app", "canaries", "podinfo"),
            ("create", "flagger.app", "canaries", ""),
            ("delete", "", "secrets", "db"),
            ("list", "", "pods", ""),
            ("create", "events.k8s.io", "events", ""),
            ("create", "coordination.k8s.io", "leases", ""),
            ("list", "rbac.authorization.k8s.io", "clusterroles", ""),
            ("create", "apps", "deployments/scale", ""),
        ];
        for (verb, group, resource, name) in allowed {
            assert!(can(&client, sa, verb, group, resource, "apps", name).await, "should be allowed: {verb} {group}/{resource}");
        }
        for (verb, group, resource, name) in denied {
            assert!(!can(&client, sa, verb, group, resource, "apps", name).await, "should be denied: {verb} {group}/{resource}");
        }

        // Upgrade: other flags, leader election with two replicas.
        let t = Instant::now();
        helm.ok(&[
            "upgrade", &release, chart_dir, "-n", ns, "--wait", "--timeout", "120s", "--set",
            "logLevel=debug,meshProvider=nginx,leaderElection.enabled=true,leaderElection.replicaCount=2,configTracking.enabled=false",
        ]);
        let upgraded = t.elapsed();
        let (args, replicas, ready) = deployment_args(&client, ns, &release).await.unwrap();
        assert_eq!((replicas, ready), (2, 2), "{args:?}");
        for expected in [
            "--log-level=debug",
            "--mesh-provider=nginx",
            "--enable-leader-election=true",
            "--enable-config-tracking=false",
            &format!("--leader-election-namespace={ns}"),
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} missing from {args:?}");
        }
        assert!(can(&client, sa, "create", "coordination.k8s.io", "leases", ns, "").await);
        assert!(can(&client, sa, "update", "coordination.k8s.io", "leases", ns, "veer-leader-election").await);
        assert!(!can(&client, sa, "update", "coordination.k8s.io", "leases", ns, "other").await);
        assert!(!can(&client, sa, "create", "coordination.k8s.io", "leases", "kube-system", "").await);
        assert!(can(&client, sa, "watch", "", "secrets", "apps", "").await, "Secrets stay readable");
        assert!(!can(&client, sa, "create", "", "secrets", "apps", "").await, "config tracking is off");
        let roles: Api<Role> = Api::namespaced(client.clone(), ns);
        assert!(roles.get_opt(&format!("{release}-leader-election")).await.unwrap().is_some());

        let t = Instant::now();
        helm.ok(&["uninstall", &release, "-n", ns, "--wait", "--timeout", "120s"]);
        let uninstalled = t.elapsed();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        assert!(deployments.get_opt(&release).await.unwrap().is_none());
        let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
        assert!(cluster_roles.get_opt(&release).await.unwrap().is_none(), "the ClusterRole goes with the release");
        assert!(roles.get_opt(&format!("{release}-leader-election")).await.unwrap().is_none());
        assert!(crds.get_opt("canaries.flagger.app").await.unwrap().is_some(), "CRDs are kept");
        println!("helm install --wait {installed:?}, upgrade --wait {upgraded:?}, uninstall --wait {uninstalled:?}");
    })
    .await;
}

/// A client that authenticates as the ServiceAccount (a bound token from the TokenRequest API) against
/// the same API server as the admin kubeconfig.
async fn client_as(admin: &Client, ns: &str, sa: &str) -> Client {
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 600}})).unwrap();
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .expect("a token for the ServiceAccount")
        .status
        .expect("a TokenRequest status")
        .token;
    let mut kubeconfig = Kubeconfig::read_from(common::env("KUBECONFIG")).expect("read KUBECONFIG");
    for named in &mut kubeconfig.auth_infos {
        named.auth_info = Some(serde_json::from_value(json!({ "token": token })).unwrap());
    }
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a config from the edited kubeconfig");
    Client::try_from(config).expect("a client for the ServiceAccount")
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn loadtester_gate_store_works_with_exactly_the_charts_role() {
    let client = common::client().await;
    let helm = Helm::new();
    let chart_dir = chart("veer-loadtester");
    common::with_namespace(&client, "helm-lt", async |ns| {
        let ns = ns.name.as_str();
        let t = Instant::now();
        helm.ok(&[
            "install",
            "flagger-loadtester",
            chart_dir.to_str().unwrap(),
            "-n",
            ns,
            "--wait",
            "--timeout",
            "120s",
            "--set",
            "tokenReview.allowedServiceAccounts[0]=system:serviceaccount:veer-system:veer,networkPolicy.enabled=true",
        ]);
        println!("helm install --wait of the load tester: {:?}", t.elapsed());
        let (_, replicas, ready) = deployment_args(&client, ns, "flagger-loadtester").await.unwrap();
        assert_eq!((replicas, ready), (1, 1));
        // The API server took the NetworkPolicy, and the account may create TokenReviews, nothing more.
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
        assert!(policies.get_opt("flagger-loadtester").await.unwrap().is_some());
        let sa = (ns, "flagger-loadtester");
        assert!(can(&client, sa, "create", "authentication.k8s.io", "tokenreviews", "", "").await);
        assert!(!can(&client, sa, "create", "authorization.k8s.io", "subjectaccessreviews", "", "").await);

        // The load tester's own ConfigMap gate store, authenticated as the chart's ServiceAccount.
        let as_sa = client_as(&client, ns, "flagger-loadtester").await;
        let store = ConfigMapGateStore::connect(as_sa.clone(), ns, "flagger-loadtester-gates")
            .await
            .expect("the gate store connects as the ServiceAccount");
        let gate = gate_key(GateKind::Gate, "podinfo", "test").unwrap();
        assert!(!store.is_open(&gate).await.unwrap());
        store.set(&gate, true).await.expect("open a gate (creates the ConfigMap)");
        assert!(store.is_open(&gate).await.unwrap());
        store.set(&gate, false).await.expect("close the gate (replaces the ConfigMap)");
        assert!(!store.is_open(&gate).await.unwrap());

        // ... and nothing else.
        let other = Api::<ConfigMap>::namespaced(as_sa.clone(), ns).get("kube-root-ca.crt").await;
        assert!(matches!(other, Err(kube::Error::Api(ref s)) if s.code == 403), "{other:?}");
        let elsewhere = Api::<ConfigMap>::namespaced(as_sa, "default").list(&Default::default()).await;
        assert!(matches!(elsewhere, Err(kube::Error::Api(ref s)) if s.code == 403), "{elsewhere:?}");

        helm.ok(&["uninstall", "flagger-loadtester", "-n", ns, "--wait", "--timeout", "120s"]);
        let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
        let tokenreview = format!("flagger-loadtester-{ns}-tokenreview");
        assert!(cluster_roles.get_opt(&tokenreview).await.unwrap().is_none(), "the ClusterRole goes with the release");
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn flaggers_loadtester_values_install_on_the_control_plane() {
    let client = common::client().await;
    let helm = Helm::new();
    let chart_dir = chart("veer-loadtester");
    let chart_dir = chart_dir.to_str().unwrap();
    let verbatim = data_file("flagger-loadtester-values.yaml");
    let all = data_file("flagger-loadtester-values-all.yaml");
    common::with_namespace(&client, "helm-lt-flagger", async |ns| {
        let ns = ns.name.as_str();
        let wait: &[&str] = &["--wait", "--timeout", "120s"];

        // Flagger's values.yaml as it is.
        let t = Instant::now();
        helm.ok(&[
            &["install", "flagger-loadtester", chart_dir, "-n", ns, "-f", verbatim.to_str().unwrap()],
            wait,
        ]
        .concat());
        println!("helm install --wait with Flagger's values.yaml: {:?}", t.elapsed());
        let (_, replicas, ready) = deployment_args(&client, ns, "flagger-loadtester").await.unwrap();
        assert_eq!((replicas, ready), (1, 1));
        // Its `rbac.create: false` leaves the gate store's access in place, and grants nothing more.
        let sa = (ns, "flagger-loadtester");
        assert!(can(&client, sa, "get", "", "configmaps", ns, "flagger-loadtester-gates").await);
        assert!(can(&client, sa, "create", "", "configmaps", ns, "").await);
        assert!(!can(&client, sa, "list", "", "pods", ns, "").await);
        helm.ok(&[&["uninstall", "flagger-loadtester", "-n", ns], wait].concat());

        // Every key switched on. The PriorityClass and the ServiceAccount it names exist first.
        let priority_classes: Api<PriorityClass> = Api::all(client.clone());
        let class: PriorityClass =
            serde_json::from_value(json!({"metadata": {"name": "veer-e2e-loadtester"}, "value": 1000}))
                .unwrap();
        match priority_classes.create(&PostParams::default(), &class).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create the PriorityClass: {e}"),
        }
        let account: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "loadtester-runner"}})).unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &account)
            .await
            .expect("create the ServiceAccount");
        let t = Instant::now();
        helm.ok(&[&["install", "lt", chart_dir, "-n", ns, "-f", all.to_str().unwrap()], wait].concat());
        println!("helm install --wait with every Flagger key on: {:?}", t.elapsed());
        let (_, replicas, ready) = deployment_args(&client, ns, "flagger-loadtester").await.unwrap();
        assert_eq!((replicas, ready), (2, 2));

        // The API server resolved the PriorityClass (admission sets the priority from it).
        let pods = Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default().labels("app.kubernetes.io/instance=lt"))
            .await
            .unwrap();
        assert_eq!(pods.items.len(), 2);
        for pod in &pods.items {
            let spec = pod.spec.as_ref().unwrap();
            assert_eq!(spec.priority_class_name.as_deref(), Some("veer-e2e-loadtester"));
            assert_eq!(spec.priority, Some(1000));
            assert_eq!(spec.service_account_name.as_deref(), Some("loadtester-runner"));
            // (then the API server's token volume)
            let volumes: Vec<&str> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
            assert_eq!(volumes[..2], ["tmp", "scripts"]);
            assert_eq!(spec.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
        }
        // The Istio objects were accepted by the CRDs.
        for kind in ["Gateway", "VirtualService"] {
            let gvk = GroupVersionKind::gvk("networking.istio.io", "v1beta1", kind);
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk));
            assert!(api.get_opt("flagger-loadtester").await.unwrap().is_some(), "{kind}");
        }
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
        assert!(pdbs.get_opt("flagger-loadtester").await.unwrap().is_some());
        // rbac.scope cluster: the rules hold in every namespace, for the existing account.
        let runner = (ns, "loadtester-runner");
        assert!(can(&client, runner, "list", "", "pods", "default", "").await);
        assert!(!can(&client, runner, "delete", "", "pods", "default", "x").await);
        assert!(can(&client, runner, "update", "", "configmaps", ns, "flagger-loadtester-gates").await);

        helm.ok(&[&["uninstall", "lt", "-n", ns], wait].concat());
        let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
        assert!(cluster_roles.get_opt(&format!("flagger-loadtester-{ns}")).await.unwrap().is_none());
        priority_classes
            .delete("veer-e2e-loadtester", &Default::default())
            .await
            .expect("delete the PriorityClass");
    })
    .await;
}
