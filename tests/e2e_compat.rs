//! Flagger compatibility on a real API server: every manifest of the Flagger corpus that Flagger's
//! CRD accepts is accepted by ours, and every one it rejects is rejected by ours with a schema
//! validation error. Each document is created with server-side dry-run and strict field validation
//! (unknown or duplicate fields are errors), in a namespace of its own test.
//!
//! The corpus lives beside the repository (`../shared/compat/flagger`, see its README); set
//! `VEER_COMPAT_DIR` to use another copy (`common::corpus` reads it).

mod common;

use std::collections::HashMap;

use kube::Client;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::core::{Request, Resource};
use serde_json::Value;

/// What the API server said to one dry-run create.
enum Outcome {
    Accepted,
    Rejected { code: u16, reason: String, message: String },
}

struct DryRun {
    client: Client,
    namespace: String,
    resources: HashMap<(String, String), ApiResource>,
}

impl DryRun {
    /// Creates `doc` in the test namespace with `dryRun=All&fieldValidation=Strict`. A document
    /// without `metadata.name` gets a generated one, so that a rejection must come from the schema.
    async fn create(&mut self, mut doc: Value) -> Outcome {
        let api_version = doc["apiVersion"].as_str().expect("apiVersion").to_owned();
        let kind = doc["kind"].as_str().expect("kind").to_owned();
        if !doc["metadata"].is_object() {
            doc["metadata"] = serde_json::json!({});
        }
        doc["metadata"]["namespace"] = Value::String(self.namespace.clone());
        if doc["metadata"]["name"].is_null() {
            doc["metadata"]["name"] = Value::String(common::unique_name("unnamed"));
        }

        let key = (api_version.clone(), kind.clone());
        if !self.resources.contains_key(&key) {
            let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
            let gvk = GroupVersionKind::gvk(group, version, &kind);
            let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
                .await
                .unwrap_or_else(|e| panic!("the API server does not serve {api_version} {kind}: {e}"));
            self.resources.insert(key.clone(), resource);
        }
        let url = DynamicObject::url_path(&self.resources[&key], Some(&self.namespace));
        let pp = PostParams { dry_run: true, field_manager: None };
        let mut request =
            Request::new(url).create(&pp, serde_json::to_vec(&doc).expect("JSON")).expect("a create request");
        // kube's PostParams has no field validation setting; add it to the query by hand.
        *request.uri_mut() =
            format!("{}&fieldValidation=Strict", request.uri()).parse().expect("a valid request URI");

        match self.client.request::<Value>(request).await {
            Ok(_) => Outcome::Accepted,
            Err(kube::Error::Api(status)) => Outcome::Rejected {
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            Err(e) => panic!("the dry-run create of {api_version} {kind} failed without an answer: {e}"),
        }
    }
}

async fn dry_run_corpus(which: &str) -> (Vec<(String, Outcome)>, usize) {
    let docs = common::corpus::documents(which);
    let count = docs.len();
    let client = common::client().await;
    let outcomes = common::with_namespace(&client, &format!("compat-{which}"), async |ns| {
        let mut dry_run =
            DryRun { client: client.clone(), namespace: ns.name.clone(), resources: HashMap::new() };
        let mut outcomes = Vec::new();
        for (name, doc) in docs {
            outcomes.push((name, dry_run.create(doc).await));
        }
        outcomes
    })
    .await;
    (outcomes, count)
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn flagger_valid_manifests_are_accepted() {
    let (outcomes, count) = dry_run_corpus("valid").await;
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|(name, outcome)| match outcome {
            Outcome::Accepted => None,
            Outcome::Rejected { code, reason, message } => {
                Some(format!("{name}: rejected ({code} {reason}): {message}"))
            }
        })
        .collect();
    eprintln!("{} of {count} valid Flagger manifests accepted", count - failures.len());
    assert!(failures.is_empty(), "{} valid manifests rejected:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn flagger_invalid_manifests_are_rejected_by_the_schema() {
    let (outcomes, count) = dry_run_corpus("invalid").await;
    let mut failures = Vec::new();
    for (name, outcome) in &outcomes {
        match outcome {
            Outcome::Rejected { code: 422, message, .. } => eprintln!("rejected {name}: {message}"),
            Outcome::Rejected { code, reason, message } => failures.push(format!(
                "{name}: rejected with {code} {reason}, not a 422 validation error: {message}"
            )),
            Outcome::Accepted => failures.push(format!("{name}: accepted")),
        }
    }
    eprintln!("{} of {count} invalid Flagger manifests rejected with 422", count - failures.len());
    assert!(
        failures.is_empty(),
        "{} invalid manifests not rejected as invalid:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The control for the two tests above: strict field validation is really in force, so "accepted"
/// means "no unknown field" too. A valid manifest with one extra field must be refused (the API
/// server answers 400 for a strict decoding error, before schema validation).
#[tokio::test]
#[ignore = "needs the local control plane (make test)"]
async fn strict_field_validation_refuses_an_unknown_field() {
    let (name, mut doc) = common::corpus::documents("valid").swap_remove(0);
    doc["spec"]["veerUnknownField"] = Value::Bool(true);
    let client = common::client().await;
    let outcome = common::with_namespace(&client, "compat-strict", async |ns| {
        DryRun { client: client.clone(), namespace: ns.name.clone(), resources: HashMap::new() }
            .create(doc)
            .await
    })
    .await;
    match outcome {
        Outcome::Rejected { code: 400, message, .. } if message.contains("unknown field") => {
            eprintln!("{name} with spec.veerUnknownField refused: {message}")
        }
        Outcome::Rejected { code, reason, message } => {
            panic!("{name} with an unknown field: expected 400 unknown field, got {code} {reason}: {message}")
        }
        Outcome::Accepted => {
            panic!("{name} with spec.veerUnknownField was accepted: field validation is not strict")
        }
    }
}
