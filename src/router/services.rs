//! The ClusterIP Services `<svc>`, `<svc>-primary` and `<svc>-canary` (`flagger-behaviour.md` §3.1),
//! generated for every provider when the target is a Deployment or DaemonSet. (A `kind: Service`
//! target is copied by the workload layer instead.)
//!
//! The apex and the primary Service select the primary pods (`<labelKey>: <labelValue>-primary`);
//! the canary Service selects the target's own pods. Veer owns all of a Service it controls; of a
//! Service that already exists and is not controlled by this Canary (typically the user's apex
//! Service), it owns only the selector and the ports, and leaves metadata and everything else to
//! whoever created it.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{PodSpec, Service, ServicePort, ServiceSpec},
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};
use kube::ResourceExt;

use super::{Control, RouterError, control, display_name, qualified, service_names, service_spec};
use crate::{
    api::{Canary, CanaryService, CustomMetadata},
    meta::{flux_annotations, is_flux_key, owner_reference},
};

/// Containers that are a mesh's proxy, whose ports are never discovered.
const SIDECARS: [&str; 2] = ["istio-proxy", "envoy"];

/// The desired Services `[apex, primary, canary]`.
///
/// * `label_key` / `label_value`: the target's selector label (e.g. `app` / `podinfo`); primary pods
///   carry `<label_value>-primary`.
/// * `pod_spec`: the target's pod spec, used for `spec.service.portDiscovery`.
/// * `existing`: the live `[apex, primary, canary]` Services, if any. One not controlled by this
///   Canary is adopted: only its selector and ports are set (node ports kept by port name).
///
/// Keys listed in `spec.service.unmanagedMetadata` are never set, so that whoever sets them keeps
/// them.
pub fn desired_services(
    canary: &Canary,
    label_key: &str,
    label_value: &str,
    pod_spec: Option<&PodSpec>,
    existing: [Option<&Service>; 3],
) -> Result<[Service; 3], RouterError> {
    let svc = service_spec(canary)?;
    let names = service_names(canary);
    let ports = ports(svc, pod_spec);
    let primary_selector = format!("{label_value}-primary");
    let [apex, primary, canary_svc] = existing;
    Ok([
        build(canary, svc, &names.apex, label_key, &primary_selector, svc.apex.as_ref(), &ports, apex)?,
        build(
            canary,
            svc,
            &names.primary,
            label_key,
            &primary_selector,
            svc.primary.as_ref(),
            &ports,
            primary,
        )?,
        build(canary, svc, &names.canary, label_key, label_value, svc.canary.as_ref(), &ports, canary_svc)?,
    ])
}

#[allow(clippy::too_many_arguments)]
fn build(
    canary: &Canary,
    svc: &CanaryService,
    name: &str,
    label_key: &str,
    selector_value: &str,
    custom: Option<&CustomMetadata>,
    ports: &[ServicePort],
    existing: Option<&Service>,
) -> Result<Service, RouterError> {
    let adopted = match existing.map(|s| control(s.owner_references(), canary)) {
        None | Some(Control::ThisCanary) => false,
        Some(Control::User) => true,
        Some(Control::AnotherCanary(owner)) => {
            return Err(RouterError::OwnedByAnotherCanary {
                kind: "Service".into(),
                object: qualified(name, canary.namespace().as_deref()),
                owner,
                canary: display_name(canary),
            });
        }
    };
    let mut spec = ServiceSpec {
        selector: Some(BTreeMap::from([(label_key.to_string(), selector_value.to_string())])),
        ports: Some(keep_node_ports(ports, existing)),
        ..Default::default()
    };
    let mut metadata =
        ObjectMeta { name: Some(name.into()), namespace: canary.namespace(), ..Default::default() };
    if !adopted {
        spec.type_ = Some("ClusterIP".into());
        if svc.headless == Some(true) {
            spec.cluster_ip = Some("None".into());
        }
        spec.traffic_distribution = svc.traffic_distribution.clone().filter(|t| !t.is_empty());
        let unmanaged = svc.unmanaged_metadata.as_ref();
        let mut labels = custom_map(custom.and_then(|m| m.labels.as_ref()));
        labels.insert(label_key.to_string(), name.to_string());
        let mut annotations = custom_map(custom.and_then(|m| m.annotations.as_ref()));
        annotations.extend(flux_annotations());
        metadata.labels = Some(without(labels, unmanaged.and_then(|u| u.labels.as_ref())));
        metadata.annotations = Some(without(annotations, unmanaged.and_then(|u| u.annotations.as_ref())));
        metadata.owner_references = Some(vec![owner_reference(canary)]);
    }
    Ok(Service { metadata, spec: Some(spec), status: None })
}

