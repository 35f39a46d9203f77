//! Which Canaries name an object: the index the watch mappers read instead of passing over every
//! cached Canary at each event of a workload, an autoscaler, an Ingress, a ConfigMap or a Secret
//! (a pass per event made a rollout of all N Canaries quadratic in N).
//!
//! It is fed by the Canary watch with the same events as the Canary cache, so it holds what the
//! cache holds: a relist (`Init` … `InitDone`) builds a new table and swaps it in whole, as the
//! cache does, so a Canary deleted while the watch was down leaves no entry behind.

use std::{
    collections::HashMap,
    sync::{PoisonError, RwLock},
};

use kube::runtime::{reflector::ObjectRef, watcher};

use crate::{analysis::TargetKind, api::Canary};

/// How a Canary names an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `spec.targetRef` (its kind parsed: an unsupported kind names nothing a watch maps).
    Target(TargetKind),
    /// `spec.autoscalerRef`.
    Autoscaler,
    /// `spec.ingressRef`.
    Ingress,
}

/// The names one Canary refers to, with their roles.
type Names = Vec<(String, Role)>;

/// One namespace's Canaries and the names they refer to.
#[derive(Default, Debug)]
struct Namespace {
    /// Every Canary of the namespace, with the names it refers to.
    canaries: HashMap<ObjectRef<Canary>, Names>,
    /// Name → the Canaries referring to it, and how.
    by_name: HashMap<String, Vec<(Role, ObjectRef<Canary>)>>,
}

#[derive(Default, Debug)]
struct Table {
    namespaces: HashMap<String, Namespace>,
}

impl Table {
    fn insert(&mut self, canary: &Canary) {
        let key = ObjectRef::from_obj(canary);
        self.remove(&key);
        let spec = &canary.spec;
        let mut names: Names = Vec::with_capacity(3);
        if let Ok(kind) = TargetKind::of(canary) {
            names.push((spec.target_ref.name.clone(), Role::Target(kind)));
        }
        if let Some(a) = &spec.autoscaler_ref {
            names.push((a.name.clone(), Role::Autoscaler));
        }
        if let Some(i) = &spec.ingress_ref {
            names.push((i.name.clone(), Role::Ingress));
        }
        let ns = self.namespaces.entry(key.namespace.clone().unwrap_or_default()).or_default();
        for (name, role) in &names {
            ns.by_name.entry(name.clone()).or_default().push((*role, key.clone()));
        }
        ns.canaries.insert(key, names);
    }

    fn remove(&mut self, key: &ObjectRef<Canary>) {
        let ns_name = key.namespace.as_deref().unwrap_or_default();
        let Some(ns) = self.namespaces.get_mut(ns_name) else { return };
        let Some(names) = ns.canaries.remove(key) else { return };
        for (name, _) in names {
            if let Some(referrers) = ns.by_name.get_mut(&name) {
                referrers.retain(|(_, r)| r != key);
                if referrers.is_empty() {
                    ns.by_name.remove(&name);
                }
            }
        }
        if ns.canaries.is_empty() {
            self.namespaces.remove(ns_name);
        }
    }
}

/// The index: a table kept by the Canary watch's events, and the one a relist is building.
#[derive(Default, Debug)]
pub struct CanaryIndex {
    tables: RwLock<Tables>,
}

#[derive(Default, Debug)]
struct Tables {
    current: Table,
    /// The table a relist fills between `Init` and `InitDone`, then swapped in whole.
    building: Table,
}

