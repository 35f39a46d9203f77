//! NGINX Ingress (`provider: nginx`, `flagger-behaviour.md` §3.3): the canary Ingress
//! `<ingressRef.name>-canary`, a copy of the user's Ingress that points at `<svc>-canary` and carries
//! ingress-nginx's canary annotations. The user's Ingress is never modified: it keeps routing to the
//! apex Service, that is to the primary pods.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::networking::v1::{Ingress, IngressBackend, IngressSpec},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::ResourceExt;

use kube::api::ApiResource;

use super::{Desired, Live, RouterError, Routes, display_name, qualified, regex_escape, service_names};
use crate::{
    api::{Canary, HeaderMatch},
    meta::{LAST_APPLIED, flux_annotations, is_flux_key, owner_reference},
};

/// Default `--ingress-annotations-prefix`.
pub const DEFAULT_ANNOTATIONS_PREFIX: &str = "nginx.ingress.kubernetes.io";

/// The name of the canary Ingress: `<ingressRef.name>-canary`.
pub fn canary_ingress_name(canary: &Canary) -> Result<String, RouterError> {
    Ok(format!("{}-canary", ingress_ref_name(canary)?))
}

/// The user's Ingress (`spec.ingressRef`), from the caches.
pub(super) fn user_ingress(canary: &Canary, live: &dyn Live) -> Result<Ingress, RouterError> {
    let name = ingress_ref_name(canary)?;
    let not_found = || RouterError::IngressNotFound {
        ingress: qualified(name, canary.namespace().as_deref()),
        canary: display_name(canary),
    };
    let ingress = live.get(&ApiResource::erase::<Ingress>(&()), name).ok_or_else(not_found)?;
    serde_json::from_value(ingress).map_err(|_| not_found())
}

/// The live canary Ingress, if any.
fn live_canary_ingress(canary: &Canary, live: &dyn Live) -> Option<Ingress> {
    let name = canary_ingress_name(canary).ok()?;
    serde_json::from_value(live.get(&ApiResource::erase::<Ingress>(&()), &name)?).ok()
}

/// The routes of the live canary Ingress.
pub(super) fn read(canary: &Canary, live: &dyn Live, annotations_prefix: &str) -> Result<Routes, String> {
    let ingress = live_canary_ingress(canary, live)
        .ok_or_else(|| format!("canary Ingress of Canary {} not found yet", display_name(canary)))?;
    read_routes(canary, &ingress, annotations_prefix).map_err(|e| e.to_string())
}

/// The canary Ingress for `routes`, rewritten when the live one carries canary annotations Veer
/// stopped setting (A/B conditions after a run; see [`has_stale_canary_annotations`]).
pub(super) fn desired(
    canary: &Canary,
    user_ingress: &Ingress,
    routes: Routes,
    annotations_prefix: &str,
    live: &dyn Live,
) -> Result<Vec<Desired>, RouterError> {
    let ingress = desired_canary_ingress(canary, user_ingress, routes, annotations_prefix)?;
    let rewrite = live_canary_ingress(canary, live)
        .is_some_and(|l| has_stale_canary_annotations(&ingress, &l, annotations_prefix));
    let object = serde_json::to_value(&ingress).unwrap_or_default();
    Ok(vec![Desired { kind: ApiResource::erase::<Ingress>(&()), object, rewrite }])
}

fn ingress_ref_name(canary: &Canary) -> Result<&str, RouterError> {
    canary.spec.ingress_ref.as_ref().map(|r| r.name.as_str()).filter(|n| !n.is_empty()).ok_or_else(|| {
        RouterError::MissingIngressRef { canary: display_name(canary), service: service_names(canary).apex }
    })
}

