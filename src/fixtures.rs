//! Test objects shared by the unit tests: a Canary built from JSON, as the API server would hand it
//! over, with a few chainable changes.

use serde_json::{Value, json};

use crate::api::Canary;

/// A Canary under construction; [`CanaryBuilder::build`] decodes it.
pub(crate) struct CanaryBuilder {
    doc: Value,
}

/// A Canary `name` in `namespace` whose spec has only a `targetRef` to the Deployment `name`.
pub(crate) fn canary(name: &str, namespace: &str) -> CanaryBuilder {
    CanaryBuilder {
        doc: json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}},
        }),
    }
}

impl CanaryBuilder {
    /// Sets `metadata.uid` (objects read from the API server have one; owner references need it).
    pub(crate) fn uid(mut self, uid: &str) -> Self {
        self.doc["metadata"]["uid"] = json!(uid);
        self
    }

    /// Targets the `apps/v1` workload `kind`/`name`.
    pub(crate) fn target(mut self, kind: &str, name: &str) -> Self {
        self.doc["spec"]["targetRef"] = json!({"apiVersion": "apps/v1", "kind": kind, "name": name});
        self
    }

    /// Sets each field of `fields` in the spec (replacing a field already there, `targetRef` too).
    pub(crate) fn spec(mut self, fields: Value) -> Self {
        let Value::Object(fields) = fields else { panic!("spec fields must be an object: {fields}") };
        self.doc["spec"].as_object_mut().expect("a spec object").extend(fields);
        self
    }

    pub(crate) fn build(self) -> Canary {
        serde_json::from_value(self.doc).expect("a valid Canary")
    }
}

#[test]
fn builds_what_it_was_told() {
    let c = canary("podinfo", "test")
        .uid("u-1")
        .target("DaemonSet", "podinfo-ds")
        .spec(json!({"service": {"port": 80}, "analysis": {"threshold": 5}}))
        .build();
    assert_eq!(c.metadata.name.as_deref(), Some("podinfo"));
    assert_eq!(c.metadata.namespace.as_deref(), Some("test"));
    assert_eq!(c.metadata.uid.as_deref(), Some("u-1"));
    assert_eq!(
        (c.spec.target_ref.kind.as_str(), c.spec.target_ref.name.as_str()),
        ("DaemonSet", "podinfo-ds")
    );
    assert_eq!(c.spec.service.map(|s| s.port), Some(80));
    assert_eq!(c.spec.analysis.and_then(|a| a.threshold), Some(5));
    assert!(c.status.is_none());
}
