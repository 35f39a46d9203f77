//! What the pages and the JSON endpoints show, computed from the store: pure functions of the
//! Canary, its recorded history and Events, and the clock.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::store::{CHECK_HISTORY, EventRecord, HISTORY, Key, Sample, Tracked};
use crate::{
    actions::Operation,
    analysis::{
        Verdict,
        request::{Action, Request, admit, paused},
    },
    api::{Canary, CheckKind, CheckRecord, ConditionStatus, Phase},
    inspect::Row,
};

/// Most timeline entries shown (newest first).
pub const TIMELINE: usize = 300;
/// A decision whose message an Event repeats within this many seconds is shown once, as the Event.
const SAME_MOMENT_SECONDS: i64 = 10;

/// A Canary as the overview lists it (and `GET /api/canaries` returns it): `veer status -o json`'s
/// fields, and whether it is paused, holds a request, or is stalled.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    #[serde(flatten)]
    pub row: Row,
    #[serde(skip)]
    pub phase: Phase,
    pub paused: bool,
    /// The value of `veer.dev/request` while Veer has not answered it.
    pub pending_request: Option<String>,
    /// The message of the `Stalled` condition, when true.
    pub stalled: Option<String>,
}

impl Summary {
    pub fn of(canary: &Canary, now: Timestamp) -> Summary {
        let status = canary.status.clone().unwrap_or_default();
        let stalled = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == ConditionStatus::True)
            .map(|c| c.message.clone().unwrap_or_else(|| c.reason.clone()));
        Summary {
            row: Row::of(canary, now),
            phase: status.phase,
            paused: paused(canary),
            pending_request: Request::raw(canary).map(str::to_string),
            stalled,
        }
    }
}

/// A button of a Canary's page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    Promote,
    PromoteFull,
    Abort,
    Retry,
    Pause,
    Resume,
}

impl Control {
    pub const ALL: [Control; 6] = [
        Control::Promote,
        Control::PromoteFull,
        Control::Abort,
        Control::Retry,
        Control::Pause,
        Control::Resume,
    ];

    /// The last segment of the button's URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Promote => "promote",
            Control::PromoteFull => "promote-full",
            Control::Abort => "abort",
            Control::Retry => "retry",
            Control::Pause => "pause",
            Control::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<Control> {
        Control::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The button's text.
    pub fn label(self) -> &'static str {
        match self {
            Control::Promote => "Promote",
            Control::PromoteFull => "Promote without checks",
            Control::Abort => "Abort",
            Control::Retry => "Retry",
            Control::Pause => "Pause",
            Control::Resume => "Resume",
        }
    }

    /// What the button sends.
    pub fn operation(self) -> Operation {
        match self {
            Control::Promote => Operation::Request(Action::Promote),
            Control::PromoteFull => Operation::Request(Action::PromoteFull),
            Control::Abort => Operation::Request(Action::Abort),
            Control::Retry => Operation::Request(Action::Retry),
            Control::Pause => Operation::Pause,
            Control::Resume => Operation::Resume,
        }
    }

    /// Whether the page asks for a second click first.
    pub fn confirm(self) -> bool {
        matches!(self, Control::Abort | Control::PromoteFull)
    }
}

/// The revision the Canary's target holds, which a request is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetRevision {
    /// Its hash (empty when the target does not exist, as `veer promote` sends it).
    Known(String),
    /// The target could not be read: why.
    Unreadable(String),
}

/// A button and whether it is enabled; when not, why (the text the controller would refuse with).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ButtonState {
    pub control: Control,
    pub enabled: bool,
    pub why: Option<String>,
}

