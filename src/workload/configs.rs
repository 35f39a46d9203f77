//! Config tracking (`flagger-behaviour.md` §2.4, §2.5): the ConfigMaps and Secrets a pod template
//! uses, which of them are tracked, their checksums (`status.trackedConfigs`), and their `-primary`
//! copies.
//!
//! References are found in volumes (`configMap`, `secret`, `projected.sources[]`), `env[].valueFrom`
//! (`configMapKeyRef`, `secretKeyRef`) and `envFrom[]` of containers and initContainers. A referenced
//! object is tracked unless it is annotated `flagger.app/config-tracking: disable…`, or is a Secret of
//! a type other than Opaque, basic-auth, ssh-auth or tls (service-account tokens, registry
//! credentials and the like belong to the namespace, not to a release).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::Arc,
};

use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Container, PodSpec, Secret},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::Resource;
use sha2::{Digest, Sha256};

use super::{PRIMARY_SUFFIX, Workload, WorkloadError, primary_name};
use crate::{
    api::Canary,
    meta::{CONFIG_TRACKING, filter_by_prefixes, owner_reference},
    revision::config_checksum,
};

/// The two kinds of tracked configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "ConfigMap",
            ConfigKind::Secret => "Secret",
        }
    }

    /// The prefix of `status.trackedConfigs` keys.
    fn key_prefix(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "configmap",
            ConfigKind::Secret => "secret",
        }
    }
}

/// A ConfigMap or Secret, by kind and name (in the target's namespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigId {
    pub kind: ConfigKind,
    pub name: String,
}

impl ConfigId {
    pub fn config_map(name: impl Into<String>) -> ConfigId {
        ConfigId { kind: ConfigKind::ConfigMap, name: name.into() }
    }

    pub fn secret(name: impl Into<String>) -> ConfigId {
        ConfigId { kind: ConfigKind::Secret, name: name.into() }
    }

    /// The `status.trackedConfigs` key: `configmap/<name>` or `secret/<name>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind.key_prefix(), self.name)
    }

    /// Parses a `status.trackedConfigs` key.
    pub fn from_key(key: &str) -> Option<ConfigId> {
        match key.split_once('/')? {
            ("configmap", name) if !name.is_empty() => Some(ConfigId::config_map(name)),
            ("secret", name) if !name.is_empty() => Some(ConfigId::secret(name)),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind.as_str(), self.name)
    }
}

/// A reference from a pod spec to a config. `optional` is true only when every reference to it is
/// optional: one mandatory use is enough for the pods to need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigRef {
    pub id: ConfigId,
    pub optional: bool,
}

/// The configs `spec` references, each once, ordered by kind and name.
pub fn config_refs(spec: &PodSpec) -> Vec<ConfigRef> {
    let mut found: BTreeMap<ConfigId, bool> = BTreeMap::new();
    // The visitor needs `&mut` (it also renames); reading a copy keeps one traversal for both uses.
    visit_refs(&mut spec.clone(), &mut |kind, name, optional| {
        let all_optional = found.entry(ConfigId { kind, name: name.clone() }).or_insert(true);
        *all_optional &= optional;
    });
    found.into_iter().map(|(id, optional)| ConfigRef { id, optional }).collect()
}

/// Renames every config reference of `spec` for which `rename` returns a new name.
pub(super) fn rename_refs(spec: &mut PodSpec, rename: &dyn Fn(ConfigKind, &str) -> Option<String>) {
    visit_refs(spec, &mut |kind, name, _| {
        if let Some(new) = rename(kind, name) {
            *name = new;
        }
    });
}

/// Calls `f(kind, name, optional)` for every config reference, in every place a pod spec can hold one.
fn visit_refs(spec: &mut PodSpec, f: &mut dyn FnMut(ConfigKind, &mut String, bool)) {
    for volume in spec.volumes.iter_mut().flatten() {
        if let Some(cm) = &mut volume.config_map {
            f(ConfigKind::ConfigMap, &mut cm.name, cm.optional.unwrap_or(false));
        }
        if let Some(secret) = &mut volume.secret
            && let Some(name) = &mut secret.secret_name
        {
            f(ConfigKind::Secret, name, secret.optional.unwrap_or(false));
        }
        let sources = volume.projected.as_mut().and_then(|p| p.sources.as_mut());
        for source in sources.into_iter().flatten() {
            if let Some(cm) = &mut source.config_map {
                f(ConfigKind::ConfigMap, &mut cm.name, cm.optional.unwrap_or(false));
            }
            if let Some(secret) = &mut source.secret {
                f(ConfigKind::Secret, &mut secret.name, secret.optional.unwrap_or(false));
            }
        }
    }
    let init = spec.init_containers.iter_mut().flatten();
    for container in init.chain(spec.containers.iter_mut()) {
        visit_container(container, f);
    }
}

