//! The dashboard's memory: the Canaries and their Events as the watches deliver them, and a
//! bounded history per Canary (weights, check results, decisions) recorded while the dashboard
//! runs. Pure: the watch tasks feed it, with the time of each change as an argument.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use k8s_openapi::{api::core::v1::Event, jiff::Timestamp};
use kube::ResourceExt;
use serde::Serialize;

use crate::api::{Canary, CheckRecord, Decision, Phase};

/// Samples (phase, weight, failed checks) kept per Canary: the oldest go first.
pub const HISTORY: usize = 500;
/// Check results kept per Canary (every metric and webhook together).
pub const CHECK_HISTORY: usize = 500;
/// Decisions kept per Canary.
pub const DECISIONS: usize = 100;
/// Events kept per Canary (Flagger's texts; one per distinct message, its repeats counted).
pub const EVENTS: usize = 200;
/// Canaries no longer in the cluster whose pages are kept.
pub const FORGOTTEN: usize = 100;
/// Longest Event message kept (the controller writes at most 1,024 characters).
const MESSAGE_CHARS: usize = 1024;

/// A Canary's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Key {
        Key { namespace: namespace.into(), name: name.into() }
    }

    pub fn of(canary: &Canary) -> Key {
        Key { namespace: canary.namespace().unwrap_or_default(), name: canary.name_any() }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

/// A Canary's state at one moment, as the watch delivered it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub time: Timestamp,
    pub phase: Phase,
    pub weight: i32,
    pub failed_checks: i32,
    pub iterations: i32,
}

impl Sample {
    fn of(canary: &Canary, time: Timestamp) -> Sample {
        let s = canary.status.clone().unwrap_or_default();
        Sample {
            time,
            phase: s.phase,
            weight: s.canary_weight,
            failed_checks: s.failed_checks,
            iterations: s.iterations,
        }
    }

    fn same_state(&self, other: &Sample) -> bool {
        (self.phase, self.weight, self.failed_checks, self.iterations)
            == (other.phase, other.weight, other.failed_checks, other.iterations)
    }
}

/// A Kubernetes Event on a Canary, without what the dashboard does not show.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// The Event's uid (its name when it has none).
    pub id: String,
    /// The uid of the Canary it is about, when recorded.
    #[serde(skip)]
    pub canary_uid: Option<String>,
    pub warning: bool,
    pub reason: String,
    pub message: String,
    pub first: Option<Timestamp>,
    /// When it was last recorded.
    pub last: Timestamp,
    pub count: i32,
}

impl EventRecord {
    /// The Canary an Event is about and what the dashboard keeps of it; `None` for an Event
    /// about something else, or without a time.
    pub fn of(event: &Event) -> Option<(Key, EventRecord)> {
        let object = &event.involved_object;
        if object.kind.as_deref() != Some("Canary") {
            return None;
        }
        let namespace = object.namespace.clone().or_else(|| event.metadata.namespace.clone())?;
        let key = Key { namespace, name: object.name.clone()? };
        let first = event.first_timestamp.as_ref().map(|t| t.0);
        let last = event
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(event.event_time.as_ref().map(|t| t.0))
            .or(first)
            .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
        let id = event.metadata.uid.clone().or_else(|| event.metadata.name.clone())?;
        Some((
            key,
            EventRecord {
                id,
                canary_uid: object.uid.clone(),
                warning: event.type_.as_deref() == Some("Warning"),
                reason: event.reason.clone().unwrap_or_default(),
                message: event.message.as_deref().unwrap_or_default().chars().take(MESSAGE_CHARS).collect(),
                first,
                last,
                count: event.count.unwrap_or(1).max(1),
            },
        ))
    }
}

