//! What can end a reconcile early, and how each failure is shown on the Canary.

use std::time::Duration;

use crate::{analysis::Reason, router};

/// Infrastructure failures of a reconcile. Analysis failures are not errors: they are data in the
/// Canary status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {kind} {name}: {source}")]
    Write {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The object changed since it was read (a resourceVersion precondition failed): not a fault.
    #[error("{kind} {name} changed since it was read")]
    Conflict { kind: String, name: String },
    #[error("cannot serialize an object: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("cannot update the finalizer of {name}: {source}")]
    Finalizer {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Something the user must fix (e.g. a missing target, or a VirtualService whose routes cannot
    /// be rewritten): shown on the Canary as a `Stalled` condition.
    #[error(transparent)]
    Stalled(#[from] Stall),
    /// A panic inside the reconcile, caught.
    #[error("internal error: {0}")]
    Panic(String),
    /// This replica does not lead (any more): it must not write.
    #[error("not the leader")]
    NotLeader,
    /// The API server did not answer a write in time.
    #[error("the API server did not answer a write within {0:?}")]
    TimedOut(Duration),
}

/// Longest API server message quoted on a Canary.
const MAX_QUOTED: usize = 512;

impl Error {
    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Write { .. } => "write",
            Error::Conflict { .. } => "conflict",
            Error::Serialize(_) => "serialize",
            Error::Finalizer { .. } => "finalizer",
            Error::Stalled(_) => "invalid",
            Error::Panic(_) => "panic",
            Error::NotLeader => "not-leader",
            Error::TimedOut(_) => "timeout",
        }
    }

    fn api_error(&self) -> Option<&kube::Error> {
        match self {
            Error::Write { source, .. } | Error::Finalizer { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the API server refused the request for good (4xx other than 409 and 429): an RBAC
    /// rule, a quota, an admission policy or an invalid object. Retrying alone will not help.
    fn is_rejection(&self) -> bool {
        matches!(self.api_error(), Some(kube::Error::Api(s)) if (400..500).contains(&s.code) && s.code != 409 && s.code != 429)
    }

    /// The reason of the `Stalled` condition that shows this failure on the Canary.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Stalled(stall) => stall.reason,
            Error::Panic(_) | Error::Serialize(_) => Reason::InternalError,
            _ if self.is_rejection() => Reason::WriteRejected,
            _ => Reason::ApiUnavailable,
        }
    }

    /// After how many failures in a row this kind of failure is shown on the Canary: at once when
    /// retrying alone cannot fix it, after three tries for what is usually transient (a restarting
    /// or overloaded API server).
    pub fn is_reported_after(&self, failures: u32) -> bool {
        match self {
            Error::Conflict { .. } | Error::NotLeader => false,
            Error::Write { .. } | Error::Finalizer { .. } | Error::TimedOut(_) if !self.is_rejection() => {
                failures >= 3
            }
            _ => true,
        }
    }

    /// What the Canary says about the failure: what failed, the API server's answer, what to do.
    pub fn advice(&self, canary: &str) -> String {
        let quoted = |s: &str| match s.char_indices().nth(MAX_QUOTED) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s.to_string(),
        };
        match self {
            Error::Panic(message) => format!(
                "Canary {canary}: internal error while reconciling: {}. The other Canaries are not \
                 affected and this one is retried with backoff; please report this as a bug, with the \
                 controller's log",
                quoted(message)
            ),
            Error::Stalled(stall) => quoted(&stall.message),
            Error::Write { source, .. } | Error::Finalizer { source, .. } if self.is_rejection() => {
                let what = match self {
                    Error::Write { kind, name, .. } => format!("{kind} {name}"),
                    _ => "the finalizer of the Canary".to_string(),
                };
                let (code, reason, message) = match source {
                    kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
                    other => (0, String::new(), other.to_string()),
                };
                let fix = match code {
                    403 => {
                        "grant it to the controller's ServiceAccount (see the Helm chart's RBAC), \
                            or raise the quota or relax the admission policy that denied it"
                    }
                    404 => "create what is missing (the namespace, or the object Veer patches)",
                    _ => {
                        "fix the Canary, or the object it generates from, so that the object is valid \
                          (or relax the admission policy that denied it)"
                    }
                };
                format!(
                    "Canary {canary}: the API server rejected the write of {what} (HTTP {code} {reason}): {}; \
                     {fix}. Veer retries with backoff",
                    quoted(&message)
                )
            }
            other => format!(
                "Canary {canary}: {}; the API server is unavailable or overloaded, Veer retries with backoff",
                quoted(&other.to_string())
            ),
        }
    }
}

/// A problem that stops a Canary until the user fixes something: a `Stalled` condition.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Stall {
    pub reason: Reason,
    pub message: String,
}

impl Stall {
    pub fn new(reason: Reason, message: impl ToString) -> Stall {
        Stall { reason, message: message.to_string() }
    }
}

impl From<router::RouterError> for Stall {
    fn from(e: router::RouterError) -> Stall {
        Stall::new(e.reason(), e)
    }
}