impl CanaryIndex {
    /// Applies one event of the Canary watch (the same the Canary cache applies).
    pub fn apply(&self, event: &watcher::Event<Canary>) {
        let mut t = self.tables.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(c) => t.current.insert(c),
            watcher::Event::Delete(c) => t.current.remove(&ObjectRef::from_obj(c)),
            watcher::Event::Init => t.building = Table::default(),
            watcher::Event::InitApply(c) => t.building.insert(c),
            watcher::Event::InitDone => t.current = std::mem::take(&mut t.building),
        }
    }

    /// The Canaries of `namespace` that refer to `name` in `role`.
    pub fn referring(&self, namespace: &str, name: &str, role: Role) -> Vec<ObjectRef<Canary>> {
        let t = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        let Some(referrers) = t.current.namespaces.get(namespace).and_then(|ns| ns.by_name.get(name)) else {
            return Vec::new();
        };
        referrers.iter().filter(|(r, _)| *r == role).map(|(_, c)| c.clone()).collect()
    }

    /// Each Canary of `namespace` whose target is supported, with its target's kind and name.
    pub fn targets(&self, namespace: &str) -> Vec<(ObjectRef<Canary>, TargetKind, String)> {
        let t = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        let Some(ns) = t.current.namespaces.get(namespace) else { return Vec::new() };
        ns.canaries
            .iter()
            .flat_map(|(c, names)| {
                names.iter().filter_map(move |(name, role)| match role {
                    Role::Target(kind) => Some((c.clone(), *kind, name.clone())),
                    _ => None,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const NAMESPACES: [&str; 2] = ["a", "b"];
    const NAMES: [&str; 3] = ["podinfo", "backend", "frontend"];
    const KINDS: [&str; 4] = ["", "Deployment", "DaemonSet", "Service"];

    fn canary(
        ns: usize,
        name: usize,
        kind: usize,
        target: usize,
        hpa: Option<usize>,
        ingress: Option<usize>,
    ) -> Canary {
        let mut spec = json!({"service": {"port": 9898}});
        if let Some(h) = hpa {
            spec["autoscalerRef"] =
                json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": NAMES[h]});
        }
        if let Some(i) = ingress {
            spec["ingressRef"] =
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": NAMES[i]});
        }
        crate::fixtures::canary(NAMES[name], NAMESPACES[ns])
            .target(KINDS[kind], NAMES[target])
            .spec(spec)
            .build()
    }

    /// The answer of a pass over every cached Canary, which the index replaces.
    fn scan(store: &reflector::Store<Canary>, ns: &str, name: &str, role: Role) -> Vec<ObjectRef<Canary>> {
        let mut out: Vec<_> = store
            .state()
            .iter()
            .filter(|c| c.metadata.namespace.as_deref() == Some(ns))
            .filter(|c| match role {
                Role::Target(kind) => c.spec.target_ref.name == name && TargetKind::of(c) == Ok(kind),
                Role::Autoscaler => c.spec.autoscaler_ref.as_ref().is_some_and(|a| a.name == name),
                Role::Ingress => c.spec.ingress_ref.as_ref().is_some_and(|i| i.name == name),
            })
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect();
        out.sort_by(|x, y| x.name.cmp(&y.name));
        out
    }

    fn sorted(mut refs: Vec<ObjectRef<Canary>>) -> Vec<ObjectRef<Canary>> {
        refs.sort_by(|x, y| x.name.cmp(&y.name));
        refs
    }

    fn arb_canary() -> impl Strategy<Value = Canary> {
        (
            0..2usize,
            0..3usize,
            0..4usize,
            0..3usize,
            proptest::option::of(0..3usize),
            proptest::option::of(0..3usize),
        )
            .prop_map(|(ns, name, kind, target, hpa, ingress)| canary(ns, name, kind, target, hpa, ingress))
    }

    fn arb_event() -> impl Strategy<Value = watcher::Event<Canary>> {
        prop_oneof![
            4 => arb_canary().prop_map(watcher::Event::Apply),
            2 => arb_canary().prop_map(watcher::Event::Delete),
            1 => Just(watcher::Event::Init),
            2 => arb_canary().prop_map(watcher::Event::InitApply),
            1 => Just(watcher::Event::InitDone),
        ]
    }

    proptest! {
        /// After any sequence of watch events (creations, edits that retarget a Canary, deletions,
        /// relists that drop Canaries deleted meanwhile), the index answers what a pass over the
        /// Canary cache fed the same events answers.
        #[test]
        fn the_index_answers_what_a_pass_over_the_cache_answers(events in proptest::collection::vec(arb_event(), 0..40)) {
            let (store, mut writer) = reflector::store::<Canary>();
            let index = CanaryIndex::default();
            for event in &events {
                writer.apply_watcher_event(event);
                index.apply(event);
                for ns in NAMESPACES {
                    for name in NAMES {
                        let roles = [Role::Target(TargetKind::Deployment), Role::Target(TargetKind::DaemonSet), Role::Autoscaler, Role::Ingress];
                        for role in roles {
                            prop_assert_eq!(sorted(index.referring(ns, name, role)), scan(&store, ns, name, role), "{} {} {:?}", ns, name, role);
                        }
                    }
                    let mut targets: Vec<_> = index.targets(ns).into_iter().map(|(c, kind, name)| (c.name, kind, name)).collect();
                    targets.sort_by(|x, y| x.0.cmp(&y.0));
                    let mut expected: Vec<_> = store.state().iter()
                        .filter(|c| c.metadata.namespace.as_deref() == Some(ns))
                        .filter_map(|c| TargetKind::of(c).ok().map(|k| (c.metadata.name.clone().unwrap_or_default(), k, c.spec.target_ref.name.clone())))
                        .collect();
                    expected.sort_by(|x, y| x.0.cmp(&y.0));
                    prop_assert_eq!(targets, expected);
                }
            }
        }
    }

    #[test]
    fn a_retargeted_canary_leaves_its_old_target() {
        let index = CanaryIndex::default();
        index.apply(&watcher::Event::Apply(canary(0, 0, 1, 0, None, None)));
        let deployment = Role::Target(TargetKind::Deployment);
        assert_eq!(index.referring("a", "podinfo", deployment).len(), 1);
        index.apply(&watcher::Event::Apply(canary(0, 0, 1, 1, None, None)));
        assert!(index.referring("a", "podinfo", deployment).is_empty());
        assert_eq!(index.referring("a", "backend", deployment).len(), 1);
        assert!(index.referring("b", "backend", deployment).is_empty());
    }
}