/// The buttons of a Canary's page: the four requests, each enabled only when [`admit`] takes it
/// (the rule the controller and `veer promote|abort|retry` apply), and Pause or Resume.
pub fn buttons(canary: &Canary, target: &TargetRevision) -> Vec<ButtonState> {
    let status = canary.status.clone().unwrap_or_default();
    let pending = Request::raw(canary);
    let requests = [
        (Control::Promote, Action::Promote),
        (Control::PromoteFull, Action::PromoteFull),
        (Control::Abort, Action::Abort),
        (Control::Retry, Action::Retry),
    ];
    let mut out: Vec<ButtonState> = requests
        .into_iter()
        .map(|(control, action)| {
            let refusal = match (pending, target) {
                (Some(value), _) => Some(format!(
                    "the request {value:?} is still waiting for Veer (is the controller running?)"
                )),
                (None, TargetRevision::Unreadable(why)) => Some(why.clone()),
                (None, TargetRevision::Known(revision)) => {
                    let request =
                        Request { action, revision: Some(revision.clone()).filter(|r| !r.is_empty()) };
                    admit(&request, &status, revision).err().map(|r| r.to_string())
                }
            };
            ButtonState { control, enabled: refusal.is_none(), why: refusal }
        })
        .collect();
    let toggle = if paused(canary) { Control::Resume } else { Control::Pause };
    out.push(ButtonState { control: toggle, enabled: true, why: None });
    out
}

/// What a timeline entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryKind {
    /// A Kubernetes Event on the Canary.
    Event,
    /// `status.decision` changed.
    Decision,
    /// A webhook's result changed (`status.checks` of kind webhook).
    Webhook,
    /// The phase changed, as the dashboard saw it.
    Phase,
}

/// One line of a Canary's timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub time: Timestamp,
    pub kind: EntryKind,
    /// The Event's or decision's reason, the webhook's name and result, the phase.
    pub title: String,
    pub message: String,
    /// How often an Event was recorded (its repeats are one Event).
    pub count: i32,
    pub warning: bool,
}

/// The timeline of a Canary, newest first: its Events (of this Canary: not of an older one of the
/// same name), the decisions, webhook results and phase changes the dashboard recorded. A decision
/// that an Event reports with the same message at the same moment is shown once, as the Event.
pub fn timeline(tracked: &Tracked) -> Vec<Entry> {
    let uid = tracked.uid();
    let events: Vec<&EventRecord> = tracked
        .events
        .values()
        .filter(|e| match (uid, e.canary_uid.as_deref()) {
            (Some(canary), Some(of)) => canary == of,
            _ => true,
        })
        .collect();
    let mut out: Vec<Entry> = events
        .iter()
        .map(|e| Entry {
            time: e.last,
            kind: EntryKind::Event,
            title: e.reason.clone(),
            message: e.message.clone(),
            count: e.count,
            warning: e.warning,
        })
        .collect();
    for d in &tracked.decisions {
        let reported = events.iter().any(|e| {
            e.message == d.message
                && [Some(e.last), e.first]
                    .into_iter()
                    .flatten()
                    .any(|t| (t.as_second() - d.time.as_second()).abs() <= SAME_MOMENT_SECONDS)
        });
        if !reported {
            out.push(Entry {
                time: d.time,
                kind: EntryKind::Decision,
                title: d.reason.clone(),
                message: d.message.clone(),
                count: 1,
                warning: false,
            });
        }
    }
    for c in tracked.checks.iter().filter(|c| c.kind == CheckKind::Webhook) {
        out.push(Entry {
            time: c.time,
            kind: EntryKind::Webhook,
            title: format!("{} {}", c.name, c.result),
            message: c.message.clone(),
            count: 1,
            warning: !passed(c),
        });
    }
    let mut previous: Option<&Sample> = None;
    for s in &tracked.samples {
        if previous.is_none_or(|p| p.phase != s.phase) {
            let message = match previous {
                None => format!("first seen by the dashboard at weight {}", s.weight),
                Some(p) => format!("from {} at weight {}", phase_name(p.phase), s.weight),
            };
            out.push(Entry {
                time: s.time,
                kind: EntryKind::Phase,
                title: phase_name(s.phase).to_string(),
                message,
                count: 1,
                warning: s.phase == Phase::Failed,
            });
        }
        previous = Some(s);
    }
    out.sort_by(|a, b| b.time.cmp(&a.time).then(a.kind.cmp(&b.kind)));
    out.truncate(TIMELINE);
    out
}

