//! Kubernetes Events on Canaries, as Flagger records them: core/v1 Events with reason `Synced`,
//! one Event object per distinct message (a repeat within ten minutes increments its count), so
//! that `kubectl describe canary` lists every step of a run.
//!
//! kube-runtime's recorder aggregates events.k8s.io Events by reason and action only, which would
//! fold a whole run into one line that shows the latest message.
//!
//! Events are written off the reconcile's path. A reconcile hands each Event to the
//! [`EventQueue`] and goes on; the [`EventWorker`] records the queued Events with a few writes in
//! flight, one at a time per Canary, so that a Canary's Events are listed in the order they
//! happened. Events are not decisive (the status is the memory): when the queue is full an Event
//! is dropped and counted rather than waited for, and one queued when the process dies is lost.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use k8s_openapi::{
    api::core::v1::{Event, EventSource, ObjectReference},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use serde_json::json;
use tokio::sync::{Notify, mpsc};

use super::{context::WRITE_TIMEOUT, leader::Leadership};
use crate::{api::Canary, meta::FIELD_MANAGER, telemetry::ControllerMetrics};

/// How long a repeated message updates the same Event instead of creating a new one.
const SERIES_WINDOW: Duration = Duration::from_secs(600);
/// Most Events remembered for aggregation.
const MAX_REMEMBERED: usize = 4096;
/// The longest a shutdown waits for the queued Events to be recorded.
pub const DRAIN: Duration = Duration::from_secs(2);
/// The shortest spacing of the warnings that Events are being dropped.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Whether an Event reports something normal or a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn of(warning: bool) -> EventType {
        if warning { EventType::Warning } else { EventType::Normal }
    }

    /// The Event's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The Canary an Event is about, as the Event names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Involved {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// The version of the Canary the Event was decided on.
    pub resource_version: Option<String>,
}

impl Involved {
    pub fn of(canary: &Canary) -> Involved {
        Involved {
            namespace: canary.namespace().unwrap_or_default(),
            name: canary.name_any(),
            uid: canary.uid(),
            resource_version: canary.resource_version(),
        }
    }

    /// `name.namespace`, as the logs name a Canary.
    pub fn display(&self) -> String {
        crate::router::qualified(&self.name, Some(&self.namespace))
    }

    fn key(&self) -> CanaryKey {
        CanaryKey { namespace: self.namespace.clone(), name: self.name.clone() }
    }
}

/// One Canary, whose Events are recorded in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CanaryKey {
    namespace: String,
    name: String,
}

/// An Event to record.
#[derive(Clone, Debug)]
pub struct Note {
    pub involved: Involved,
    pub type_: EventType,
    pub message: String,
    /// When it happened (the Event's timestamps), not when it is recorded.
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    type_: EventType,
    message: String,
}

#[derive(Clone, Debug)]
struct Series {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Records Events; cheap to share.
pub struct EventRecorder {
    client: Client,
    component: String,
    series: Mutex<HashMap<Key, Series>>,
}

impl EventRecorder {
    pub fn new(client: Client, component: &str) -> EventRecorder {
        EventRecorder { client, component: component.into(), series: Mutex::new(HashMap::new()) }
    }

    /// Records `note` on its Canary.
    pub async fn record(&self, note: &Note) -> Result<(), kube::Error> {
        let involved = &note.involved;
        let ns = &involved.namespace;
        let now = note.at;
        let key = Key {
            uid: involved.uid.clone().unwrap_or_default(),
            type_: note.type_,
            message: note.message.clone(),
        };
        let previous = {
            let series = self.series.lock().expect("event series lock");
            series.get(&key).cloned()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        if let Some(s) =
            previous.filter(|s| s.last.duration_until(now).as_secs_f64() < SERIES_WINDOW.as_secs_f64())
        {
            let count = s.count + 1;
            let patch = json!({"count": count, "lastTimestamp": Time(now)});
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
            if api.patch(&s.name, &params, &Patch::Merge(&patch)).await.is_ok() {
                self.remember(key, Series { count, last: now, ..s });
                return Ok(());
            }
            // The Event expired or was deleted: record a new one.
        }
        // Unique by the time of recording: Events of one Canary are recorded one at a time.
        let nanos = Timestamp::now().as_nanosecond() as u128 & 0xffff_ffff_ffff_ffff;
        let name = format!("{}.{nanos:x}", involved.name);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(Canary::api_version(&()).into_owned()),
                kind: Some(Canary::kind(&()).into_owned()),
                name: Some(involved.name.clone()),
                namespace: Some(ns.clone()),
                uid: involved.uid.clone(),
                resource_version: involved.resource_version.clone(),
                field_path: None,
            },
            reason: Some("Synced".into()),
            message: Some(note.message.chars().take(1024).collect()),
            type_: Some(note.type_.as_str().into()),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: std::env::var("POD_NAME").ok(),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        self.remember(key, Series { name, count: 1, last: now });
        Ok(())
    }

