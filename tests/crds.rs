//! The committed CRDs are exactly what the Rust types generate.

use std::{fs, path::PathBuf};

#[test]
fn committed_crds_are_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds/crds.yaml");
    let committed = fs::read_to_string(&path).expect("crds/crds.yaml exists");
    let generated = veer::api::schema::crds_yaml();
    assert!(
        committed == generated,
        "crds/crds.yaml is stale: regenerate it with `cargo run -- crds > crds/crds.yaml` and commit it"
    );
}

#[test]
fn crds_round_trip_as_yaml() {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&veer::api::schema::crds_yaml()).expect("the CRD YAML parses");
    let names: Vec<&str> = docs.iter().filter_map(|d| d["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["canaries.flagger.app", "metrictemplates.flagger.app", "alertproviders.flagger.app"]);
    for d in &docs {
        assert_eq!(d["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
        assert_eq!(d["spec"]["names"]["categories"][0], "all");
        assert_eq!(d["spec"]["versions"][0]["subresources"]["status"], serde_json::json!({}));
    }
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/veer/crds/crds.yaml");
    let chart_copy = fs::read_to_string(&path).expect("charts/veer/crds/crds.yaml exists");
    assert!(
        chart_copy == veer::api::schema::crds_yaml(),
        "charts/veer/crds/crds.yaml differs from what `veer crds` generates: regenerate crds/crds.yaml \
         (`cargo run -- crds > crds/crds.yaml`) and copy it: `cp crds/crds.yaml charts/veer/crds/crds.yaml`"
    );
}
