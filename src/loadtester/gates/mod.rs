//! Manual gates (`/gate/*`) and rollback switches (`/rollback/*`), kept in a durable store so a
//! restart of the load tester never closes an approved gate or re-opens a closed one.
//!
//! Keys are Flagger's: gate `<name>.<namespace>`, rollback `rollback.<name>.<namespace>`. A key
//! that was never opened is closed. Stores keep only the open keys.
//!
//! One exception keeps keys apart: the gate of a Canary whose name starts with `rollback.` is
//! `_gate.<name>.<namespace>`, because `rollback.x.<namespace>` is Canary `x`'s rollback switch
//! (with Flagger's keys, opening the gate of Canary `rollback.x` rolled `x` back). `_` never
//! appears in Kubernetes names, and namespaces have no dots, so no two keys can meet.

mod configmap;
mod file;

use std::collections::BTreeSet;
use std::sync::Mutex;

use futures::future::BoxFuture;
use thiserror::Error;

pub use configmap::ConfigMapGateStore;
pub use file::FileGateStore;

/// Which switch a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateKind {
    /// Manual approval gate (`/gate/*`).
    Gate,
    /// Manual rollback switch (`/rollback/*`).
    Rollback,
}

/// Errors from a gate store.
#[derive(Debug, Error)]
pub enum GateStoreError {
    #[error("gate file {path}: {action} failed: {source}; check that the directory exists and is writable")]
    FileIo { path: String, action: &'static str, source: std::io::Error },
    #[error(
        "gate file {path} is not a valid gate store ({source}); fix it or move it away (all gates then start closed)"
    )]
    FileCorrupt { path: String, source: serde_json::Error },
    #[error(
        "gate ConfigMap {namespace}/{name}: {action} failed: {source}; check the API server and that the \
             service account may get, create and update ConfigMaps in {namespace}"
    )]
    Kube { namespace: String, name: String, action: &'static str, source: Box<kube::Error> },
    #[error("gate ConfigMap {namespace}/{name} kept changing under us ({attempts} attempts); try again")]
    Contended { namespace: String, name: String, attempts: u32 },
}

/// Where gate state lives. Implementations must make `set` durable before returning.
pub trait GateStore: Send + Sync + 'static {
    /// Whether `key` is open (unknown keys are closed).
    fn is_open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, GateStoreError>>;
    /// Opens or closes `key`, durably.
    fn set<'a>(&'a self, key: &'a str, open: bool) -> BoxFuture<'a, Result<(), GateStoreError>>;
    /// All open keys.
    fn open_keys(&self) -> BoxFuture<'_, Result<BTreeSet<String>, GateStoreError>>;
    /// Where the state is kept, for logs.
    fn describe(&self) -> String;
}

/// A canary name or namespace that cannot be part of a gate key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("payload {field} {value:?} is not a Kubernetes {rule}; send the Canary's name and namespace")]
pub struct BadName {
    field: &'static str,
    value: String,
    rule: &'static str,
}

fn check(field: &'static str, value: &str, max: usize, dots: bool) -> Result<(), BadName> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.'))
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric();
    let rule = if dots {
        "name (lower-case letters, digits, '-' and '.', at most 253 characters)"
    } else {
        "namespace (lower-case letters, digits and '-', at most 63 characters)"
    };
    if ok { Ok(()) } else { Err(BadName { field, value: value.to_owned(), rule }) }
}

/// Checks a payload's Canary name (a DNS subdomain) and namespace (a DNS label). Every
/// endpoint that uses them as keys or metric labels checks them first.
pub fn check_canary(name: &str, namespace: &str) -> Result<(), BadName> {
    check("name", name, 253, true)?;
    check("namespace", namespace, 63, false)
}

/// Prefix of the gate key of a Canary whose name would make its gate key another Canary's
/// rollback key.
const ROLLBACK_LOOKALIKE: &str = "_gate.";

/// The store key for a Canary's gate or rollback switch. Names are validated so that every key
/// is also a valid ConfigMap data key and cannot collide with another Canary's (see the module
/// documentation for names starting with `rollback.`).
pub fn gate_key(kind: GateKind, name: &str, namespace: &str) -> Result<String, BadName> {
    check_canary(name, namespace)?;
    Ok(match kind {
        GateKind::Gate if name.starts_with("rollback.") => format!("{ROLLBACK_LOOKALIKE}{name}.{namespace}"),
        GateKind::Gate => format!("{name}.{namespace}"),
        GateKind::Rollback => format!("rollback.{name}.{namespace}"),
    })
}

/// Gates in process memory only (Flagger's behaviour: lost on restart). For tests and for
/// callers that explicitly want nothing written.
#[derive(Debug, Default)]
pub struct MemoryGateStore {
    open: Mutex<BTreeSet<String>>,
}

