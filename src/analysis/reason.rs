//! Why a Canary is where it is: every `status.decision.reason` and `Stalled` condition reason Veer
//! writes, in one place.

/// Declares [`Reason`] with its list: the string written to the status and Events is the
/// variant's name, so renaming a variant changes the wire format (the test below pins each one).
macro_rules! reasons {
    ($($(#[$doc:meta])+ $variant:ident,)+) => {
        /// A decision or stall reason (`status.decision.reason`, the `Stalled` condition's reason).
        /// On the wire it is [`as_str`](Reason::as_str), the variant's name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])+ $variant,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            /// The reason as written to the status and Events.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => stringify!($variant),)+
                }
            }
        }
    };
}

reasons! {
    // ------------------------------------------------ decisions of the analysis (crate::analysis)

    /// `spec.suspend` is set: nothing happens until it is cleared.
    Suspended,
    /// Initializing, or a run is due, and the primary workload does not exist yet.
    WaitPrimaryCreated,
    /// The primary workload exists but is not ready yet.
    WaitPrimaryReady,
    /// Initialization finished: the primary runs the target's template, waiting for a new revision.
    Initialized,
    /// A status written by Flagger was taken over (its revision hashes replaced by Veer's).
    Adopted,
    /// The router's current weights could not be read back (a Warning Event says why).
    RoutesUnavailable,
    /// After a promotion the primary does not run the promoted template: it is copied again.
    RepeatPromotion,
    /// A confirm-rollout webhook has not approved the new revision yet.
    WaitConfirmRollout,
    /// A new revision was detected: the canary is scaled up and the analysis starts.
    Started,
    /// A promotion was decided but the primary does not run the promoted template yet.
    WaitPrimaryPromoted,
    /// The canary workload is not ready yet during a run.
    WaitCanaryReady,
    /// A new revision during the analysis: it starts over (without waiting for the interval).
    Restarted,
    /// A pre-rollout webhook failed: one failed check.
    PreRolloutFailed,
    /// A rollout webhook failed: one failed check.
    WebhookFailed,
    /// A metric was outside its accepted range: one failed check.
    MetricFailed,
    /// A metric query returned no data: one failed check.
    MetricNoData,
    /// A metric query could not run: one failed check.
    MetricError,
    /// One step of mirrored (shadow) traffic before the canary receives real traffic.
    MirrorTraffic,
    /// The canary weight advanced one step.
    AdvanceWeight,
    /// Blue/Green: the iterations passed, all traffic is switched to the canary.
    RouteToCanary,
    /// A/B testing or Blue/Green: one more iteration passed.
    AdvanceIteration,
    /// A confirm-traffic-increase webhook has not approved the next weight yet.
    WaitConfirmTrafficIncrease,
    /// A confirm-promotion webhook has not approved the promotion yet.
    WaitConfirmPromotion,
    /// The analysis passed: the canary's template is copied to the primary.
    Promote,
    /// Kubernetes provider: the primary is promoted, finalising without moving traffic.
    Finalise,
    /// Promoting: all traffic is back on the primary.
    RouteToPrimary,
    /// Promoting: the primary's weight advanced one step (`stepWeightPromotion`).
    AdvancePrimaryWeight,
    /// The run ended with a promotion (with or without analysis).
    Succeeded,
    /// The run failed (failed checks threshold, progress deadline, rollback webhook) and was rolled back.
    RolledBack,
    /// After a failed run the target was set back to the promoted revision; applying the failed
    /// revision again starts a new run.
    Reverted,
    /// The target disappeared during a run: all traffic back on the primary, the run failed.
    TargetLost,
    /// The primary did not become ready during the promotion: the canary keeps all traffic.
    PromotionFailed,

    // ------------------------------------------------ operators' requests (crate::analysis::request)

    /// `veer.dev/paused` holds the Canary where it is (`veer pause`).
    Paused,
    /// `veer.dev/paused` was removed: the Canary goes on (`veer resume`).
    Resumed,
    /// `veer promote --full`: the canary's template is copied to the primary without the checks.
    PromoteRequested,
    /// `veer abort`: the run was rolled back on request.
    Aborted,
    /// `veer retry`: the failed revision is analysed again.
    Retried,

    // ------------------------------------------------ stalls of the analysis (crate::analysis)

    /// Stalled: a spec value Veer cannot act on (unparsable, or above its bound).
    InvalidSpec,
    /// Stalled: the target workload does not exist.
    TargetNotFound,

    // ------------------------------------------------ stalls found by the controller

    /// Stalled: the provider has no router in Veer.
    UnsupportedProvider,
    /// Stalled: a reference to another namespace under `--no-cross-namespace-refs`.
    CrossNamespaceRef,
    /// Stalled: `spec.service` is absent.
    ServiceMissing,
    /// Stalled: provider nginx without `spec.ingressRef`.
    IngressRefMissing,
    /// Stalled: the Ingress of `spec.ingressRef` does not exist.
    IngressNotFound,
    /// Stalled: provider istio without the Istio CRDs installed.
    IstioNotInstalled,
    /// Stalled: a Gateway API provider and the HTTPRoute CRD does not serve its version.
    GatewayApiNotInstalled,
    /// Stalled: a Gateway API provider without `spec.service.gatewayRefs`.
    GatewayRefsMissing,
    /// Stalled: an SMI provider and the TrafficSplit CRD does not serve its version.
    SmiNotInstalled,
    /// Stalled: a generated object's name or label value would be too long.
    NameTooLong,
    /// Stalled: `spec.targetRef.kind` is neither Deployment nor DaemonSet.
    UnsupportedTarget,
    /// Stalled: an older Canary already targets the same workload.
    TargetShared,
    /// Stalled: the target has none of the selector labels Veer needs.
    SelectorLabelMissing,
    /// Stalled: a ConfigMap or Secret the target uses does not exist.
    ConfigNotFound,
    /// Stalled: `spec.autoscalerRef` names a kind Veer does not support.
    UnsupportedAutoscaler,
    /// Stalled: the autoscaler of `spec.autoscalerRef` does not exist.
    AutoscalerNotFound,
    /// Stalled: a generated Service cannot be built from the spec.
    InvalidService,
    /// Stalled: the traffic-routing object cannot be built or rewritten.
    InvalidRouting,
    /// Stalled: the controller's caches have not finished listing (a kind it may not list, say).
    CachesIncomplete,

    // ------------------------------------------------ failed reconciles (crate::controller::Error)

    /// Stalled: a panic or an unserializable object inside the reconcile (a bug).
    InternalError,
    /// Stalled: the API server refused a write for good (RBAC, quota, admission, invalid object).
    WriteRejected,
    /// Stalled: the API server did not answer or failed, repeatedly.
    ApiUnavailable,
}

