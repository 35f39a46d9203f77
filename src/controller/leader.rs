//! Leader election on a `coordination.k8s.io` Lease, with fenced writes.
//!
//! The protocol is client-go's: the leader renews the Lease (an update with the resourceVersion it
//! read) every [`RETRY`]; a follower takes it over only once the Lease record has stayed unchanged
//! for a whole [`LEASE_DURATION`] by its own clock, and only with an update conditioned on that
//! record. What makes a deposed leader harmless is the fence: a replica counts itself the leader
//! only until [`RENEW_DEADLINE`] after the *start* of its last successful renewal. Another replica
//! can take over no sooner than `LEASE_DURATION` after it saw that renewal, which came later, so
//! the old leader has stopped writing five seconds before anyone else may start — whether it was
//! cut off from the API server, its renewals failed, or a reconcile of it was stuck in a webhook.
//! Every write of the controller checks [`Leadership::remaining`] first and is cancelled when the
//! leadership runs out while it is in flight (`Context::fenced`).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, api::PostParams};
use tokio::sync::watch;

/// How long a Lease holds without renewal, as written in `spec.leaseDurationSeconds`.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long after the start of its last successful renewal a leader stops writing.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the Lease is renewed (leader) or looked at (follower).
pub const RETRY: Duration = Duration::from_secs(2);

/// Whether this replica may write, and until when. Cheap to share.
#[derive(Debug)]
pub struct Leadership {
    /// The instant the leadership ends; `None`: not the leader. `Some(far future)` without election.
    until: Mutex<Option<Instant>>,
    /// Publishes each change of [`is_leader`](Self::is_leader) (to reconcile everything on a takeover).
    changed: watch::Sender<bool>,
}

impl Leadership {
    /// A replica that always leads (leader election off).
    pub fn always() -> Arc<Leadership> {
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        Arc::new(Leadership { until: Mutex::new(Some(far)), changed: watch::channel(true).0 })
    }

    /// A replica that does not lead until it wins the Lease.
    pub fn elected() -> Arc<Leadership> {
        Arc::new(Leadership { until: Mutex::new(None), changed: watch::channel(false).0 })
    }

    /// How long this replica may still write; `None` when it is not the leader.
    pub fn remaining(&self) -> Option<Duration> {
        let until = (*self.until.lock().expect("leadership lock"))?;
        until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    pub fn is_leader(&self) -> bool {
        self.remaining().is_some()
    }

    /// Each change of leadership, as seen by the lease task.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changed.subscribe()
    }

    pub(super) fn set(&self, until: Option<Instant>) {
        *self.until.lock().expect("leadership lock") = until;
        self.publish();
    }

    /// Publishes [`is_leader`](Self::is_leader) if it changed (a term that ran out, say).
    fn publish(&self) {
        let leader = self.is_leader();
        self.changed.send_if_modified(|v| std::mem::replace(v, leader) != leader);
    }
}

/// Runs `write` while `leadership` holds: refused when it does not, cancelled when it ends before
/// the write does (`NotLeader`), and in any case after `cap` (`TimedOut`).
pub async fn fenced<T>(
    leadership: &Leadership,
    cap: Duration,
    write: impl std::future::Future<Output = Result<T, super::error::Error>>,
) -> Result<T, super::error::Error> {
    let left = leadership.remaining().ok_or(super::error::Error::NotLeader)?;
    match tokio::time::timeout(left.min(cap), write).await {
        Ok(result) => result,
        Err(_) if left <= cap => Err(super::error::Error::NotLeader),
        Err(_) => Err(super::error::Error::TimedOut(cap)),
    }
}

/// What a follower saw of the Lease, and since when (by its own clock).
#[derive(Debug, Default)]
struct Observed {
    record: Option<(String, Option<Timestamp>)>,
    since: Option<Instant>,
}