fn visit_container(container: &mut Container, f: &mut dyn FnMut(ConfigKind, &mut String, bool)) {
    for env in container.env.iter_mut().flatten() {
        let Some(from) = &mut env.value_from else { continue };
        if let Some(r) = &mut from.config_map_key_ref {
            f(ConfigKind::ConfigMap, &mut r.name, r.optional.unwrap_or(false));
        }
        if let Some(r) = &mut from.secret_key_ref {
            f(ConfigKind::Secret, &mut r.name, r.optional.unwrap_or(false));
        }
    }
    for from in container.env_from.iter_mut().flatten() {
        if let Some(r) = &mut from.config_map_ref {
            f(ConfigKind::ConfigMap, &mut r.name, r.optional.unwrap_or(false));
        }
        if let Some(r) = &mut from.secret_ref {
            f(ConfigKind::Secret, &mut r.name, r.optional.unwrap_or(false));
        }
    }
}

/// Whether an object opted out of tracking (`flagger.app/config-tracking: disable…`); the primary
/// then uses the object itself.
pub fn tracking_disabled(meta: &ObjectMeta) -> bool {
    meta.annotations.as_ref().and_then(|a| a.get(CONFIG_TRACKING)).is_some_and(|v| v.starts_with("disable"))
}

/// Whether Secrets of this type are tracked. A missing type is Opaque (the API server's default).
pub fn is_tracked_secret_type(type_: Option<&str>) -> bool {
    matches!(
        type_.unwrap_or("Opaque"),
        "Opaque" | "kubernetes.io/basic-auth" | "kubernetes.io/ssh-auth" | "kubernetes.io/tls"
    )
}

/// The tracked configs of a target, as read from the caches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackedConfigs {
    pub config_maps: BTreeMap<String, Arc<ConfigMap>>,
    pub secrets: BTreeMap<String, Arc<Secret>>,
}

impl TrackedConfigs {
    pub fn is_empty(&self) -> bool {
        self.config_maps.is_empty() && self.secrets.is_empty()
    }

    /// Which configs are tracked (the ones the primary uses `-primary` copies of).
    pub fn ids(&self) -> BTreeSet<ConfigId> {
        let cms = self.config_maps.keys().map(ConfigId::config_map);
        cms.chain(self.secrets.keys().map(ConfigId::secret)).collect()
    }

    /// `status.trackedConfigs`: key → checksum, equal to Flagger's for the same objects. ConfigMaps
    /// with `binaryData` (which Flagger neither copies nor tracks) also cover it, so that a change
    /// of it starts a canary run instead of reaching the primary unanalysed at the next promotion.
    pub fn checksums(&self) -> BTreeMap<String, String> {
        let cms = self.config_maps.iter().map(|(name, cm)| {
            let mut data = cm.data.clone().unwrap_or_default();
            // ConfigMap keys cannot contain '/', so these never collide with `data` keys.
            data.extend(
                base64_values(&cm.binary_data).into_iter().map(|(k, v)| (format!("binaryData/{k}"), v)),
            );
            (ConfigId::config_map(name).key(), checksum(&data))
        });
        let secrets = self
            .secrets
            .iter()
            .map(|(name, s)| (ConfigId::secret(name).key(), checksum(&base64_values(&s.data))));
        cms.chain(secrets).collect()
    }
}

/// Flagger's checksum. Go encodes a missing map (which is how the API server returns an empty one)
/// as `null`, and Flagger hashes that.
fn checksum(data: &BTreeMap<String, String>) -> String {
    if data.is_empty() {
        Sha256::digest(b"null")[..8].iter().map(|b| format!("{b:02x}")).collect()
    } else {
        config_checksum(data)
    }
}