/// The canary Ingress for `routes`, built from the user's Ingress (`spec.ingressRef`).
///
/// Its spec is the user's with every backend Service `<svc>` replaced by `<svc>-canary`; labels are
/// copied; annotations are the user's minus kubectl's last-applied-configuration and every key
/// starting `<prefix>/canary`, plus Flux's and the canary ones: `canary: "true"`, and
/// `canary-weight: "<C>"`. With A/B testing (`analysis.match`) and C > 0, the header conditions
/// become `canary-by-cookie` (header `cookie`), or `canary-by-header` with `canary-by-header-value`
/// (exact) or `canary-by-header-pattern` (regex; prefix and suffix as anchored patterns), and the
/// weight stays 0 so that requests without the header stay on the primary; at C = 0 they are left
/// out.
///
/// Stale canary annotations of the user's Ingress are dropped by *key*. Flagger drops those whose
/// *value* contains the prefix (`flagger-behaviour.md` §9.3 quirk #6), which keeps e.g. an old
/// `canary-weight` on A/B routes.
pub fn desired_canary_ingress(
    canary: &Canary,
    user_ingress: &Ingress,
    routes: Routes,
    annotations_prefix: &str,
) -> Result<Ingress, RouterError> {
    let ingress_name = ingress_ref_name(canary)?;
    let names = service_names(canary);
    let mut spec = user_ingress.spec.clone().unwrap_or_default();
    if !retarget(&mut spec, &names.apex, &names.canary) {
        return Err(RouterError::BackendNotFound {
            service: names.apex,
            ingress: qualified(&user_ingress.name_any(), user_ingress.namespace().as_deref()),
            canary: display_name(canary),
        });
    }

    let key = |name: &str| format!("{annotations_prefix}/{name}");
    let canary_prefix = key("canary");
    let mut annotations: BTreeMap<String, String> = user_ingress
        .annotations()
        .iter()
        .filter(|(k, _)| !k.starts_with(&canary_prefix) && *k != LAST_APPLIED && !is_flux_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.extend(flux_annotations());
    annotations.insert(canary_prefix.clone(), "true".into());

    let weight = routes.canary.clamp(0, 100);
    let ab = canary.spec.analysis.as_ref().and_then(|a| a.match_.as_ref()).filter(|m| !m.is_empty());
    match ab {
        Some(matches) if weight > 0 => {
            let conditions = ab_annotations(matches.iter().filter_map(|m| m.headers.as_ref()).flatten());
            if conditions.is_empty() {
                return Err(RouterError::NoNginxMatch { canary: display_name(canary) });
            }
            annotations.extend(conditions.into_iter().map(|(name, value)| (key(name), value)));
            annotations.insert(key("canary-weight"), "0".into());
        }
        _ => {
            annotations.insert(key("canary-weight"), weight.to_string());
        }
    }

    let labels: BTreeMap<String, String> = user_ingress
        .labels()
        .iter()
        .filter(|(k, _)| !is_flux_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Ingress {
        metadata: ObjectMeta {
            name: Some(format!("{ingress_name}-canary")),
            namespace: canary.namespace(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(canary)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// Whether the live canary Ingress carries `<prefix>/canary*` annotations that `desired` no longer
/// sets, such as the A/B header or cookie conditions once a run is over. Server-side apply removes
/// them only when the object is applied again, so such a write must not be skipped as "nothing to
/// change".
pub fn has_stale_canary_annotations(desired: &Ingress, live: &Ingress, annotations_prefix: &str) -> bool {
    let prefix = format!("{annotations_prefix}/canary");
    let wanted = desired.annotations();
    live.annotations().keys().any(|k| k.starts_with(&prefix) && !wanted.contains_key(k))
}

/// Points every backend Service `from` at `to`. Whether a path of a rule routed to `from`.
fn retarget(spec: &mut IngressSpec, from: &str, to: &str) -> bool {
    let rename = |backend: &mut IngressBackend| match backend.service.as_mut() {
        Some(service) if service.name == from => {
            service.name = to.to_string();
            true
        }
        _ => false,
    };
    if let Some(default) = spec.default_backend.as_mut() {
        rename(default);
    }
    let mut found = false;
    for rule in spec.rules.iter_mut().flatten() {
        for path in rule.http.iter_mut().flat_map(|h| h.paths.iter_mut()) {
            found |= rename(&mut path.backend);
        }
    }
    found
}

/// ingress-nginx canary annotations (names without the prefix) for A/B header conditions. The last
/// header wins, as ingress-nginx routes on one header only.
fn ab_annotations<'a>(
    headers: impl Iterator<Item = (&'a String, &'a HeaderMatch)>,
) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    for (name, m) in headers {
        if name.eq_ignore_ascii_case("cookie") {
            if let Some(cookie) = &m.exact {
                out.insert("canary-by-cookie", cookie.clone());
            }
            continue;
        }
        let (value, pattern) = match (&m.exact, &m.regex, &m.prefix, &m.suffix) {
            (Some(exact), ..) => (Some(exact.clone()), None),
            (_, Some(regex), ..) => (None, Some(regex.clone())),
            (_, _, Some(prefix), _) => (None, Some(format!("^{}.*", regex_escape(prefix)))),
            (_, _, _, Some(suffix)) => (None, Some(format!(".*{}$", regex_escape(suffix)))),
            _ => continue,
        };
        out.insert("canary-by-header", name.clone());
        out.remove("canary-by-header-value");
        out.remove("canary-by-header-pattern");
        if let Some(value) = value {
            out.insert("canary-by-header-value", value);
        }
        if let Some(pattern) = pattern {
            out.insert("canary-by-header-pattern", pattern);
        }
    }
    out
}

/// The routes a live canary Ingress stands for: with A/B testing, a `canary-by-cookie` or
/// `canary-by-header` annotation means all matching traffic goes to the canary (0/100); otherwise
/// `canary-weight` (missing = 0). NGINX does not mirror.
pub fn read_routes(
    canary: &Canary,
    canary_ingress: &Ingress,
    annotations_prefix: &str,
) -> Result<Routes, RouterError> {
    let annotations = canary_ingress.annotations();
    let key = |name: &str| format!("{annotations_prefix}/{name}");
    let ab = canary.spec.analysis.as_ref().and_then(|a| a.match_.as_ref()).is_some_and(|m| !m.is_empty());
    if ab
        && (annotations.contains_key(&key("canary-by-cookie"))
            || annotations.contains_key(&key("canary-by-header")))
    {
        return Ok(Routes::canary(100));
    }
    let weight_key = key("canary-weight");
    let weight = match annotations.get(&weight_key) {
        None => 0,
        Some(value) => {
            value.trim().parse::<i32>().ok().filter(|w| (0..=100).contains(w)).ok_or_else(|| {
                RouterError::InvalidWeight {
                    ingress: qualified(&canary_ingress.name_any(), canary_ingress.namespace().as_deref()),
                    annotation: weight_key.clone(),
                    value: value.clone(),
                }
            })?
        }
    };
    Ok(Routes::canary(weight))
}