/// What the dashboard knows of one Canary.
#[derive(Clone, Debug, Default)]
pub struct Tracked {
    /// The Canary as last seen; `None` once deleted (or before it was listed, when its Events
    /// came first).
    pub canary: Option<Canary>,
    /// The uid of the Canary last seen, kept after its deletion.
    uid: Option<String>,
    /// When the dashboard saw it deleted, or missing from a new listing.
    pub deleted: Option<Timestamp>,
    pub samples: VecDeque<Sample>,
    /// Samples dropped to keep [`HISTORY`].
    pub samples_dropped: u64,
    pub checks: VecDeque<CheckRecord>,
    pub decisions: VecDeque<Decision>,
    /// By Event id.
    pub events: BTreeMap<String, EventRecord>,
    /// The last change, to forget the oldest of the deleted Canaries first.
    touched: Option<Timestamp>,
}

impl Tracked {
    fn record(&mut self, canary: &Canary, now: Timestamp) {
        let sample = Sample::of(canary, now);
        if self.samples.back().is_none_or(|last| !last.same_state(&sample)) {
            push_bounded(&mut self.samples, sample, HISTORY, &mut self.samples_dropped);
        }
        let status = canary.status.clone().unwrap_or_default();
        for check in status.checks {
            let known = self.checks.iter().rev().find(|c| c.kind == check.kind && c.name == check.name);
            if known.is_none_or(|k| k.time != check.time) {
                push_bounded(&mut self.checks, check, CHECK_HISTORY, &mut 0);
            }
        }
        if let Some(decision) = status.decision
            && self.decisions.back() != Some(&decision)
        {
            push_bounded(&mut self.decisions, decision, DECISIONS, &mut 0);
        }
    }

    /// The uid of the Canary shown, also once deleted (the Events of an older Canary of the same
    /// name are not its).
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, bound: usize, dropped: &mut u64) {
    if queue.len() >= bound {
        queue.pop_front();
        *dropped += 1;
    }
    queue.push_back(item);
}

/// The two watches the dashboard runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    Canaries,
    Events,
}

/// How a watch is doing.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchHealth {
    /// The first listing is complete.
    pub synced: bool,
    /// The last error, until the watch works again.
    pub error: Option<String>,
    pub error_since: Option<Timestamp>,
}

/// Everything the dashboard shows, kept up to date by the watches.
#[derive(Debug, Default)]
pub struct Store {
    canaries: BTreeMap<Key, Tracked>,
    /// Bumped at every change: the pages reload when it moves.
    generation: u64,
    canary_watch: WatchHealth,
    event_watch: WatchHealth,
    /// The Canaries of a listing under way.
    listing: Option<BTreeSet<Key>>,
}

impl Store {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn health(&self, watch: Watch) -> &WatchHealth {
        match watch {
            Watch::Canaries => &self.canary_watch,
            Watch::Events => &self.event_watch,
        }
    }

    fn health_mut(&mut self, watch: Watch) -> &mut WatchHealth {
        match watch {
            Watch::Canaries => &mut self.canary_watch,
            Watch::Events => &mut self.event_watch,
        }
    }

    /// The Canaries in the cluster, by namespace and name.
    pub fn live(&self) -> impl Iterator<Item = &Canary> {
        self.canaries.values().filter_map(|t| t.canary.as_ref())
    }

    pub fn get(&self, key: &Key) -> Option<&Tracked> {
        self.canaries.get(key)
    }

    /// A Canary added or changed.
    pub fn apply_canary(&mut self, canary: Canary, now: Timestamp) {
        let key = Key::of(&canary);
        let tracked = self.canaries.entry(key).or_default();
        // Deleted and created again: another Canary, another history.
        if let (Some(old), Some(new)) = (tracked.uid(), canary.metadata.uid.as_deref())
            && old != new
        {
            let events = std::mem::take(&mut tracked.events);
            *tracked = Tracked { events, ..Default::default() };
        }
        tracked.record(&canary, now);
        tracked.uid = canary.metadata.uid.clone().or(tracked.uid.take());
        tracked.canary = Some(canary);
        tracked.deleted = None;
        tracked.touched = Some(now);
        self.changed(Watch::Canaries);
    }

