//! The selector label of a target (`flagger-behaviour.md` §2.3 step 4): the first of
//! `--selector-labels` present in `spec.selector.matchLabels`. Its key and value name the pods of
//! the canary (`key=value`) and of the primary (`key=value-primary`).

use super::{Workload, WorkloadError, primary_name};

/// The selector label of a target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    pub key: String,
    pub value: String,
}

impl Selector {
    /// The value selecting the primary's pods: `<value>-primary`.
    pub fn primary_value(&self) -> String {
        primary_name(&self.value)
    }
}

/// Finds the selector label of `target`: the first of `keys` (in their order, not the map's) in
/// `spec.selector.matchLabels`.
pub fn selector(target: Workload<'_>, keys: &[String]) -> Result<Selector, WorkloadError> {
    let labels = target.label_selector().and_then(|s| s.match_labels.as_ref());
    keys.iter()
        .find_map(|k| labels?.get(k).map(|v| Selector { key: k.clone(), value: v.clone() }))
        .ok_or_else(|| WorkloadError::NoSelectorLabel {
            kind: target.kind().as_str().into(),
            name: target.name().into(),
            namespace: target.namespace().into(),
            keys: keys.to_vec(),
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::workload::{WorkloadSettings, fixtures::*};

    fn keys() -> Vec<String> {
        WorkloadSettings::default().selector_labels
    }

    #[test]
    fn first_configured_key_wins_over_map_order() {
        let mut d = deployment("podinfo");
        d.spec.as_mut().unwrap().selector.match_labels = Some(BTreeMap::from([
            ("app.kubernetes.io/name".into(), "pi".into()),
            ("name".into(), "podinfo-name".into()),
        ]));
        let s = selector(Workload::Deployment(&d), &keys()).unwrap();
        assert_eq!(s, Selector { key: "name".into(), value: "podinfo-name".into() });
        assert_eq!(s.primary_value(), "podinfo-name-primary");
    }

    #[test]
    fn app_label() {
        let d = deployment("podinfo");
        let s = selector(Workload::Deployment(&d), &keys()).unwrap();
        assert_eq!((s.key.as_str(), s.value.as_str()), ("app", "podinfo"));
        let ds = daemon_set("podinfo-ds");
        assert_eq!(selector(Workload::DaemonSet(&ds), &keys()).unwrap().value, "podinfo-ds");
    }

    #[test]
    fn missing_label_has_flaggers_text_and_the_fix() {
        let mut d = deployment("podinfo");
        d.spec.as_mut().unwrap().selector.match_labels =
            Some(BTreeMap::from([("tier".into(), "web".into())]));
        let err = selector(Workload::Deployment(&d), &keys()).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "Deployment podinfo.test spec.selector.matchLabels must contain one of [app name app.kubernetes.io/name]"
            ),
            "{err}"
        );
        assert!(err.contains("--selector-labels"), "{err}");
        let custom = vec!["team".to_string()];
        let err = selector(Workload::Deployment(&d), &custom).unwrap_err().to_string();
        assert!(err.contains("must contain one of [team]"), "{err}");
    }
}