/// Whether a check record (a metric or a webhook) passed.
pub fn passed(c: &CheckRecord) -> bool {
    c.result == Verdict::Pass.word()
}

/// A phase's name, `-` for none.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Empty => "-",
        p => p.as_str(),
    }
}

/// One measurement of a metric.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub time: Timestamp,
    /// `None`: no data, or the query failed.
    pub value: Option<f64>,
    pub passed: bool,
    pub message: String,
}

/// A metric's recorded values against its range (the latest range).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSeries {
    pub name: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub points: Vec<Point>,
}

/// The metrics of the recorded check results, in the order they first appear.
pub fn metric_series(checks: &[CheckRecord]) -> Vec<MetricSeries> {
    let mut out: Vec<MetricSeries> = Vec::new();
    for c in checks.iter().filter(|c| c.kind == CheckKind::Metric) {
        let index = match out.iter().position(|s| s.name == c.name) {
            Some(i) => i,
            None => {
                out.push(MetricSeries { name: c.name.clone(), min: None, max: None, points: Vec::new() });
                out.len() - 1
            }
        };
        let series = &mut out[index];
        series.min = c.min;
        series.max = c.max;
        series.points.push(Point {
            time: c.time,
            value: c.value,
            passed: passed(c),
            message: c.message.clone(),
        });
    }
    out
}

/// A Canary's page (and `GET /api/canaries/{namespace}/{name}`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    pub namespace: String,
    pub name: String,
    /// `None` when the Canary is not in the cluster (any more).
    pub summary: Option<Summary>,
    /// When the dashboard saw it deleted.
    pub deleted: Option<Timestamp>,
    /// The samples kept per Canary.
    pub history_limit: usize,
    pub check_history_limit: usize,
    /// Samples older than the kept ones that were dropped.
    pub samples_dropped: u64,
    pub samples: Vec<Sample>,
    pub metrics: Vec<MetricSeries>,
    /// The latest result of each check (`status.checks`).
    pub checks: Vec<CheckRecord>,
    pub timeline: Vec<Entry>,
    pub buttons: Vec<ButtonState>,
}