    /// A Canary deleted.
    pub fn delete_canary(&mut self, canary: &Canary, now: Timestamp) {
        if let Some(tracked) = self.canaries.get_mut(&Key::of(canary)) {
            tracked.canary = None;
            tracked.deleted = Some(now);
            tracked.touched = Some(now);
        }
        self.forget_oldest();
        self.changed(Watch::Canaries);
    }

    /// A new listing of the Canaries starts (at start, and after the watch was interrupted).
    pub fn listing_started(&mut self) {
        self.listing = Some(BTreeSet::new());
    }

    /// A Canary of the listing.
    pub fn listed(&mut self, canary: Canary, now: Timestamp) {
        self.listing.get_or_insert_default().insert(Key::of(&canary));
        self.apply_canary(canary, now);
    }

    /// The listing is complete: a Canary it did not hold was deleted meanwhile.
    pub fn listing_done(&mut self, now: Timestamp) {
        let listed = self.listing.take().unwrap_or_default();
        for (key, tracked) in &mut self.canaries {
            if tracked.canary.is_some() && !listed.contains(key) {
                tracked.canary = None;
                tracked.deleted = Some(now);
                tracked.touched = Some(now);
            }
        }
        self.forget_oldest();
        self.canary_watch.synced = true;
        self.changed(Watch::Canaries);
    }

    /// An Event added or changed. Events stay after the API server deletes them (an hour after
    /// their last repeat, by default): they are the run's history.
    pub fn apply_event(&mut self, event: &Event, now: Timestamp) {
        let Some((key, record)) = EventRecord::of(event) else { return };
        let tracked = self.canaries.entry(key).or_default();
        if tracked.events.get(&record.id) == Some(&record) {
            return;
        }
        tracked.events.insert(record.id.clone(), record);
        if tracked.events.len() > EVENTS {
            let oldest = tracked.events.values().min_by_key(|e| e.last).map(|e| e.id.clone());
            if let Some(id) = oldest {
                tracked.events.remove(&id);
            }
        }
        if tracked.touched.is_none() {
            tracked.touched = Some(now);
        }
        self.forget_oldest();
        self.changed(Watch::Events);
    }

    /// The first listing of the Events is complete.
    pub fn events_listed(&mut self) {
        self.event_watch.synced = true;
        self.changed(Watch::Events);
    }

    /// A watch failed (it retries with a backoff): shown until it works again.
    pub fn watch_failed(&mut self, watch: Watch, error: String, now: Timestamp) {
        let health = self.health_mut(watch);
        if health.error.as_deref() == Some(error.as_str()) {
            return;
        }
        health.error_since = health.error_since.or(Some(now));
        health.error = Some(error);
        self.generation += 1;
    }

    fn changed(&mut self, watch: Watch) {
        let health = self.health_mut(watch);
        health.error = None;
        health.error_since = None;
        self.generation += 1;
    }