impl Reason {
    /// The reason written as `s`; `None` for a string no variant writes (another version's).
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<Reason> for String {
    /// A reason read back from the status against a reason of this version.
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Reason> for str {
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    /// The wire format: Flagger compatibility, dashboards and users' scripts read these strings.
    #[test]
    fn reasons_are_written_as_before() {
        let written: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            written,
            [
                "Suspended",
                "WaitPrimaryCreated",
                "WaitPrimaryReady",
                "Initialized",
                "Adopted",
                "RoutesUnavailable",
                "RepeatPromotion",
                "WaitConfirmRollout",
                "Started",
                "WaitPrimaryPromoted",
                "WaitCanaryReady",
                "Restarted",
                "PreRolloutFailed",
                "WebhookFailed",
                "MetricFailed",
                "MetricNoData",
                "MetricError",
                "MirrorTraffic",
                "AdvanceWeight",
                "RouteToCanary",
                "AdvanceIteration",
                "WaitConfirmTrafficIncrease",
                "WaitConfirmPromotion",
                "Promote",
                "Finalise",
                "RouteToPrimary",
                "AdvancePrimaryWeight",
                "Succeeded",
                "RolledBack",
                "Reverted",
                "TargetLost",
                "PromotionFailed",
                "Paused",
                "Resumed",
                "PromoteRequested",
                "Aborted",
                "Retried",
                "InvalidSpec",
                "TargetNotFound",
                "UnsupportedProvider",
                "CrossNamespaceRef",
                "ServiceMissing",
                "IngressRefMissing",
                "IngressNotFound",
                "IstioNotInstalled",
                "GatewayApiNotInstalled",
                "GatewayRefsMissing",
                "SmiNotInstalled",
                "NameTooLong",
                "UnsupportedTarget",
                "TargetShared",
                "SelectorLabelMissing",
                "ConfigNotFound",
                "UnsupportedAutoscaler",
                "AutoscalerNotFound",
                "InvalidService",
                "InvalidRouting",
                "CachesIncomplete",
                "InternalError",
                "WriteRejected",
                "ApiUnavailable",
            ]
        );
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert_eq!(r.to_string(), r.as_str());
        }
        assert_eq!(Reason::parse("Synced"), None);
    }
}