impl Detail {
    pub fn of(key: &Key, tracked: &Tracked, target: &TargetRevision, now: Timestamp) -> Detail {
        let checks: Vec<CheckRecord> = tracked.checks.iter().cloned().collect();
        let canary = tracked.canary.as_ref();
        Detail {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            summary: canary.map(|c| Summary::of(c, now)),
            deleted: tracked.deleted,
            history_limit: HISTORY,
            check_history_limit: CHECK_HISTORY,
            samples_dropped: tracked.samples_dropped,
            samples: tracked.samples.iter().cloned().collect(),
            metrics: metric_series(&checks),
            checks: canary.and_then(|c| c.status.as_ref()).map(|s| s.checks.clone()).unwrap_or_default(),
            timeline: timeline(tracked),
            buttons: canary.map(|c| buttons(c, target)).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Event;

    use super::*;
    use crate::{
        analysis::request::{PAUSED_ANNOTATION, REQUEST_ANNOTATION},
        api::{CanaryStatus, Decision},
        dashboard::store::Store,
        fixtures,
    };

    const T: &str = "v1-0000000000000002";
    const P: &str = "v1-0000000000000001";

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn canary(phase: Phase, applied: &str) -> Canary {
        let mut c = fixtures::canary("podinfo", "test").uid("u1").build();
        c.status = Some(CanaryStatus {
            phase,
            last_applied_spec: applied.into(),
            last_promoted_spec: P.into(),
            ..Default::default()
        });
        c
    }

    fn enabled(buttons: &[ButtonState]) -> Vec<Control> {
        buttons.iter().filter(|b| b.enabled).map(|b| b.control).collect()
    }

    #[test]
    fn the_buttons_follow_admit_phase_by_phase() {
        use Control::*;
        let target = TargetRevision::Known(T.into());
        let table: &[(Phase, &[Control])] = &[
            (Phase::Initializing, &[Pause]),
            (Phase::Initialized, &[Pause]),
            (Phase::Waiting, &[Promote, PromoteFull, Abort, Pause]),
            (Phase::Progressing, &[Promote, PromoteFull, Abort, Pause]),
            (Phase::WaitingPromotion, &[Promote, PromoteFull, Abort, Pause]),
            (Phase::Promoting, &[Pause]),
            (Phase::Finalising, &[Pause]),
            (Phase::Succeeded, &[Pause]),
            (Phase::Failed, &[PromoteFull, Retry, Pause]),
        ];
        for (phase, want) in table {
            let c = canary(*phase, T);
            let b = buttons(&c, &target);
            assert_eq!(enabled(&b), *want, "{phase:?}");
            // Every disabled request says why, in the controller's words.
            let status = c.status.clone().unwrap();
            for state in b.iter().filter(|b| !b.enabled) {
                let Operation::Request(action) = state.control.operation() else { panic!() };
                let refusal = admit(&Request { action, revision: Some(T.into()) }, &status, T).unwrap_err();
                assert_eq!(state.why.as_deref(), Some(refusal.to_string().as_str()));
            }
        }
        // A failed revision the target no longer runs: nothing to retry.
        let b = buttons(&canary(Phase::Failed, P), &TargetRevision::Known(P.into()));
        assert_eq!(enabled(&b), [Pause]);
        // A revision deployed during the run: the page's requests would be for the old one.
        let b = buttons(&canary(Phase::Progressing, T), &TargetRevision::Known("v1-0000000000000003".into()));
        assert_eq!(enabled(&b), [Pause]);
    }

    #[test]
    fn a_pending_request_an_unreadable_target_and_a_pause_change_the_buttons() {
        let mut c = canary(Phase::Progressing, T);
        c.metadata.annotations = Some([(REQUEST_ANNOTATION.to_string(), format!("abort@{T}"))].into());
        let b = buttons(&c, &TargetRevision::Known(T.into()));
        assert_eq!(enabled(&b), [Control::Pause]);
        assert!(b[0].why.as_deref().unwrap().contains("is still waiting for Veer"), "{b:?}");

        let c = canary(Phase::Progressing, T);
        let why = "cannot read Deployment podinfo.test: forbidden".to_string();
        let b = buttons(&c, &TargetRevision::Unreadable(why.clone()));
        assert_eq!(enabled(&b), [Control::Pause]);
        assert_eq!(b[2].why, Some(why));

        let mut c = canary(Phase::Progressing, T);
        c.metadata.annotations = Some([(PAUSED_ANNOTATION.to_string(), "true".to_string())].into());
        let b = buttons(&c, &TargetRevision::Known(T.into()));
        assert_eq!(enabled(&b), [Control::Promote, Control::PromoteFull, Control::Abort, Control::Resume]);
    }

    #[test]
    fn controls_parse_what_they_write() {
        for c in Control::ALL {
            assert_eq!(Control::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        assert_eq!(Control::parse("Abort"), None);
        assert_eq!(Control::PromoteFull.operation(), Operation::Request(Action::PromoteFull));
    }

    fn event(message: &str, uid: &str, time: Timestamp, warning: bool) -> Event {
        let mut e = crate::dashboard::store::tests::event("podinfo", uid, message, time, 1);
        if warning {
            e.type_ = Some("Warning".into());
        }
        e
    }

    #[test]
    fn the_timeline_merges_events_decisions_webhooks_and_phases_newest_first() {
        let mut store = Store::default();
        let mut c = canary(Phase::Initialized, P);
        store.apply_canary(c.clone(), at(0));
        let s = c.status.as_mut().unwrap();
        s.phase = Phase::Progressing;
        s.canary_weight = 10;
        s.decision = Some(Decision {
            time: at(10),
            reason: "AdvanceWeight".into(),
            message: "Advance podinfo.test canary weight 10".into(),
        });
        s.checks = vec![CheckRecord {
            kind: "webhook".into(),
            name: "acceptance".into(),
            result: "Failed".into(),
            message: "500 <b>acceptance tests failed</b>".into(),
            time: at(9),
            ..Default::default()
        }];
        store.apply_canary(c.clone(), at(10));
        // The same text as an Event, a moment later: shown once.
        store.apply_event(&event("Advance podinfo.test canary weight 10", "u1", at(11), false), at(11));
        // From before the dashboard started.
        store.apply_event(
            &event("New revision detected! Scaling up podinfo.test", "u1", at(-60), false),
            at(11),
        );
        // An Event of an older Canary of the same name.
        store.apply_event(&event("Halt advancement", "u0", at(5), true), at(11));
        let s = c.status.as_mut().unwrap();
        s.decision =
            Some(Decision { time: at(20), reason: "Paused".into(), message: "paused by request".into() });
        store.apply_canary(c, at(20));

        let t = timeline(store.get(&Key::new("test", "podinfo")).unwrap());
        let lines: Vec<(i64, EntryKind, &str)> =
            t.iter().map(|e| (e.time.as_second() - 1_700_000_000, e.kind, e.title.as_str())).collect();
        assert_eq!(
            lines,
            [
                (20, EntryKind::Decision, "Paused"),
                (11, EntryKind::Event, "Synced"),
                (10, EntryKind::Phase, "Progressing"),
                (9, EntryKind::Webhook, "acceptance Failed"),
                (0, EntryKind::Phase, "Initialized"),
                (-60, EntryKind::Event, "Synced"),
            ]
        );
        assert!(t[3].warning);
        assert_eq!(t[2].message, "from Initialized at weight 10");
        assert_eq!(t[4].message, "first seen by the dashboard at weight 0");
    }

    #[test]
    fn metric_series_collect_values_against_the_latest_range() {
        let record = |name: &str, value: Option<f64>, result: &str, s: i64| CheckRecord {
            kind: "metric".into(),
            name: name.into(),
            result: result.into(),
            value,
            min: Some(99.0),
            time: at(s),
            ..Default::default()
        };
        let webhook =
            CheckRecord { kind: "webhook".into(), name: "w".into(), ..record("w", None, "Passed", 0) };
        let series = metric_series(&[
            record("request-success-rate", Some(100.0), "Passed", 0),
            record("latency", Some(20.0), "Passed", 0),
            webhook,
            record("request-success-rate", Some(83.8), "Failed", 5),
            record("request-success-rate", None, "NoData", 10),
        ]);
        assert_eq!(
            series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["request-success-rate", "latency"]
        );
        let values: Vec<_> = series[0].points.iter().map(|p| (p.value, p.passed)).collect();
        assert_eq!(values, [(Some(100.0), true), (Some(83.8), false), (None, false)]);
        assert_eq!(series[0].min, Some(99.0));
    }

    #[test]
    fn a_deleted_canary_has_a_page_without_buttons() {
        let mut store = Store::default();
        let c = canary(Phase::Progressing, T);
        store.apply_canary(c.clone(), at(0));
        store.delete_canary(&c, at(3));
        let key = Key::new("test", "podinfo");
        let d = Detail::of(&key, store.get(&key).unwrap(), &TargetRevision::Known(T.into()), at(4));
        assert!(d.summary.is_none());
        assert_eq!(d.deleted, Some(at(3)));
        assert!(d.buttons.is_empty());
        assert_eq!(d.samples.len(), 1);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["historyLimit"], HISTORY);
    }
}
