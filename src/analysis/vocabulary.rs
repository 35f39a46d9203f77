//! Names from the Canary spec that the decision and the leaves (routers, metrics) branch on, parsed
//! once into types that say what they can do.

use crate::api::{Canary, CanaryMetric, CanarySpec, CrossNamespaceRef};

/// The traffic provider of a Canary (`spec.provider`, or the controller's `--mesh-provider`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    Istio,
    Nginx,
    Kubernetes,
    /// `gatewayapi:v1` or `gatewayapi:v1beta1`: an HTTPRoute.
    GatewayApi(GatewayApiVersion),
    /// `linkerd`, `osm`, `smi:v1alpha1`, `smi:v1alpha2`, `smi:v1alpha3` (each optionally
    /// `:<mesh>`): an SMI TrafficSplit.
    Smi(SmiProvider),
    /// Any other value (the rest of the CRD enum, `gatewayapi:v1`, or something else): Veer has no
    /// router for it, and the controller stalls such a Canary. Its name still picks the built-in
    /// metric queries.
    Unsupported(String),
}

impl Provider {
    /// Parses a provider name as written in `spec.provider` or `--mesh-provider`.
    pub fn parse(name: &str) -> Provider {
        match name {
            "istio" => Provider::Istio,
            "nginx" => Provider::Nginx,
            "kubernetes" => Provider::Kubernetes,
            "gatewayapi:v1" => Provider::GatewayApi(GatewayApiVersion::V1),
            "gatewayapi:v1beta1" => Provider::GatewayApi(GatewayApiVersion::V1beta1),
            other => match SmiProvider::parse(other) {
                Some(smi) => Provider::Smi(smi),
                None => Provider::Unsupported(other.to_string()),
            },
        }
    }

    /// The provider of a Canary: `spec.provider`, or the controller's default when it is empty.
    pub fn of(canary: &Canary, default: &str) -> Provider {
        Provider::of_spec(&canary.spec, default)
    }

    /// The provider of a Canary spec: `spec.provider`, or `default` when it is empty.
    pub fn of_spec(spec: &CanarySpec, default: &str) -> Provider {
        Provider::parse(spec.provider.as_deref().filter(|p| !p.is_empty()).unwrap_or(default))
    }

    /// The provider's name.
    pub fn as_str(&self) -> &str {
        match self {
            Provider::Istio => "istio",
            Provider::Nginx => "nginx",
            Provider::Kubernetes => "kubernetes",
            Provider::GatewayApi(GatewayApiVersion::V1) => "gatewayapi:v1",
            Provider::GatewayApi(GatewayApiVersion::V1beta1) => "gatewayapi:v1beta1",
            Provider::Smi(smi) => &smi.name,
            Provider::Unsupported(p) => p,
        }
    }

    /// Whether the provider moves traffic between primary and canary. The `kubernetes` provider
    /// does not: it runs Blue/Green on the Services alone (no A/B matching, no mirroring, no switch
    /// of traffic to the canary, no gradual promotion).
    pub fn routes_traffic(&self) -> bool {
        *self != Provider::Kubernetes
    }

    /// Whether the provider's router mirrors (shadows) traffic to the canary: Istio and the
    /// Gateway API providers (`gatewayapi:*`).
    pub fn mirrors(&self) -> bool {
        match self {
            Provider::Istio | Provider::GatewayApi(_) => true,
            Provider::Unsupported(p) => p.starts_with("gatewayapi"),
            Provider::Nginx | Provider::Kubernetes | Provider::Smi(_) => false,
        }
    }
}

/// The Gateway API version a Canary names in `gatewayapi:<version>`: the HTTPRoute version Veer
/// writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayApiVersion {
    V1,
    V1beta1,
}

impl GatewayApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayApiVersion::V1 => "v1",
            GatewayApiVersion::V1beta1 => "v1beta1",
        }
    }
}

/// An SMI provider: the TrafficSplit version Veer writes and the mesh it targets, as Flagger maps
/// them: `linkerd` writes `v1alpha1`, `osm` `v1alpha2`, `smi:<version>[:<mesh>]` the version named.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SmiProvider {
    pub version: SmiVersion,
    /// The mesh (`linkerd`, `osm`, or what follows `smi:<version>:`); empty when not named.
    pub mesh: String,
    /// The provider as written.
    pub name: String,
}

impl SmiProvider {
    fn parse(name: &str) -> Option<SmiProvider> {
        let (version, mesh) = match name {
            "linkerd" => (SmiVersion::V1alpha1, "linkerd"),
            "osm" => (SmiVersion::V1alpha2, "osm"),
            other => {
                let rest = other.strip_prefix("smi:")?;
                let (version, mesh) = rest.split_once(':').unwrap_or((rest, ""));
                let version = match version {
                    "v1alpha1" => SmiVersion::V1alpha1,
                    "v1alpha2" => SmiVersion::V1alpha2,
                    "v1alpha3" => SmiVersion::V1alpha3,
                    _ => return None,
                };
                (version, mesh)
            }
        };
        Some(SmiProvider { version, mesh: mesh.to_string(), name: name.to_string() })
    }
}