    fn remember(&self, key: Key, series: Series) {
        let mut all = self.series.lock().expect("event series lock");
        if all.len() >= MAX_REMEMBERED {
            // Forget the oldest half; at worst a repeat becomes a new Event.
            let mut by_age: Vec<(Key, Timestamp)> = all.iter().map(|(k, s)| (k.clone(), s.last)).collect();
            by_age.sort_by_key(|(_, t)| *t);
            for (k, _) in by_age.into_iter().take(MAX_REMEMBERED / 2) {
                all.remove(&k);
            }
        }
        all.insert(key, series);
    }
}

/// How many Events may wait, and how many are written at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub capacity: usize,
    pub in_flight: usize,
}

impl Default for Limits {
    /// 4,096 waiting (about 2 MiB at most), 4 written at once: a few writes in flight keep the
    /// queue moving without taking much of the API server's attention from the status writes.
    fn default() -> Limits {
        Limits { capacity: 4096, in_flight: 4 }
    }
}

/// Why an Event was not queued.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the Event queue is full ({0} Events waiting)")]
    Full(usize),
    #[error("the Event queue is closed")]
    Closed,
}

/// The Events waiting, bounded; the gauge `veer_event_queue_depth` follows it.
struct Depth {
    count: AtomicUsize,
    capacity: usize,
    gauge: Gauge,
    /// Woken when the count falls to zero.
    empty: Notify,
}

impl Depth {
    /// A place in the queue, if there is room.
    fn reserve(self: &Arc<Self>) -> Option<Slot> {
        let capacity = self.capacity;
        self.count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < capacity).then_some(n + 1))
            .ok()?;
        self.gauge.inc();
        Some(Slot(self.clone()))
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Resolves once no Event waits.
    async fn emptied(&self) {
        loop {
            let notified = self.empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One Event's place in the queue, given back when it is recorded or given up.
struct Slot(Arc<Depth>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.gauge.dec();
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.empty.notify_waiters();
        }
    }
}

/// An Event in the queue.
struct Queued {
    note: Note,
    _slot: Slot,
}

/// Spaces the warnings about dropped Events: the first drop is logged at once, later ones at most
/// every [`DROP_WARNING_EVERY`], with how many were dropped since the last warning.
#[derive(Debug, Default)]
struct DropWarning {
    last: Option<Instant>,
    unreported: u64,
}