/// Binary values as their JSON form (base64), which is what Flagger's checksum covers.
fn base64_values(data: &Option<BTreeMap<String, ByteString>>) -> BTreeMap<String, String> {
    serde_json::to_value(data.clone().unwrap_or_default())
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// Finds the tracked configs of `target`. `config_map`/`secret` look objects up by name in the
/// target's namespace (from the controller's caches). With tracking disabled (`enabled` false,
/// `--enable-config-tracking=false`) nothing is tracked and nothing is looked up.
///
/// Missing objects referenced optionally are skipped; missing mandatory ones are an error naming
/// all of them, since the pods cannot start without them.
pub fn track_configs(
    target: Workload<'_>,
    enabled: bool,
    config_map: impl Fn(&str) -> Option<Arc<ConfigMap>>,
    secret: impl Fn(&str) -> Option<Arc<Secret>>,
) -> Result<TrackedConfigs, WorkloadError> {
    let mut tracked = TrackedConfigs::default();
    let Some(spec) = target.template().and_then(|t| t.spec.as_ref()).filter(|_| enabled) else {
        return Ok(tracked);
    };
    let mut missing = Vec::new();
    for ConfigRef { id, optional } in config_refs(spec) {
        match id.kind {
            ConfigKind::ConfigMap => match config_map(&id.name) {
                Some(cm) if tracking_disabled(&cm.metadata) => {}
                Some(cm) => {
                    tracked.config_maps.insert(id.name, cm);
                }
                None if optional => {}
                None => missing.push(id),
            },
            ConfigKind::Secret => match secret(&id.name) {
                Some(s) if tracking_disabled(&s.metadata) || !is_tracked_secret_type(s.type_.as_deref()) => {}
                Some(s) => {
                    tracked.secrets.insert(id.name, s);
                }
                None if optional => {}
                None => missing.push(id),
            },
        }
    }
    if !missing.is_empty() {
        return Err(WorkloadError::MissingConfigs {
            kind: target.kind().as_str().into(),
            name: target.name().into(),
            namespace: target.namespace().into(),
            missing,
        });
    }
    Ok(tracked)
}

/// Owner references of a `-primary` config: the Canary as controller, plus the references of other
/// Canaries (and anything else) already on the existing copy, demoted to non-controller — a config
/// shared by several Canaries must outlive each of them.
pub fn primary_owner_references(existing: Option<&ObjectMeta>, canary: &Canary) -> Vec<OwnerReference> {
    let ours = owner_reference(canary);
    let others = existing.and_then(|m| m.owner_references.as_ref()).into_iter().flatten().filter(|r| {
        let same_canary = r.uid == ours.uid || (r.kind == "Canary" && r.name == ours.name);
        !same_canary
    });
    let demoted: Vec<OwnerReference> =
        others.map(|r| OwnerReference { controller: Some(false), ..r.clone() }).collect();
    std::iter::once(ours).chain(demoted).collect()
}

fn primary_config_meta(
    source: &ObjectMeta,
    existing: Option<&ObjectMeta>,
    canary: &Canary,
    prefixes: &[String],
) -> ObjectMeta {
    let labels = filter_by_prefixes(&source.labels.clone().unwrap_or_default(), prefixes);
    ObjectMeta {
        name: Some(primary_name(source.name.as_deref().unwrap_or_default())),
        namespace: source.namespace.clone().or_else(|| canary.meta().namespace.clone()),
        labels: Some(labels).filter(|l| !l.is_empty()),
        owner_references: Some(primary_owner_references(existing, canary)),
        ..Default::default()
    }
}

/// The `<name>-primary` copy of a tracked ConfigMap. `existing` is the current copy, if any.
/// Unlike Flagger (quirk #17), `binaryData` is copied too: the primary must see the same files.
/// `immutable` is not copied, so that the next promotion can update the copy.
pub fn primary_config_map(
    source: &ConfigMap,
    existing: Option<&ConfigMap>,
    canary: &Canary,
    include_label_prefixes: &[String],
) -> ConfigMap {
    ConfigMap {
        metadata: primary_config_meta(
            &source.metadata,
            existing.map(|e| &e.metadata),
            canary,
            include_label_prefixes,
        ),
        data: source.data.clone(),
        binary_data: source.binary_data.clone(),
        immutable: None,
    }
}

/// The `<name>-primary` copy of a tracked Secret (data and type). `existing` is the current copy.
pub fn primary_secret(
    source: &Secret,
    existing: Option<&Secret>,
    canary: &Canary,
    include_label_prefixes: &[String],
) -> Secret {
    Secret {
        metadata: primary_config_meta(
            &source.metadata,
            existing.map(|e| &e.metadata),
            canary,
            include_label_prefixes,
        ),
        data: source.data.clone(),
        type_: source.type_.clone(),
        immutable: None,
        string_data: None,
    }
}

/// Whether `name` is the `-primary` copy of a tracked config of `kind`; returns the original name.
pub(super) fn original_of<'a>(
    tracked: &BTreeSet<ConfigId>,
    kind: ConfigKind,
    name: &'a str,
) -> Option<&'a str> {
    let original = name.strip_suffix(PRIMARY_SUFFIX)?;
    tracked.contains(&ConfigId { kind, name: original.to_string() }).then_some(original)
}
