//! Operators' requests: the channel from `veer promote|abort|retry|pause|resume` (and the
//! dashboard, and `kubectl annotate`) into the decision, without a field on Flagger's API.
//!
//! - A one-off request is the Canary annotation `veer.dev/request`: `promote`, `promote-full`,
//!   `abort` or `retry`, optionally bound to a revision of the target as `<action>@<revision>`
//!   (what `veer` writes: a request made while looking at one revision never acts on another). The
//!   decision acts on it in the next tick, or refuses it (a Warning Event says why), and the
//!   controller then removes the annotation, which is how a client knows it was handled.
//! - Pausing is a state, not an event: the annotation `veer.dev/paused` (any value but `false`)
//!   holds the Canary where it is until it is removed.
//!
//! [`admit`] is the single rule for which request a Canary can take, used by the decision and by
//! the command line (to refuse at once rather than after a round trip).

use std::fmt;

use crate::api::{Canary, CanaryStatus, Phase};

/// The annotation holding a one-off request.
pub const REQUEST_ANNOTATION: &str = "veer.dev/request";
/// The annotation that holds a Canary where it is while present (unless `false`).
pub const PAUSED_ANNOTATION: &str = "veer.dev/paused";

/// What an operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Skip the remaining steps and gates: the next step runs now, and promotes when its checks pass.
    Promote,
    /// Promote now, without running the checks (also a failed revision that is still deployed).
    PromoteFull,
    /// Roll back now.
    Abort,
    /// Analyse the failed revision again, without touching the pod template.
    Retry,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Promote, Action::PromoteFull, Action::Abort, Action::Retry];

    /// The action as written in the annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::PromoteFull => "promote-full",
            Action::Abort => "abort",
            Action::Retry => "retry",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The verb, for messages ("nothing to promote").
    fn verb(self) -> &'static str {
        match self {
            Action::Promote | Action::PromoteFull => "promote",
            Action::Abort => "abort",
            Action::Retry => "retry",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request as written in `veer.dev/request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    /// The target revision the request is for (`status.lastAppliedSpec`'s format); `None` acts on
    /// whatever revision the target holds.
    pub revision: Option<String>,
}

/// Longest annotation value read (a revision is 19 characters; anything longer is not a request).
const MAX_VALUE: usize = 128;

impl Request {
    /// Parses `<action>` or `<action>@<revision>`.
    pub fn parse(value: &str) -> Result<Request, Refusal> {
        let invalid = || Refusal::Invalid(value.chars().take(MAX_VALUE).collect());
        if value.len() > MAX_VALUE {
            return Err(invalid());
        }
        let (action, revision) = match value.trim().split_once('@') {
            Some((a, r)) if !r.is_empty() && !r.contains('@') => (a, Some(r.to_string())),
            Some(_) => return Err(invalid()),
            None => (value.trim(), None),
        };
        let action = Action::parse(action).ok_or_else(invalid)?;
        Ok(Request { action, revision })
    }

    /// The annotation value.
    pub fn to_annotation(&self) -> String {
        match &self.revision {
            Some(r) => format!("{}@{r}", self.action),
            None => self.action.to_string(),
        }
    }

    /// The raw request on a Canary, if any.
    pub fn raw(canary: &Canary) -> Option<&str> {
        canary.metadata.annotations.as_ref()?.get(REQUEST_ANNOTATION).map(String::as_str)
    }
}

/// Whether a Canary is paused (`veer.dev/paused` present and not `false`).
pub fn paused(canary: &Canary) -> bool {
    canary
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("false"))
}

/// Why a request is not taken. The message says what to do instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The annotation's value is not a request.
    Invalid(String),
    /// The request was made for another revision than the target holds now.
    RevisionChanged { requested: String },
    /// The Canary has not finished initializing, or is being deleted.
    NotReady(Phase),
    /// No analysis is running (Initialized, Succeeded).
    NothingRunning(Action),
    /// The run failed; a plain promote does not apply.
    RunFailed,
    /// The run failed and the target is back at the promoted revision.
    Reverted(Action),
    /// The promotion is under way (Promoting, Finalising).
    Promoting(Action),
    /// Retry asked while the last run did not fail.
    NotFailed(Phase),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Invalid(v) => write!(
                f,
                "{v:?} is not a request: write promote, promote-full, abort or retry, optionally followed by @<revision>"
            ),
            Refusal::RevisionChanged { requested } => write!(
                f,
                "it was made for revision {requested}, and the target now holds another one: look at the new run and ask again"
            ),
            Refusal::NotReady(Phase::Terminating | Phase::Terminated) => f.write_str("the Canary is being deleted"),
            Refusal::NotReady(_) => f.write_str("the Canary is initializing: ask again once it is initialized"),
            Refusal::NothingRunning(a) => {
                write!(f, "nothing to {}: no analysis is running (deploy a new revision first)", a.verb())
            }
            Refusal::RunFailed => f.write_str(
                "the run failed: `veer retry` analyses the revision again, `veer promote --full` promotes it without analysis",
            ),
            Refusal::Reverted(a) => write!(
                f,
                "nothing to {}: the target is back at the promoted revision (apply the failed revision again to analyse it)",
                a.verb()
            ),
            Refusal::Promoting(Action::Abort) => f.write_str(
                "too late to abort: the primary already runs the new revision; set the target back to the previous revision to roll back",
            ),
            Refusal::Promoting(a) => write!(f, "nothing to {}: the promotion is already under way", a.verb()),
            Refusal::NotFailed(phase) => {
                write!(f, "nothing to retry: the Canary is {}, not Failed", phase.as_str())
            }
        }
    }
}

/// Whether a Canary with `status`, whose target holds `target_revision`, takes `request`.
pub fn admit(request: &Request, status: &CanaryStatus, target_revision: &str) -> Result<(), Refusal> {
    if let Some(requested) = &request.revision
        && requested != target_revision
    {
        return Err(Refusal::RevisionChanged { requested: requested.clone() });
    }
    let action = request.action;
    // A failed revision the target still holds (not reverted to the promoted one).
    let failed_still_deployed =
        target_revision == status.last_applied_spec && target_revision != status.last_promoted_spec;
    match status.phase {
        Phase::Empty | Phase::Initializing | Phase::Terminating | Phase::Terminated => {
            Err(Refusal::NotReady(status.phase))
        }
        Phase::Initialized | Phase::Succeeded if action == Action::Retry => {
            Err(Refusal::NotFailed(status.phase))
        }
        Phase::Initialized | Phase::Succeeded => Err(Refusal::NothingRunning(action)),
        Phase::Waiting | Phase::Progressing | Phase::WaitingPromotion => match action {
            Action::Retry => Err(Refusal::NotFailed(status.phase)),
            // A revision deployed during the run restarts it: the request was for the old one.
            _ if status.phase != Phase::Waiting && target_revision != status.last_applied_spec => {
                Err(Refusal::RevisionChanged { requested: status.last_applied_spec.clone() })
            }
            _ => Ok(()),
        },
        Phase::Promoting | Phase::Finalising => Err(match action {
            Action::Retry => Refusal::NotFailed(status.phase),
            _ => Refusal::Promoting(action),
        }),
        Phase::Failed => match action {
            Action::Promote => Err(Refusal::RunFailed),
            Action::Abort => Err(Refusal::NothingRunning(action)),
            Action::PromoteFull | Action::Retry if failed_still_deployed => Ok(()),
            Action::PromoteFull | Action::Retry => Err(Refusal::Reverted(action)),
        },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T: &str = "v1-0000000000000002"; // the target's revision
    const P: &str = "v1-0000000000000001"; // the promoted revision

    fn status(phase: Phase, applied: &str) -> CanaryStatus {
        CanaryStatus {
            phase,
            last_applied_spec: applied.into(),
            last_promoted_spec: P.into(),
            ..Default::default()
        }
    }

    fn req(action: Action) -> Request {
        Request { action, revision: None }
    }

    #[test]
    fn parses_what_it_writes_and_refuses_anything_else() {
        for action in Action::ALL {
            for revision in [None, Some(T.to_string())] {
                let r = Request { action, revision };
                assert_eq!(Request::parse(&r.to_annotation()), Ok(r));
            }
        }
        assert_eq!(Request::parse(" abort "), Ok(req(Action::Abort)));
        for bad in ["", "promote --full", "Promote", "abort@", "abort@a@b", "@v1", &"a".repeat(200)] {
            assert!(matches!(Request::parse(bad), Err(Refusal::Invalid(_))), "{bad:?}");
        }
        let long = Request::parse(&"x".repeat(10_000)).unwrap_err();
        assert!(long.to_string().len() < 300, "the message is bounded: {long}");
    }

    #[test]
    fn pausing_is_any_value_but_false() {
        let mut c = Canary::new("c", Default::default());
        assert!(!paused(&c));
        for (value, want) in
            [("true", true), ("", true), ("by alice", true), ("false", false), (" FALSE", false)]
        {
            c.metadata.annotations = Some([(PAUSED_ANNOTATION.to_string(), value.to_string())].into());
            assert_eq!(paused(&c), want, "{value:?}");
        }
    }

    /// Which request each phase takes, with the target still at the run's revision (`T`).
    #[test]
    fn which_phase_takes_which_request() {
        use Action::*;
        use Phase::*;
        let ok = |p: Phase, a: Action| admit(&req(a), &status(p, T), T);
        let table: &[(Phase, [bool; 4])] = &[
            //                 promote, promote-full, abort, retry
            (Empty, [false, false, false, false]),
            (Initializing, [false, false, false, false]),
            (Initialized, [false, false, false, false]),
            (Waiting, [true, true, true, false]),
            (Progressing, [true, true, true, false]),
            (WaitingPromotion, [true, true, true, false]),
            (Promoting, [false, false, false, false]),
            (Finalising, [false, false, false, false]),
            (Succeeded, [false, false, false, false]),
            (Failed, [false, true, false, true]),
            (Terminating, [false, false, false, false]),
        ];
        for (phase, want) in table {
            for (action, want) in [Promote, PromoteFull, Abort, Retry].into_iter().zip(want) {
                assert_eq!(
                    ok(*phase, action).is_ok(),
                    *want,
                    "{phase:?} {action:?}: {:?}",
                    ok(*phase, action)
                );
            }
        }
        assert_eq!(ok(Promoting, Abort), Err(Refusal::Promoting(Abort)));
        assert_eq!(ok(Failed, Promote), Err(Refusal::RunFailed));
    }

    #[test]
    fn a_failed_revision_reverted_to_the_promoted_one_is_not_retried() {
        // After the revert the last applied revision follows the target (as in Flagger).
        let s = status(Phase::Failed, P);
        assert_eq!(admit(&req(Action::Retry), &s, P), Err(Refusal::Reverted(Action::Retry)));
        assert_eq!(admit(&req(Action::PromoteFull), &s, P), Err(Refusal::Reverted(Action::PromoteFull)));
    }

    #[test]
    fn a_request_for_another_revision_is_refused() {
        let r = Request { action: Action::PromoteFull, revision: Some(P.into()) };
        assert_eq!(
            admit(&r, &status(Phase::Progressing, T), T),
            Err(Refusal::RevisionChanged { requested: P.into() })
        );
        let r = Request { action: Action::PromoteFull, revision: Some(T.into()) };
        assert_eq!(admit(&r, &status(Phase::Progressing, T), T), Ok(()));
        // Without a revision, a request during a run is for the revision under analysis.
        let new = "v1-0000000000000003";
        assert!(matches!(
            admit(&req(Action::PromoteFull), &status(Phase::Progressing, T), new),
            Err(Refusal::RevisionChanged { .. })
        ));
        assert_eq!(admit(&req(Action::PromoteFull), &status(Phase::Waiting, P), new), Ok(()));
    }

    proptest! {
        /// No annotation value panics the parser, and what parses writes back the same.
        #[test]
        fn any_value_parses_or_is_refused(value in ".{0,200}") {
            if let Ok(r) = Request::parse(&value) {
                prop_assert_eq!(Request::parse(&r.to_annotation()), Ok(r));
            }
        }
    }
}