impl DropWarning {
    /// Counts a dropped Event; returns how many to report now, if a warning is due.
    fn dropped(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        let due = self.last.is_none_or(|last| now.duration_since(last) >= DROP_WARNING_EVERY);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

/// Where reconciles hand their Events over; cheap to clone. See the module's documentation.
#[derive(Clone)]
pub struct EventQueue {
    tx: mpsc::UnboundedSender<Queued>,
    depth: Arc<Depth>,
    leadership: Arc<Leadership>,
    dropped: Counter,
    warning: Arc<Mutex<DropWarning>>,
}

impl EventQueue {
    /// A queue within `limits` and the worker that records its Events through `recorder` while
    /// `leadership` holds; run the worker ([`EventWorker::run`]) on a task of its own.
    pub fn new(
        recorder: EventRecorder,
        leadership: Arc<Leadership>,
        metrics: &ControllerMetrics,
        limits: Limits,
    ) -> (EventQueue, EventWorker) {
        let (tx, rx) = mpsc::unbounded_channel();
        let depth = Arc::new(Depth {
            count: AtomicUsize::new(0),
            capacity: limits.capacity,
            gauge: metrics.event_queue_depth.clone(),
            empty: Notify::new(),
        });
        let queue = EventQueue {
            tx,
            depth,
            leadership: leadership.clone(),
            dropped: metrics.events_dropped.clone(),
            warning: Default::default(),
        };
        let worker = EventWorker {
            rx,
            recorder: Arc::new(recorder),
            leadership,
            metrics: metrics.clone(),
            in_flight: limits.in_flight.max(1),
            lanes: Lanes::default(),
        };
        (queue, worker)
    }

    /// Queues `note` to be recorded after the Events queued before it for the same Canary;
    /// never waits. A full queue drops it (counted in `veer_events_dropped_total`, and logged at
    /// most every ten seconds).
    pub fn send(&self, note: Note) -> Result<(), SendError> {
        let Some(slot) = self.depth.reserve() else {
            self.dropped.inc();
            let now = Instant::now();
            if let Some(n) = self.warning.lock().expect("drop warning lock").dropped(now) {
                tracing::warn!(
                    canary = %note.involved.display(),
                    dropped = n,
                    "the Event queue is full ({} waiting): {n} Event(s) not recorded since the last \
                     warning; the Canaries' status still records every decision",
                    self.depth.capacity
                );
            }
            return Err(SendError::Full(self.depth.capacity));
        };
        self.tx.send(Queued { note, _slot: slot }).map_err(|unsent| {
            let canary = unsent.0.note.involved.display();
            tracing::warn!(canary = %canary, "the Event queue is closed: no Event");
            SendError::Closed
        })
    }

    /// Events waiting to be recorded.
    pub fn len(&self) -> usize {
        self.depth.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits, at most `within`, until every queued Event is recorded (or given up), if this
    /// replica leads; returns how many are left.
    pub async fn drain(&self, within: Duration) -> usize {
        if self.leadership.is_leader() {
            let _ = tokio::time::timeout(within, self.depth.emptied()).await;
        }
        let left = self.len();
        if left > 0 {
            tracing::warn!(left, "{left} Event(s) not recorded at shutdown");
        }
        left
    }
}

/// Which Canaries have Events waiting, and whose Event is being written: a Canary's next Event is
/// written only once the one before has been.
#[derive(Default)]
struct Lanes {
    waiting: HashMap<CanaryKey, VecDeque<Queued>>,
    /// Canaries with Events waiting and none being written, in the order they became so.
    ready: VecDeque<CanaryKey>,
    busy: HashSet<CanaryKey>,
}

impl Lanes {
    fn push(&mut self, queued: Queued) {
        let key = queued.note.involved.key();
        let lane = self.waiting.entry(key.clone()).or_default();
        if lane.is_empty() && !self.busy.contains(&key) {
            self.ready.push_back(key);
        }
        lane.push_back(queued);
    }

    /// The next Event to write, its Canary now busy.
    fn next(&mut self) -> Option<Queued> {
        let key = self.ready.pop_front()?;
        let queued = self.waiting.get_mut(&key).and_then(VecDeque::pop_front)?;
        self.busy.insert(key);
        Some(queued)
    }

    /// The Event of Canary `key` was written (or given up).
    fn done(&mut self, key: CanaryKey) {
        self.busy.remove(&key);
        match self.waiting.get(&key) {
            Some(lane) if !lane.is_empty() => self.ready.push_back(key),
            _ => {
                self.waiting.remove(&key);
            }
        }
    }
}

/// Records the queued Events (see [`EventQueue`]).
pub struct EventWorker {
    rx: mpsc::UnboundedReceiver<Queued>,
    recorder: Arc<EventRecorder>,
    leadership: Arc<Leadership>,
    metrics: ControllerMetrics,
    in_flight: usize,
    lanes: Lanes,
}

type Writing = FuturesUnordered<BoxFuture<'static, CanaryKey>>;

impl EventWorker {
    /// Records Events until every [`EventQueue`] is dropped and nothing is left.
    pub async fn run(mut self) {
        let mut writing = Writing::new();
        let mut open = true;
        loop {
            self.start(&mut writing);
            tokio::select! {
                queued = self.rx.recv(), if open => match queued {
                    Some(q) => self.lanes.push(q),
                    None => open = false,
                },
                Some(key) = writing.next(), if !writing.is_empty() => self.lanes.done(key),
                else => return,
            }
        }
    }

    /// Records the Events queued so far and returns once each is recorded or given up: the
    /// controller scenarios see a reconcile's Events after its other writes, in order.
    #[cfg(test)]
    pub async fn run_until_idle(&mut self) {
        let mut writing = Writing::new();
        loop {
            while let Ok(q) = self.rx.try_recv() {
                self.lanes.push(q);
            }
            self.start(&mut writing);
            match writing.next().await {
                Some(key) => self.lanes.done(key),
                None => return,
            }
        }
    }

    /// Starts writing the next Events, up to the limit in flight.
    fn start(&mut self, writing: &mut Writing) {
        while writing.len() < self.in_flight {
            let Some(queued) = self.lanes.next() else { return };
            writing.push(Box::pin(write(
                self.recorder.clone(),
                self.leadership.clone(),
                self.metrics.clone(),
                queued,
            )));
        }
    }
}

/// Records one Event while this replica leads, within what is left of its leadership and at most
/// [`WRITE_TIMEOUT`]; returns its Canary.
async fn write(
    recorder: Arc<EventRecorder>,
    leadership: Arc<Leadership>,
    metrics: ControllerMetrics,
    queued: Queued,
) -> CanaryKey {
    let note = &queued.note;
    let canary = note.involved.display();
    match leadership.remaining() {
        None => tracing::debug!(canary = %canary, "not the leader: no Event"),
        Some(left) => {
            metrics.count_write("Event");
            let timer = metrics.time_write("Event");
            let recorded = tokio::time::timeout(left.min(WRITE_TIMEOUT), recorder.record(note)).await;
            drop(timer);
            match recorded {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(canary = %canary, error = %e, "cannot record event"),
                Err(_) if left <= WRITE_TIMEOUT => {
                    tracing::warn!(canary = %canary, "no Event: the leadership ran out")
                }
                Err(_) => tracing::warn!(canary = %canary, "no Event: the API server did not answer in time"),
            }
        }
    }
    note.involved.key()
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;
    use prometheus_client::registry::Registry;
    use serde_json::Value;

    use super::*;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
    type Respond = tower_test::mock::SendResponse<Response<Body>>;

    fn setup(limits: Limits, leadership: Arc<Leadership>) -> (EventQueue, EventWorker, Handle, Registry) {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(svc, "default");
        let mut registry = Registry::default();
        let metrics = ControllerMetrics::register(&mut registry);
        let (queue, worker) =
            EventQueue::new(EventRecorder::new(client, "veer"), leadership, &metrics, limits);
        (queue, worker, handle, registry)
    }

    fn note(canary: &str, message: &str) -> Note {
        Note {
            involved: Involved {
                namespace: "test".into(),
                name: canary.into(),
                uid: Some(format!("uid-{canary}")),
                resource_version: Some("7".into()),
            },
            type_: EventType::Normal,
            message: message.into(),
            at: Timestamp::now(),
        }
    }

    /// The next request: the Canary and message of the Event it creates, and how to answer it.
    async fn next_event(handle: &mut Handle) -> ((String, String), Respond) {
        let (req, respond) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .expect("a request within 5 s")
            .expect("the client is alive");
        assert_eq!((req.method().as_str(), req.uri().path()), ("POST", "/api/v1/namespaces/test/events"));
        let body: Value = serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
        let canary = body["involvedObject"]["name"].as_str().unwrap().to_string();
        ((canary, body["message"].as_str().unwrap().to_string()), respond)
    }

    fn created(respond: Respond) {
        respond.send_response(Response::builder().body(Body::from(b"{}".to_vec())).unwrap());
    }

    /// Whether a request is waiting now (after giving the worker a moment).
    async fn nothing_sent(handle: &mut Handle) -> bool {
        tokio::time::timeout(Duration::from_millis(50), handle.next_request()).await.is_err()
    }

    fn sample(registry: &Registry, series: &str) -> Option<f64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[tokio::test]
    async fn events_of_one_canary_are_written_in_order_one_at_a_time_others_alongside() {
        let (queue, worker, mut handle, registry) =
            setup(Limits { capacity: 16, in_flight: 4 }, Leadership::always());
        for n in 1..=3 {
            queue.send(note("a", &format!("a{n}"))).unwrap();
        }
        queue.send(note("b", "b1")).unwrap();
        queue.send(note("c", "c1")).unwrap();
        tokio::spawn(worker.run());

        // a1, b1 and c1 are written at once; a2 waits for a1.
        let mut first = Vec::new();
        for _ in 0..3 {
            first.push(next_event(&mut handle).await);
        }
        let mut seen: Vec<(String, String)> = first.iter().map(|(e, _)| e.clone()).collect();
        seen.sort();
        let pair = |c: &str, m: &str| (c.to_string(), m.to_string());
        assert_eq!(seen, [pair("a", "a1"), pair("b", "b1"), pair("c", "c1")]);
        assert!(nothing_sent(&mut handle).await, "a2 is not sent while a1 is unanswered");
        assert_eq!(queue.len(), 5);
        assert_eq!(sample(&registry, "veer_event_queue_depth"), Some(5.0));

        for (_, respond) in first {
            created(respond);
        }
        for want in ["a2", "a3"] {
            let (event, respond) = next_event(&mut handle).await;
            assert_eq!(event, pair("a", want));
            assert!(nothing_sent(&mut handle).await, "one Event of a Canary at a time");
            created(respond);
        }
        assert_eq!(queue.drain(Duration::from_secs(5)).await, 0);
        assert_eq!(sample(&registry, "veer_event_queue_depth"), Some(0.0));
        assert_eq!(sample(&registry, r#"veer_api_writes_total{kind="Event"}"#), Some(5.0));
        assert_eq!(sample(&registry, r#"veer_api_write_duration_seconds_count{kind="Event"}"#), Some(5.0));
    }

    #[tokio::test]
    async fn no_more_than_the_limit_is_written_at_once() {
        let (queue, worker, mut handle, _registry) =
            setup(Limits { capacity: 16, in_flight: 2 }, Leadership::always());
        for c in ["a", "b", "c"] {
            queue.send(note(c, "m")).unwrap();
        }
        tokio::spawn(worker.run());
        let (one, respond_one) = next_event(&mut handle).await;
        let (two, respond_two) = next_event(&mut handle).await;
        assert!(nothing_sent(&mut handle).await, "two in flight");
        created(respond_one);
        let (three, respond_three) = next_event(&mut handle).await;
        created(respond_two);
        created(respond_three);
        let mut canaries = [one.0, two.0, three.0];
        canaries.sort();
        assert_eq!(canaries, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let (queue, mut worker, mut handle, registry) =
            setup(Limits { capacity: 2, in_flight: 4 }, Leadership::always());
        queue.send(note("a", "kept 1")).unwrap();
        queue.send(note("a", "kept 2")).unwrap();
        assert_eq!(queue.send(note("a", "dropped")), Err(SendError::Full(2)));
        assert_eq!(queue.send(note("b", "dropped too")), Err(SendError::Full(2)));
        assert_eq!(sample(&registry, "veer_events_dropped_total"), Some(2.0));
        assert_eq!(sample(&registry, "veer_event_queue_depth"), Some(2.0));

        let server = tokio::spawn(async move {
            let mut messages = Vec::new();
            for _ in 0..2 {
                let ((_, message), respond) = next_event(&mut handle).await;
                messages.push(message);
                created(respond);
            }
            assert!(nothing_sent(&mut handle).await, "the dropped Events are never sent");
            messages
        });
        worker.run_until_idle().await;
        assert_eq!(server.await.unwrap(), ["kept 1", "kept 2"]);
        assert_eq!(queue.len(), 0);
        // Room again.
        queue.send(note("a", "later")).unwrap();
    }

    #[test]
    fn drops_are_reported_at_once_then_at_most_every_ten_seconds() {
        let mut warning = DropWarning::default();
        let t0 = Instant::now();
        assert_eq!(warning.dropped(t0), Some(1), "the first drop at once");
        assert_eq!(warning.dropped(t0 + Duration::from_secs(1)), None);
        assert_eq!(warning.dropped(t0 + Duration::from_secs(9)), None);
        assert_eq!(warning.dropped(t0 + Duration::from_secs(10)), Some(3), "with those held back");
        assert_eq!(warning.dropped(t0 + Duration::from_secs(30)), Some(1));
    }

    #[tokio::test]
    async fn a_replica_that_no_longer_leads_when_the_event_is_due_does_not_write_it() {
        let leadership = Leadership::elected();
        leadership.set(Some(Instant::now() + Duration::from_secs(60)));
        let (queue, mut worker, mut handle, registry) = setup(Limits::default(), leadership.clone());
        queue.send(note("a", "queued while leading")).unwrap();
        leadership.set(None);
        worker.run_until_idle().await;
        assert!(nothing_sent(&mut handle).await);
        assert_eq!(queue.len(), 0, "given up");
        assert_eq!(sample(&registry, r#"veer_api_writes_total{kind="Event"}"#), None, "nothing written");
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_queued_events_within_its_bound_and_only_while_leading() {
        // Everything recorded: the drain returns as soon as the last is answered.
        let (queue, worker, mut handle, _registry) = setup(Limits::default(), Leadership::always());
        for n in 0..3 {
            queue.send(note("a", &format!("m{n}"))).unwrap();
        }
        tokio::spawn(worker.run());
        let server = tokio::spawn(async move {
            for _ in 0..3 {
                let (_, respond) = next_event(&mut handle).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                created(respond);
            }
            handle
        });
        let started = Instant::now();
        assert_eq!(queue.drain(Duration::from_secs(5)).await, 0);
        assert!(started.elapsed() >= Duration::from_millis(60), "waited for the answers");
        let mut handle = server.await.unwrap();

        // An API server that does not answer: the drain gives up after its bound.
        queue.send(note("a", "unanswered")).unwrap();
        let _pending = next_event(&mut handle).await;
        let started = Instant::now();
        assert_eq!(queue.drain(Duration::from_millis(200)).await, 1);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(2), "{waited:?}");

        // A replica that does not lead any more does not wait at all.
        let leadership = Leadership::elected();
        let (queue, _worker, _handle, _registry) = setup(Limits::default(), leadership.clone());
        leadership.set(Some(Instant::now() + Duration::from_secs(60)));
        queue.send(note("a", "m")).unwrap();
        leadership.set(None);
        let started = Instant::now();
        assert_eq!(queue.drain(Duration::from_secs(5)).await, 1);
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn an_event_is_recorded_as_flagger_does_and_a_repeat_counts_on_the_same_event() {
        let (queue, mut worker, mut handle, _registry) = setup(Limits::default(), Leadership::always());
        let mut warning = note("podinfo", "Halt advancement");
        warning.type_ = EventType::Warning;
        queue.send(warning.clone()).unwrap();
        let server = tokio::spawn(async move {
            let (req, respond) = handle.next_request().await.unwrap();
            let body: Value =
                serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
            respond
                .send_response(Response::builder().body(Body::from(body.to_string().into_bytes())).unwrap());
            let (req, respond) = handle.next_request().await.unwrap();
            let path = format!("{} {}", req.method(), req.uri().path());
            let patch: Value =
                serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
            respond
                .send_response(Response::builder().body(Body::from(body.to_string().into_bytes())).unwrap());
            (body, path, patch)
        });
        worker.run_until_idle().await;
        warning.at = Timestamp::now();
        queue.send(warning.clone()).unwrap();
        worker.run_until_idle().await;
        let (created, patched, patch) = server.await.unwrap();
        assert_eq!(created["reason"], "Synced");
        assert_eq!(created["type"], "Warning");
        assert_eq!(created["message"], "Halt advancement");
        assert_eq!(created["count"], 1);
        assert_eq!(created["involvedObject"]["kind"], "Canary");
        assert_eq!(created["involvedObject"]["uid"], "uid-podinfo");
        assert_eq!(created["involvedObject"]["resourceVersion"], "7", "the version decided on");
        let name = created["metadata"]["name"].as_str().unwrap();
        assert_eq!(patched, format!("PATCH /api/v1/namespaces/test/events/{name}"));
        assert_eq!(patch["count"], 2);
    }
}