/// Runs the election until `stop` fires, then releases the Lease if this replica holds it.
pub async fn run(
    api: Api<Lease>,
    name: String,
    identity: String,
    leadership: Arc<Leadership>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut observed = Observed::default();
    tokio::pin!(stop);
    loop {
        let attempt = Instant::now();
        // A call that hangs (a partitioned API server) must not outlive what it could renew.
        let result = tokio::time::timeout(RETRY.max(Duration::from_secs(1)) * 2, async {
            try_acquire_or_renew(&api, &name, &identity, &mut observed, attempt).await
        })
        .await;
        match result {
            Ok(Ok(true)) => leadership.set(Some(attempt + RENEW_DEADLINE)),
            Ok(Ok(false)) => leadership.set(None),
            // Either way, what is left of the current term runs out by itself.
            Ok(Err(e)) => {
                tracing::warn!(lease = %name, error = %e, "cannot renew or acquire the leader Lease");
                leadership.publish();
            }
            Err(_) => {
                tracing::warn!(lease = %name, "the leader Lease request timed out");
                leadership.publish();
            }
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
    if leadership.is_leader() {
        leadership.set(None);
        match release(&api, &name, &identity).await {
            Ok(()) => tracing::info!(lease = %name, "leader Lease released"),
            Err(e) => tracing::warn!(lease = %name, error = %e, "cannot release the leader Lease"),
        }
    }
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// One round of the election: whether this replica holds the Lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    observed: &mut Observed,
    now: Instant,
) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.to_string()),
                lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false), // another replica created it
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = (holder.clone(), spec.renew_time.as_ref().map(|t| t.0));
    if holder == identity {
        spec.renew_time = Some(now_micro());
        spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
        return update(api, name, &lease).await;
    }
    if observed.record.as_ref() != Some(&record) {
        observed.record = Some(record);
        observed.since = Some(now);
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(LEASE_DURATION, Duration::from_secs)
        .min(Duration::from_secs(3600));
    let expired = observed.since.is_some_and(|since| now.duration_since(since) >= duration);
    if !holder.is_empty() && !expired {
        return Ok(false);
    }
    tracing::info!(lease = %name, previous = %holder, "taking over the leader Lease");
    spec.holder_identity = Some(identity.to_string());
    spec.acquire_time = Some(now_micro());
    spec.renew_time = Some(now_micro());
    spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    update(api, name, &lease).await
}

/// Replaces the Lease with the resourceVersion it was read at: a 409 means someone else wrote it.
async fn update(api: &Api<Lease>, name: &str, lease: &Lease) -> Result<bool, kube::Error> {
    match api.replace(name, &PostParams::default(), lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up (on shutdown), so that another replica takes over at once instead of after
/// the lease duration.
async fn release(api: &Api<Lease>, name: &str, identity: &str) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else { return Ok(()) };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    update(api, name, &lease).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_holds_for_the_renew_deadline_only() {
        let l = Leadership::elected();
        assert!(!l.is_leader());
        let mut changes = l.subscribe();
        l.set(Some(Instant::now() + Duration::from_millis(200)));
        assert!(l.is_leader());
        assert!(changes.has_changed().unwrap());
        assert!(*changes.borrow_and_update());
        std::thread::sleep(Duration::from_millis(250));
        assert!(!l.is_leader(), "a term that is not renewed runs out by itself");
        assert_eq!(l.remaining(), None);
        // What a failed renewal does: publish, without holding the lock twice.
        l.publish();
        assert!(changes.has_changed().unwrap());
        assert!(!*changes.borrow_and_update(), "the end of the term is published");
        assert!(Leadership::always().is_leader());
    }

    #[tokio::test]
    async fn writes_are_refused_or_cancelled_once_the_leadership_ends() {
        use super::super::error::Error;
        let cap = Duration::from_secs(30);
        let quick = || async { Ok::<_, Error>(1) };
        let hung = || std::future::pending::<Result<i32, Error>>();
        assert!(matches!(fenced(&Leadership::elected(), cap, quick()).await, Err(Error::NotLeader)));
        assert_eq!(fenced(&Leadership::always(), cap, quick()).await.unwrap(), 1);
        let short = Leadership::elected();
        short.set(Some(Instant::now() + Duration::from_millis(200)));
        let started = Instant::now();
        assert!(matches!(fenced(&short, cap, hung()).await, Err(Error::NotLeader)), "cancelled in flight");
        assert!(started.elapsed() < Duration::from_secs(5));
        let capped = fenced(&Leadership::always(), Duration::from_millis(100), hung()).await;
        assert!(matches!(capped, Err(Error::TimedOut(_))), "a hung API server: {capped:?}");
    }

    #[test]
    fn a_deposed_leader_stops_before_anyone_may_take_over() {
        // A follower takes over LEASE_DURATION after it *saw* the last renewal, which cannot be
        // before the renewal started; the leader stops RENEW_DEADLINE after that start.
        assert!(RENEW_DEADLINE + Duration::from_secs(5) <= LEASE_DURATION);
        assert!(RETRY * 4 <= RENEW_DEADLINE, "several renewals fit in one term");
    }
}