/// The version of the SMI TrafficSplit API (`split.smi-spec.io`). `v1alpha1` writes weights as
/// quantities (strings), the later versions as integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmiVersion {
    V1alpha1,
    V1alpha2,
    V1alpha3,
}

impl SmiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SmiVersion::V1alpha1 => "v1alpha1",
            SmiVersion::V1alpha2 => "v1alpha2",
            SmiVersion::V1alpha3 => "v1alpha3",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of workload a Canary rolls out (`spec.targetRef.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Deployment,
    DaemonSet,
}

impl TargetKind {
    /// Parses `spec.targetRef.kind`; empty means `Deployment`. Any other kind (`Service`, which the
    /// CRD allows, or a value stored without the CRD) is returned as the error, as written, for
    /// the message saying it is not supported.
    pub fn parse(kind: &str) -> Result<TargetKind, &str> {
        match kind {
            "" | "Deployment" => Ok(TargetKind::Deployment),
            "DaemonSet" => Ok(TargetKind::DaemonSet),
            other => Err(other),
        }
    }

    /// The kind of a Canary's target (see [`parse`](Self::parse)).
    pub fn of(canary: &Canary) -> Result<TargetKind, &str> {
        TargetKind::parse(&canary.spec.target_ref.kind)
    }

    /// The kind's name: `Deployment` or `DaemonSet`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Deployment => "Deployment",
            TargetKind::DaemonSet => "DaemonSet",
        }
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a metric's value comes from, in Flagger's order: its MetricTemplate, else its inline
/// query, else the built-in check of its name (`request-success-rate`, `request-duration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricSource<'a> {
    Template(&'a CrossNamespaceRef),
    Query(&'a str),
    Builtin,
}

impl MetricSource<'_> {
    pub fn of(metric: &CanaryMetric) -> MetricSource<'_> {
        match (&metric.template_ref, metric.query.as_deref().filter(|q| !q.trim().is_empty())) {
            (Some(reference), _) => MetricSource::Template(reference),
            (None, Some(query)) => MetricSource::Query(query),
            (None, None) => MetricSource::Builtin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_kinds_parse_with_the_unsupported_kind_reported() {
        assert_eq!(TargetKind::parse(""), Ok(TargetKind::Deployment));
        assert_eq!(TargetKind::parse("Deployment"), Ok(TargetKind::Deployment));
        assert_eq!(TargetKind::parse("DaemonSet"), Ok(TargetKind::DaemonSet));
        assert_eq!(TargetKind::parse("Service"), Err("Service"));
        assert_eq!(TargetKind::parse("deployment"), Err("deployment"));
        for k in [TargetKind::Deployment, TargetKind::DaemonSet] {
            assert_eq!(TargetKind::parse(k.as_str()), Ok(k));
        }
    }

    #[test]
    fn providers_parse_and_print_as_written() {
        for name in [
            "istio",
            "nginx",
            "kubernetes",
            "gatewayapi:v1",
            "linkerd",
            "osm",
            "smi:v1alpha3:istio",
            "appmesh:v1beta2",
            "",
        ] {
            assert_eq!(Provider::parse(name).as_str(), name);
            assert_eq!(Provider::parse(name).to_string(), name);
        }
    }

    #[test]
    fn smi_providers_name_their_version_and_mesh() {
        let smi = |name: &str| match Provider::parse(name) {
            Provider::Smi(s) => Some((s.version, s.mesh)),
            _ => None,
        };
        assert_eq!(smi("linkerd"), Some((SmiVersion::V1alpha1, "linkerd".into())));
        assert_eq!(smi("osm"), Some((SmiVersion::V1alpha2, "osm".into())));
        assert_eq!(smi("smi:v1alpha1"), Some((SmiVersion::V1alpha1, String::new())));
        assert_eq!(smi("smi:v1alpha2:linkerd"), Some((SmiVersion::V1alpha2, "linkerd".into())));
        assert_eq!(smi("smi:v1alpha3:istio"), Some((SmiVersion::V1alpha3, "istio".into())));
        assert_eq!(smi("smi:v1alpha4"), None);
        assert_eq!(smi("smi"), None);
        assert_eq!(smi("linkerd:service"), None);
    }

    #[test]
    fn capabilities() {
        let p = Provider::parse;
        assert!(p("istio").mirrors() && p("gatewayapi:v1beta1").mirrors());
        assert!(!p("nginx").mirrors() && !p("kubernetes").mirrors() && !p("linkerd").mirrors());
        assert!(!p("kubernetes").routes_traffic());
        assert!(p("istio").routes_traffic() && p("nginx").routes_traffic() && p("gloo").routes_traffic());
    }
}
