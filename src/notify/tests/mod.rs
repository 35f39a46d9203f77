//! Tests of the alert module, with shared fixtures: a Canary `podinfo.test` and an in-memory
//! [`ProviderLookup`].

mod payload;
mod resolve;
mod send;

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::ObjectMeta;

use super::{Alert, ProviderLookup};
use crate::{
    analysis::{Params, Settings, Severity},
    api::{AlertProvider, AlertProviderSpec, Canary, CanaryAlert, CrossNamespaceRef, SecretReference},
    fixtures,
};

/// `podinfo.test`, Deployment `podinfo-app`, threshold 5, step 10 max 50, deadline 60s.
fn canary(alerts: Option<Vec<CanaryAlert>>) -> Canary {
    let mut c = fixtures::canary("podinfo", "test")
        .target("Deployment", "podinfo-app")
        .spec(serde_json::json!({
            "progressDeadlineSeconds": 60,
            "analysis": {"threshold": 5, "stepWeight": 10, "maxWeight": 50},
        }))
        .build();
    c.spec.analysis.as_mut().expect("an analysis").alerts = alerts;
    c
}

fn params(c: &Canary) -> Params {
    Params::new(&c.spec, &Settings::default()).unwrap()
}

fn alert<'a>(c: &'a Canary, p: &'a Params, severity: Severity, details: bool) -> Alert<'a> {
    Alert { canary: c, severity, message: "Failed checks threshold reached 5", details, params: p }
}

/// An `analysis.alerts` entry.
fn entry(name: &str, severity: Option<&str>, provider: &str, namespace: Option<&str>) -> CanaryAlert {
    CanaryAlert {
        name: name.into(),
        severity: severity.map(Into::into),
        provider_ref: CrossNamespaceRef { name: provider.into(), namespace: namespace.map(Into::into) },
    }
}

fn provider(namespace: &str, name: &str, spec: AlertProviderSpec) -> AlertProvider {
    let mut p = AlertProvider::new(name, spec);
    p.metadata.namespace = Some(namespace.into());
    p
}

/// A provider of `type_` at `address`.
fn spec(type_: &str, address: &str) -> AlertProviderSpec {
    AlertProviderSpec { type_: type_.into(), address: Some(address.into()), ..Default::default() }
}

/// A provider of `type_` reading its address from Secret `secret`.
fn secret_spec(type_: &str, secret: &str) -> AlertProviderSpec {
    AlertProviderSpec {
        type_: type_.into(),
        secret_ref: Some(SecretReference { name: secret.into() }),
        ..Default::default()
    }
}

fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Default::default()
    }
}

/// AlertProviders and Secrets by `(namespace, name)`.
#[derive(Default)]
struct Cache {
    providers: BTreeMap<(String, String), Arc<AlertProvider>>,
    secrets: BTreeMap<(String, String), Arc<Secret>>,
}

impl Cache {
    fn with_provider(mut self, p: AlertProvider) -> Self {
        let key = (p.metadata.namespace.clone().unwrap(), p.metadata.name.clone().unwrap());
        self.providers.insert(key, Arc::new(p));
        self
    }

    fn with_secret(mut self, s: Secret) -> Self {
        let key = (s.metadata.namespace.clone().unwrap(), s.metadata.name.clone().unwrap());
        self.secrets.insert(key, Arc::new(s));
        self
    }
}

impl ProviderLookup for Cache {
    fn provider(&self, namespace: &str, name: &str) -> Option<Arc<AlertProvider>> {
        self.providers.get(&(namespace.into(), name.into())).cloned()
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.secrets.get(&(namespace.into(), name.into())).cloned()
    }
}
