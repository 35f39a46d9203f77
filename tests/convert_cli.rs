//! `veer convert` as a user runs it, on Argo Rollouts' own examples (`tests/convert/argo/`): the
//! exit status, the YAML on standard output (every Canary and MetricTemplate decodes into Veer's
//! types and passes Veer's CRD schema, offline), the report on standard error, standard input.
//! `e2e_convert.rs` applies the same output to a real API server.

mod schema_check;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;
use veer::api::{Canary, MetricTemplate, schema::crds};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/convert/argo").join(name)
}

fn veer(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veer"))
        .arg("convert")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("veer runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("veer ends")
}

fn schema_of(kind: &str) -> Value {
    let crd = crds().into_iter().find(|c| c.spec.names.kind == kind).unwrap();
    serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap())
        .unwrap()
}

/// The documents of the output; each Canary and MetricTemplate decodes and passes the schema.
fn checked_output(name: &str, out: &Output) -> Vec<Value> {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
    for d in &docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        if kind == "Canary" || kind == "MetricTemplate" {
            let v = schema_check::violations(&schema_of(kind), d);
            assert!(v.is_empty(), "{name}: the {kind} breaks the CRD schema: {v:?}\n{text}");
        }
        match kind {
            "Canary" => {
                serde_json::from_value::<Canary>(d.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "MetricTemplate" => {
                serde_json::from_value::<MetricTemplate>(d.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            _ => {}
        }
    }
    docs
}

#[test]
fn every_example_converts_to_objects_veer_accepts() {
    // (fixture, exit status, Canaries, MetricTemplates)
    for (name, status, canaries, templates) in [
        ("rollout-canary.yaml", 2, 1, 0),
        ("rollout-bluegreen.yaml", 0, 1, 0),
        ("bluegreen-active-preview.yaml", 0, 1, 0),
        ("rollout-analysis-step.yaml", 2, 1, 0),
        ("rollout-background-analysis.yaml", 2, 1, 0),
        ("rollout-experiment-step.yaml", 2, 1, 0),
        ("rollout-bg-analysis-with-args.yaml", 2, 1, 0),
        ("analysis-templates.yaml", 2, 0, 0),
        ("cluster-analysis-templates.yaml", 2, 0, 0),
        ("analysistemplate-web-background.yaml", 2, 0, 0),
        ("docs-background-analysis.yaml", 2, 1, 1),
        ("docs-prometheus.yaml", 2, 1, 6),
        ("workload-ref.yaml", 2, 1, 0),
        ("istio-subset-split.yaml", 0, 1, 0),
        ("istio-host-split.yaml", 0, 1, 0),
        ("istio-mirror.yaml", 2, 1, 0),
        ("nginx.yaml", 2, 1, 0),
        ("rollout-smi-experiment.yaml", 2, 1, 0),
    ] {
        let out = veer(&[fixture(name).to_str().unwrap()], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{name}: {stderr}");
        let docs = checked_output(name, &out);
        let count = |kind: &str| docs.iter().filter(|d| d["kind"] == kind).count();
        assert_eq!((count("Canary"), count("MetricTemplate")), (canaries, templates), "{name}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("veer convert: "), "{name}: the report ends with a summary: {stderr}");
        assert_eq!(last.contains("everything mapped"), status == 0, "{name}: {last}");
    }
}

#[test]
fn the_json_report_is_for_scripts() {
    let out = veer(&["--report", "json", fixture("rollout-canary.yaml").to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stderr).expect("the report is JSON");
    let entries = report["entries"].as_array().unwrap();
    let codes: Vec<&str> = entries.iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["no-traffic-routing", "pause-gate-midway", "pause-durations-differ"]);
    for e in entries {
        assert_eq!(e["object"]["kind"], "Rollout");
        assert_eq!(e["level"], "approximated");
        assert!(e["path"].as_str().unwrap().starts_with("spec.strategy.canary"));
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(report["summary"]["approximated"], 3);
    assert_eq!(report["summary"]["complete"], false);
    // --report none: nothing on standard error.
    let out = veer(&["--report", "none", fixture("rollout-canary.yaml").to_str().unwrap()], None);
    assert!(out.stderr.is_empty());
}

#[test]
fn standard_input_and_options() {
    let input = std::fs::read_to_string(fixture("rollout-bluegreen.yaml")).unwrap();
    let out = veer(&["-n", "shop", "-"], Some(&input));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let docs = checked_output("stdin", &out);
    let canary = docs.iter().find(|d| d["kind"] == "Canary").unwrap();
    assert_eq!(canary["spec"]["analysis"]["webhooks"][0]["url"], "http://flagger-loadtester.shop/gate/check");
    assert!(canary["metadata"].get("namespace").is_none(), "-n does not set the objects' namespace");
    let out = veer(&["--loadtester-url", "http://127.0.0.1:9000", "-"], Some(&input));
    let docs = checked_output("stdin", &out);
    let canary = docs.iter().find(|d| d["kind"] == "Canary").unwrap();
    assert_eq!(canary["spec"]["analysis"]["webhooks"][1]["url"], "http://127.0.0.1:9000/gate/close");
}

#[test]
fn unreadable_input_is_exit_status_1() {
    // Argo's own linkerd example has an unquoted {{args...}}, which is not YAML.
    let out = veer(&[fixture("rollout-linkerd.yaml").to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rollout-linkerd.yaml is not YAML") && stderr.contains("line"), "{stderr}");
    assert!(out.stdout.is_empty(), "no partial output");
    let out = veer(&["/nonexistent/rollout.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/rollout.yaml"));
    // No file at all is a usage error.
    let out = veer(&[], None);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
}