/// Custom metadata without Flux's keys, which would make Flux claim the generated object.
fn custom_map(map: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    map.into_iter().flatten().filter(|(k, _)| !is_flux_key(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn without(mut map: BTreeMap<String, String>, keys: Option<&Vec<String>>) -> BTreeMap<String, String> {
    for key in keys.into_iter().flatten() {
        map.remove(key);
    }
    map
}

/// The Service ports: the service port first, then (with `portDiscovery`) the target's other
/// container ports.
fn ports(svc: &CanaryService, pod_spec: Option<&PodSpec>) -> Vec<ServicePort> {
    let target_port = match &svc.target_port {
        None | Some(IntOrString::Int(0)) => None,
        Some(IntOrString::String(s)) if s.is_empty() || s == "0" => None,
        Some(tp) => Some(tp.clone()),
    };
    let main = ServicePort {
        name: Some(svc.port_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "http".into())),
        protocol: Some("TCP".into()),
        port: svc.port,
        target_port: Some(target_port.clone().unwrap_or(IntOrString::Int(svc.port))),
        app_protocol: svc.app_protocol.clone().filter(|p| !p.is_empty()),
        node_port: None,
    };
    let mut ports = vec![main];
    let Some(pod_spec) = pod_spec.filter(|_| svc.port_discovery) else {
        return ports;
    };
    for container in pod_spec.containers.iter().filter(|c| !SIDECARS.contains(&c.name.as_str())) {
        for (index, cp) in container.ports.iter().flatten().enumerate() {
            let is_service_port = match &target_port {
                None => cp.container_port == svc.port,
                Some(IntOrString::Int(n)) => cp.container_port == *n,
                Some(IntOrString::String(s)) => cp.name.as_deref() == Some(s.as_str()),
            };
            let name = cp
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("tcp-{}-{index}", container.name));
            let protocol = cp.protocol.clone().unwrap_or_else(|| "TCP".into());
            // The API server rejects a Service with a repeated port name or port/protocol pair.
            let taken = ports.iter().any(|p| {
                p.name.as_deref() == Some(name.as_str())
                    || (p.port == cp.container_port && p.protocol.as_deref() == Some(protocol.as_str()))
            });
            if is_service_port || taken {
                continue;
            }
            ports.push(ServicePort {
                name: Some(name),
                protocol: Some(protocol),
                port: cp.container_port,
                target_port: Some(IntOrString::Int(cp.container_port)),
                ..Default::default()
            });
        }
    }
    ports
}

/// Ports with the node ports of the live Service, matched by port name, so that a NodePort or
/// LoadBalancer Service keeps the ports clients already use.
fn keep_node_ports(ports: &[ServicePort], existing: Option<&Service>) -> Vec<ServicePort> {
    let live: Vec<&ServicePort> =
        existing.and_then(|s| s.spec.as_ref()).and_then(|s| s.ports.as_ref()).into_iter().flatten().collect();
    ports
        .iter()
        .map(|p| {
            let node_port =
                live.iter().find(|l| l.name.is_some() && l.name == p.name).and_then(|l| l.node_port);
            ServicePort { node_port, ..p.clone() }
        })
        .collect()
}