impl GateStore for MemoryGateStore {
    fn is_open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, GateStoreError>> {
        let open = self.open.lock().expect("gate map lock poisoned").contains(key);
        Box::pin(async move { Ok(open) })
    }

    fn set<'a>(&'a self, key: &'a str, open: bool) -> BoxFuture<'a, Result<(), GateStoreError>> {
        let mut map = self.open.lock().expect("gate map lock poisoned");
        if open {
            map.insert(key.to_owned());
        } else {
            map.remove(key);
        }
        Box::pin(async { Ok(()) })
    }

    fn open_keys(&self) -> BoxFuture<'_, Result<BTreeSet<String>, GateStoreError>> {
        let keys = self.open.lock().expect("gate map lock poisoned").clone();
        Box::pin(async move { Ok(keys) })
    }

    fn describe(&self) -> String {
        "memory (lost on restart)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_flaggers() {
        assert_eq!(gate_key(GateKind::Gate, "podinfo", "test").unwrap(), "podinfo.test");
        assert_eq!(gate_key(GateKind::Rollback, "podinfo", "test").unwrap(), "rollback.podinfo.test");
    }

    #[test]
    fn names_are_validated() {
        for (name, ns) in
            [("", "test"), ("podinfo", ""), ("Pod", "test"), ("a/b", "test"), ("-a", "t"), ("a", "t-")]
        {
            let e = gate_key(GateKind::Gate, name, ns).unwrap_err();
            assert!(e.to_string().contains("is not a Kubernetes name"), "{e}");
        }
        assert!(gate_key(GateKind::Gate, &"a".repeat(254), "t").is_err());
        assert!(gate_key(GateKind::Gate, "my-app.v2", "team-1").is_ok());
        // Namespaces are DNS labels: no dots, at most 63 characters.
        for ns in ["team.a", &"n".repeat(64)] {
            let e = gate_key(GateKind::Gate, "podinfo", ns).unwrap_err();
            assert!(e.to_string().contains("is not a Kubernetes namespace"), "{e}");
        }
    }

    #[test]
    fn a_canary_named_rollback_dot_something_has_a_gate_of_its_own() {
        let lookalike = gate_key(GateKind::Gate, "rollback.podinfo", "test").unwrap();
        assert_ne!(lookalike, gate_key(GateKind::Rollback, "podinfo", "test").unwrap());
        assert_eq!(lookalike, "_gate.rollback.podinfo.test");
        // Every other key stays as Flagger writes it, so stored gates keep their meaning.
        assert_eq!(gate_key(GateKind::Gate, "rollbacks.podinfo", "test").unwrap(), "rollbacks.podinfo.test");
        assert_eq!(
            gate_key(GateKind::Rollback, "rollback.podinfo", "test").unwrap(),
            "rollback.rollback.podinfo.test"
        );
    }

    #[tokio::test]
    async fn opening_a_lookalike_gate_does_not_roll_another_canary_back() {
        let store = MemoryGateStore::default();
        store.set(&gate_key(GateKind::Gate, "rollback.podinfo", "test").unwrap(), true).await.unwrap();
        assert!(!store.is_open(&gate_key(GateKind::Rollback, "podinfo", "test").unwrap()).await.unwrap());
    }

    /// The behaviour every store must have; run against each implementation.
    pub(crate) async fn store_contract(store: &dyn GateStore) {
        let gate = gate_key(GateKind::Gate, "podinfo", "test").unwrap();
        let rollback = gate_key(GateKind::Rollback, "podinfo", "test").unwrap();
        assert!(!store.is_open(&gate).await.unwrap(), "gates start closed");
        store.set(&gate, true).await.unwrap();
        assert!(store.is_open(&gate).await.unwrap());
        assert!(!store.is_open(&rollback).await.unwrap(), "the rollback switch is separate");
        store.set(&gate, true).await.unwrap();
        assert!(store.is_open(&gate).await.unwrap(), "opening twice keeps it open");
        store.set(&rollback, true).await.unwrap();
        assert_eq!(store.open_keys().await.unwrap(), BTreeSet::from([gate.clone(), rollback.clone()]));
        store.set(&gate, false).await.unwrap();
        assert!(!store.is_open(&gate).await.unwrap());
        assert!(store.is_open(&rollback).await.unwrap());
        store.set(&gate, false).await.unwrap();
        assert!(!store.is_open(&gate).await.unwrap(), "closing twice keeps it closed");
        store.set(&rollback, false).await.unwrap();
        assert!(store.open_keys().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn memory_store_contract() {
        store_contract(&MemoryGateStore::default()).await;
    }
}