    /// Keeps the pages of at most [`FORGOTTEN`] Canaries that are not in the cluster (deleted,
    /// or known only from Events), forgetting the oldest first.
    fn forget_oldest(&mut self) {
        let mut gone: Vec<(Option<Timestamp>, Key)> = self
            .canaries
            .iter()
            .filter(|(_, t)| t.canary.is_none())
            .map(|(k, t)| (t.touched, k.clone()))
            .collect();
        let excess = gone.len().saturating_sub(FORGOTTEN);
        gone.sort();
        for (_, key) in gone.into_iter().take(excess) {
            self.canaries.remove(&key);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::{
        api::core::v1::ObjectReference,
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    };

    use super::*;
    use crate::{api::CanaryStatus, fixtures};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn canary(name: &str, uid: &str, phase: Phase, weight: i32) -> Canary {
        let mut c = fixtures::canary(name, "test").uid(uid).build();
        c.status = Some(CanaryStatus { phase, canary_weight: weight, ..Default::default() });
        c
    }

    fn check(name: &str, value: f64, time: Timestamp) -> CheckRecord {
        CheckRecord {
            kind: "metric".into(),
            name: name.into(),
            result: "Passed".into(),
            value: Some(value),
            min: Some(99.0),
            time,
            ..Default::default()
        }
    }

    pub(crate) fn event(name: &str, uid: &str, message: &str, last: Timestamp, count: i32) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{message}")),
                namespace: Some("test".into()),
                uid: Some(format!("e-{message}")),
                ..Default::default()
            },
            involved_object: ObjectReference {
                kind: Some("Canary".into()),
                name: Some(name.into()),
                namespace: Some("test".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            reason: Some("Synced".into()),
            message: Some(message.into()),
            type_: Some("Normal".into()),
            first_timestamp: Some(Time(last)),
            last_timestamp: Some(Time(last)),
            count: Some(count),
            ..Default::default()
        }
    }

    #[test]
    fn a_sample_is_recorded_per_change_of_state_only() {
        let mut store = Store::default();
        store.apply_canary(canary("podinfo", "u1", Phase::Progressing, 0), at(0));
        store.apply_canary(canary("podinfo", "u1", Phase::Progressing, 0), at(1));
        store.apply_canary(canary("podinfo", "u1", Phase::Progressing, 10), at(2));
        store.apply_canary(canary("podinfo", "u1", Phase::Succeeded, 0), at(3));
        let t = store.get(&Key::new("test", "podinfo")).unwrap();
        let weights: Vec<_> = t.samples.iter().map(|s| (s.time, s.phase, s.weight)).collect();
        assert_eq!(
            weights,
            [(at(0), Phase::Progressing, 0), (at(2), Phase::Progressing, 10), (at(3), Phase::Succeeded, 0)]
        );
        assert_eq!(store.generation(), 4, "every delivery counts as a change");
    }

    #[test]
    fn the_history_is_bounded_and_says_how_much_it_dropped() {
        let mut store = Store::default();
        for i in 0..(HISTORY as i64 + 20) {
            store.apply_canary(canary("podinfo", "u1", Phase::Progressing, (i % 100) as i32), at(i));
        }
        let t = store.get(&Key::new("test", "podinfo")).unwrap();
        assert_eq!(t.samples.len(), HISTORY);
        assert_eq!(t.samples_dropped, 20);
        assert_eq!(t.samples.front().unwrap().time, at(20), "the oldest went first");
    }

    #[test]
    fn checks_and_decisions_are_recorded_as_they_change() {
        let mut store = Store::default();
        let mut c = canary("podinfo", "u1", Phase::Progressing, 10);
        let decision =
            |s: i64, m: &str| Decision { time: at(s), reason: "AdvanceWeight".into(), message: m.into() };
        c.status.as_mut().unwrap().checks = vec![check("request-success-rate", 100.0, at(0))];
        c.status.as_mut().unwrap().decision = Some(decision(0, "weight 10"));
        store.apply_canary(c.clone(), at(0));
        store.apply_canary(c.clone(), at(1)); // the same results again
        c.status.as_mut().unwrap().checks = vec![check("request-success-rate", 97.0, at(5))];
        c.status.as_mut().unwrap().decision = Some(decision(5, "weight 20"));
        store.apply_canary(c, at(5));
        let t = store.get(&Key::new("test", "podinfo")).unwrap();
        assert_eq!(t.checks.iter().map(|c| c.value.unwrap()).collect::<Vec<_>>(), [100.0, 97.0]);
        assert_eq!(
            t.decisions.iter().map(|d| d.message.as_str()).collect::<Vec<_>>(),
            ["weight 10", "weight 20"]
        );
    }

    #[test]
    fn a_deleted_canary_keeps_its_page_and_a_new_one_of_that_name_starts_afresh() {
        let mut store = Store::default();
        let old = canary("podinfo", "u1", Phase::Progressing, 10);
        store.apply_canary(old.clone(), at(0));
        store.apply_event(&event("podinfo", "u1", "Advance", at(0), 1), at(0));
        store.delete_canary(&old, at(5));
        let t = store.get(&Key::new("test", "podinfo")).unwrap();
        assert!(t.canary.is_none());
        assert_eq!(t.deleted, Some(at(5)));
        assert_eq!(t.samples.len(), 1, "the history stays");
        assert_eq!(store.live().count(), 0);

        store.apply_canary(canary("podinfo", "u2", Phase::Initialized, 0), at(9));
        let t = store.get(&Key::new("test", "podinfo")).unwrap();
        assert_eq!(t.deleted, None);
        assert_eq!(t.samples.len(), 1);
        assert_eq!(t.samples[0].time, at(9), "the old Canary's samples are not the new one's");
        assert_eq!(t.events.len(), 1, "Events are kept; the page shows those of the uid");
    }

    #[test]
    fn a_relisting_notices_canaries_deleted_while_the_watch_was_down() {
        let mut store = Store::default();
        store.listing_started();
        store.listed(canary("a", "ua", Phase::Succeeded, 0), at(0));
        store.listed(canary("b", "ub", Phase::Succeeded, 0), at(0));
        store.listing_done(at(0));
        assert!(store.health(Watch::Canaries).synced);
        store.listing_started();
        store.listed(canary("a", "ua", Phase::Succeeded, 0), at(9));
        store.listing_done(at(9));
        assert_eq!(store.live().map(|c| c.name_any()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(store.get(&Key::new("test", "b")).unwrap().deleted, Some(at(9)));
    }

    #[test]
    fn events_are_kept_per_canary_updated_in_place_and_bounded() {
        let mut store = Store::default();
        store.apply_event(&event("podinfo", "u1", "Halt", at(0), 1), at(0));
        store.apply_event(&event("podinfo", "u1", "Halt", at(3), 2), at(3));
        let t = store.get(&Key::new("test", "podinfo")).unwrap();
        assert!(t.canary.is_none(), "an Event can come before its Canary");
        assert_eq!(t.events.len(), 1);
        let e = t.events.values().next().unwrap();
        assert_eq!((e.count, e.last, e.first), (2, at(3), Some(at(3))));
        let generation = store.generation();
        store.apply_event(&event("podinfo", "u1", "Halt", at(3), 2), at(4));
        assert_eq!(store.generation(), generation, "an unchanged Event is not a change");
        for i in 0..(EVENTS as i64 + 5) {
            store.apply_event(&event("podinfo", "u1", &format!("m{i}"), at(10 + i), 1), at(10 + i));
        }
        let t = store.get(&Key::new("test", "podinfo")).unwrap();
        assert_eq!(t.events.len(), EVENTS);
        assert!(!t.events.values().any(|e| e.message == "Halt" || e.message == "m0"), "the oldest went");
        let mut other = event("podinfo", "u1", "x", at(0), 1);
        other.involved_object.kind = Some("Deployment".into());
        assert_eq!(EventRecord::of(&other), None);
    }

    #[test]
    fn deleted_canaries_are_forgotten_oldest_first() {
        let mut store = Store::default();
        for i in 0..(FORGOTTEN as i64 + 3) {
            let c = canary(&format!("c{i}"), &format!("u{i}"), Phase::Succeeded, 0);
            store.apply_canary(c.clone(), at(i));
            store.delete_canary(&c, at(i));
        }
        store.apply_canary(canary("alive", "ua", Phase::Succeeded, 0), at(0));
        assert_eq!(store.canaries.len(), FORGOTTEN + 1);
        assert!(store.get(&Key::new("test", "c0")).is_none());
        assert!(store.get(&Key::new("test", &format!("c{}", FORGOTTEN + 2))).is_some());
        assert!(store.get(&Key::new("test", "alive")).is_some(), "a live Canary is never forgotten");
    }

    #[test]
    fn a_watch_error_shows_until_the_watch_delivers_again() {
        let mut store = Store::default();
        store.watch_failed(Watch::Events, "events is forbidden".into(), at(0));
        store.watch_failed(Watch::Events, "events is forbidden".into(), at(5));
        let h = store.health(Watch::Events);
        assert_eq!((h.error.as_deref(), h.error_since), (Some("events is forbidden"), Some(at(0))));
        assert_eq!(store.health(Watch::Canaries).error, None);
        store.events_listed();
        assert_eq!(store.health(Watch::Events).error, None);
    }
}
