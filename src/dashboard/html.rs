//! The pages, rendered on the server from the view models. Every value that comes from the
//! cluster (names, messages, Event texts, reasons, webhook answers) goes through [`esc`].

use std::fmt::Write;

use k8s_openapi::jiff::Timestamp;

use super::{
    store::{Sample, WatchHealth},
    view::{ButtonState, Detail, Entry, EntryKind, MetricSeries, Summary, passed, phase_name},
};
use crate::api::{CheckKind, CheckRecord, Phase};

/// `s` with the five characters that matter in HTML text and quoted attributes escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The CSS class of a phase, which gives its colour.
pub fn phase_class(phase: Phase) -> &'static str {
    match phase {
        Phase::Succeeded => "phase-succeeded",
        Phase::Failed => "phase-failed",
        Phase::Progressing | Phase::Promoting | Phase::Finalising => "phase-progressing",
        Phase::Waiting | Phase::WaitingPromotion => "phase-waiting",
        Phase::Terminating | Phase::Terminated => "phase-terminating",
        Phase::Empty | Phase::Initializing | Phase::Initialized => "phase-idle",
    }
}

/// What every page shows around its content.
pub struct Frame<'a> {
    pub title: &'a str,
    /// Which Canaries the dashboard watches, in words.
    pub scope: &'a str,
    pub token: &'a str,
    pub generation: u64,
    pub canaries: &'a WatchHealth,
    pub events: &'a WatchHealth,
    pub now: Timestamp,
}

/// A whole page around `body`.
pub fn page(frame: &Frame<'_>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="veer-token" content="{token}">
<title>{title} · Veer</title>
<link rel="stylesheet" href="/assets/dashboard.css">
<script src="/assets/dashboard.js" defer></script>
</head>
<body data-generation="{generation}">
<header><a class="brand" href="/">Veer</a><span class="scope">{scope}</span><span id="live" class="live" title="The page follows the cluster">live</span></header>
<div id="answer" class="answer" role="status" hidden></div>
<main id="content" data-generation="{generation}">
"#,
        token = esc(frame.token),
        title = esc(frame.title),
        scope = esc(frame.scope),
        generation = frame.generation,
    );
    out.push_str(&health(frame));
    out.push_str(body);
    let _ = write!(
        out,
        "<footer>Rendered at {} (times in UTC) from the dashboard's watch caches.</footer>\n</main>\n</body>\n</html>\n",
        time(frame.now)
    );
    out
}

/// Banners for watches that fail or have not listed yet.
fn health(frame: &Frame<'_>) -> String {
    let mut out = String::new();
    for (what, h) in [("Canaries", frame.canaries), ("Events", frame.events)] {
        if let Some(error) = &h.error {
            let since = h.error_since.map(|t| format!(" since {}", time(t))).unwrap_or_default();
            let _ = write!(
                out,
                r#"<div class="banner error">Cannot watch {what}{since} (retrying; what is shown may be stale): {}</div>"#,
                esc(error)
            );
        } else if !h.synced {
            let _ = write!(out, r#"<div class="banner">Listing {what}…</div>"#);
        }
    }
    out
}

/// A time as HH:MM:SS (UTC), with the full timestamp in a tooltip.
fn time(t: Timestamp) -> String {
    format!(r#"<time datetime="{t}" title="{t}">{}</time>"#, t.strftime("%H:%M:%S"))
}

/// A number without needless decimals.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn range(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("{}..{}", num(min), num(max)),
        (Some(min), None) => format!("≥ {}", num(min)),
        (None, Some(max)) => format!("≤ {}", num(max)),
        (None, None) => String::new(),
    }
}

fn canary_href(namespace: &str, name: &str) -> String {
    format!("/canaries/{}/{}", esc(namespace), esc(name))
}

/// A horizontal bar for a weight of 0..100.
fn weight_bar(weight: i32) -> String {
    let w = weight.clamp(0, 100);
    format!(
        r#"<svg class="bar" viewBox="0 0 100 8" width="100" height="8" role="img" aria-label="canary weight {w}%"><rect class="bar-bg" width="100" height="8" rx="2"/><rect class="bar-fg" width="{w}" height="8" rx="2"/></svg> <span class="weight">{weight}%</span>"#
    )
}

fn phase_badge(phase: Phase) -> String {
    format!(r#"<span class="phase {}">{}</span>"#, phase_class(phase), phase_name(phase))
}

/// A metric's latest value against its range, as the overview lists it.
fn check_chip(c: &CheckRecord) -> String {
    let passed = passed(c);
    let value = c.value.map(num).unwrap_or_else(|| "n/a".into());
    let title = if c.message.is_empty() { c.result.clone() } else { format!("{}: {}", c.result, c.message) };
    format!(
        r#"<span class="check {}" title="{}">{} {} <span class="range">({})</span></span>"#,
        if passed { "ok" } else { "fail" },
        esc(&title),
        esc(&c.name),
        esc(&value),
        esc(&range(c.min, c.max)),
    )
}

fn failed_checks(s: &Summary) -> String {
    let threshold = s.row.threshold.map_or_else(|| "?".to_string(), |t| t.to_string());
    format!("{}/{threshold}", s.row.failed_checks)
}

fn badges(s: &Summary) -> String {
    let mut out = String::new();
    if s.paused {
        out.push_str(r#" <span class="badge">paused</span>"#);
    }
    if let Some(r) = &s.pending_request {
        let _ = write!(out, r#" <span class="badge" title="waiting for Veer">request {}</span>"#, esc(r));
    }
    if let Some(m) = &s.stalled {
        let _ = write!(out, r#" <span class="badge stalled" title="{}">stalled</span>"#, esc(m));
    }
    out
}

/// The overview: one row per Canary.
pub fn overview(summaries: &[Summary], scope: &str) -> String {
    let mut out = String::new();
    let _ = write!(out, "<h1>Canaries</h1>\n<p class=\"muted\">{} in {}</p>\n", summaries.len(), esc(scope));
    if summaries.is_empty() {
        out.push_str(r#"<p class="empty">No Canaries.</p>"#);
        return out;
    }
    out.push_str(
        "<table class=\"canaries\">\n<thead><tr><th>Canary</th><th>Phase</th><th>Weight</th><th>Failed checks</th><th>Metrics</th><th>Last decision</th></tr></thead>\n<tbody>\n",
    );
    for s in summaries {
        let r = &s.row;
        let checks: String =
            r.checks.iter().filter(|c| c.kind == CheckKind::Metric).map(check_chip).collect();
        let decision = r.decision.as_ref().map_or_else(String::new, |d| {
            format!(
                r#"<span class="reason">{}</span> <span class="message">{}</span> <span class="when">{}</span>"#,
                esc(&d.reason),
                esc(&d.message),
                time(d.time)
            )
        });
        let _ = writeln!(
            out,
            r#"<tr class="canary {class}" data-canary="{ns}/{name}"><td class="name"><a href="{href}">{name}</a><div class="ns">{ns}</div></td><td>{phase}{badges}</td><td>{bar}</td><td class="failed">{failed}</td><td class="checks">{checks}</td><td class="decision">{decision}</td></tr>"#,
            class = phase_class(s.phase),
            ns = esc(&r.namespace),
            name = esc(&r.name),
            href = canary_href(&r.namespace, &r.name),
            phase = phase_badge(s.phase),
            badges = badges(s),
            bar = weight_bar(r.weight),
            failed = failed_checks(s),
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// A Canary's page.
pub fn canary(d: &Detail, now: Timestamp) -> String {
    let mut out = String::new();
    out.push_str(r#"<p class="back"><a href="/">← all Canaries</a></p>"#);
    let phase = d.summary.as_ref().map(|s| phase_badge(s.phase)).unwrap_or_default();
    let _ = writeln!(
        out,
        r#"<h1>{} <span class="ns">{}</span> <span id="phase">{phase}</span></h1>"#,
        esc(&d.name),
        esc(&d.namespace)
    );
    match (&d.summary, d.deleted) {
        (None, Some(at)) => {
            let _ = write!(
                out,
                r#"<div class="banner error">This Canary was deleted (seen at {}). What the dashboard recorded is kept below.</div>"#,
                time(at)
            );
        }
        (None, None) => {
            out.push_str(r#"<div class="banner error">This Canary is not in the cluster (yet): only its Events are known.</div>"#);
        }
        (Some(s), _) => {
            out.push_str(&summary_block(s));
            out.push_str(&controls(d));
        }
    }
    out.push_str(&weights_section(d, now));
    out.push_str(&checks_section(d));
    out.push_str(&timeline_section(&d.timeline));
    out
}

fn summary_block(s: &Summary) -> String {
    let r = &s.row;
    let mut facts = vec![
        ("Canary weight", weight_bar(r.weight)),
        ("Failed checks", format!(r#"<span id="failed">{}</span>"#, failed_checks(s))),
    ];
    if let Some(strategy) = &r.strategy {
        facts.push(("Strategy", esc(strategy)));
    }
    if let (Some(n), Some(of)) = (r.step, r.steps) {
        facts.push(("Step", format!("{n} of {of}")));
    }
    if let Some(secs) = r.next_step_in_seconds {
        facts.push(("Next step in", format!("{secs} s")));
    }
    if s.paused {
        facts.push(("Paused", "yes: no step runs until Resume".into()));
    }
    if let Some(req) = &s.pending_request {
        facts.push(("Request", format!("{} (waiting for Veer)", esc(req))));
    }
    let mut out = String::from(r#"<section class="summary"><dl>"#);
    for (k, v) in facts {
        let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    out.push_str("</dl>");
    if let Some(m) = &s.stalled {
        let _ = write!(out, r#"<div class="banner error">Stalled: {}</div>"#, esc(m));
    }
    if let Some(d) = &r.decision {
        let _ = write!(
            out,
            r#"<p id="decision" class="decision"><span class="reason">{}</span> {} <span class="when">{}</span></p>"#,
            esc(&d.reason),
            esc(&d.message),
            time(d.time)
        );
    }
    out.push_str("</section>\n");
    out
}

fn controls(d: &Detail) -> String {
    let mut out = String::from(r#"<section class="controls"><h2>Actions</h2><div class="buttons">"#);
    for b in &d.buttons {
        out.push_str(&button(d, b));
    }
    out.push_str("</div>");
    let refusals: Vec<&ButtonState> = d.buttons.iter().filter(|b| !b.enabled).collect();
    if !refusals.is_empty() {
        out.push_str(r#"<details class="why"><summary>Why some buttons are disabled</summary><ul>"#);
        for b in refusals {
            let _ = write!(
                out,
                "<li><b>{}</b>: {}</li>",
                b.control.label(),
                esc(b.why.as_deref().unwrap_or_default())
            );
        }
        out.push_str("</ul></details>");
    }
    out.push_str(
        r#"<p class="muted">Each button asks Veer through the Canary's annotations, as <code>veer promote|abort|retry|pause|resume</code> do, with your kubeconfig's credentials, and shows Veer's answer.</p></section>"#,
    );
    out.push('\n');
    out
}

fn button(d: &Detail, b: &ButtonState) -> String {
    let c = b.control;
    let url = format!("/api/canaries/{}/{}/{}", esc(&d.namespace), esc(&d.name), c.as_str());
    let title = b.why.as_deref().map(|w| format!(r#" title="{}""#, esc(w))).unwrap_or_default();
    format!(
        r#"<button type="button" id="btn-{id}" class="control {id}" data-control="{id}" data-url="{url}"{confirm}{disabled}{title}>{label}</button>"#,
        id = c.as_str(),
        confirm = if c.confirm() { r#" data-confirm="1""# } else { "" },
        disabled = if b.enabled { "" } else { " disabled" },
        label = c.label(),
    )
}

const CHART_W: f64 = 720.0;
const CHART_H: f64 = 160.0;
const PAD_L: f64 = 64.0;
const PAD_R: f64 = 12.0;
const PAD_T: f64 = 10.0;
const PAD_B: f64 = 22.0;

/// Maps times between `t0` and `t1` to the chart's x axis.
fn x_of(t: Timestamp, t0: Timestamp, t1: Timestamp) -> f64 {
    let span = (t1.as_millisecond() - t0.as_millisecond()).max(1) as f64;
    let at = (t.as_millisecond() - t0.as_millisecond()).clamp(0, span as i64) as f64;
    PAD_L + at / span * (CHART_W - PAD_L - PAD_R)
}

/// Maps `v` between `lo` and `hi` to the chart's y axis (up is more).
fn y_of(v: f64, lo: f64, hi: f64) -> f64 {
    let span = if hi > lo { hi - lo } else { 1.0 };
    let v = v.clamp(lo, hi);
    PAD_T + (hi - v) / span * (CHART_H - PAD_T - PAD_B)
}

/// The canary weight over time as a step line, from the samples; up to `end` (now, or when the
/// Canary was deleted).
pub fn weight_chart(samples: &[Sample], end: Timestamp) -> String {
    let Some(first) = samples.first() else {
        return r#"<p class="muted">No sample yet.</p>"#.into();
    };
    let t0 = first.time;
    let t1 = samples.last().map_or(end, |s| s.time.max(end));
    let mut out = format!(
        r#"<svg id="weights" class="chart" viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="canary weight over time">"#
    );
    for w in [0, 25, 50, 75, 100] {
        let y = y_of(w as f64, 0.0, 100.0);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{PAD_L}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{w}%</text>"#,
            CHART_W - PAD_R,
            PAD_L - 6.0,
            y + 4.0
        );
    }
    let mut path = String::new();
    let mut last_y = None;
    for s in samples {
        let (x, y) = (x_of(s.time, t0, t1), y_of(s.weight as f64, 0.0, 100.0));
        match last_y {
            None => {
                let _ = write!(path, "M{x:.1},{y:.1}");
            }
            Some(prev) => {
                let _ = write!(path, " L{x:.1},{prev:.1} L{x:.1},{y:.1}");
            }
        }
        last_y = Some(y);
    }
    if let Some(y) = last_y {
        let _ = write!(path, " L{:.1},{y:.1}", x_of(t1, t0, t1));
    }
    let _ = write!(out, r#"<path class="line" d="{path}"/>"#);
    for s in samples {
        let _ = write!(
            out,
            r#"<circle class="dot {}" cx="{:.1}" cy="{:.1}" r="3"><title>{} {} weight {}</title></circle>"#,
            phase_class(s.phase),
            x_of(s.time, t0, t1),
            y_of(s.weight as f64, 0.0, 100.0),
            s.time.strftime("%H:%M:%S"),
            phase_name(s.phase),
            s.weight
        );
    }
    axis_times(&mut out, t0, t1);
    out.push_str("</svg>");
    out
}

fn axis_times(out: &mut String, t0: Timestamp, t1: Timestamp) {
    let y = CHART_H - 6.0;
    let _ = write!(
        out,
        r#"<text class="axis" x="{PAD_L}" y="{y}">{}</text><text class="axis" x="{}" y="{y}" text-anchor="end">{}</text>"#,
        t0.strftime("%H:%M:%S"),
        CHART_W - PAD_R,
        t1.strftime("%H:%M:%S")
    );
}

/// A metric's values over time against its range: dashed lines at the bounds, failed values red.
pub fn metric_chart(series: &MetricSeries) -> String {
    let Some(first) = series.points.first() else { return String::new() };
    let t0 = first.time;
    let t1 = series.points.last().map_or(t0, |p| p.time);
    let values: Vec<f64> = series
        .points
        .iter()
        .filter_map(|p| p.value)
        .chain(series.min)
        .chain(series.max)
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) =
        values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let (lo, hi) = if lo.is_finite() && hi > lo {
        let pad = (hi - lo) * 0.1;
        (lo - pad, hi + pad)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    };
    let mut out = format!(
        r#"<svg class="chart metric" data-metric="{}" viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="{} over time">"#,
        esc(&series.name),
        esc(&series.name)
    );
    for (label, bound) in [("min", series.min), ("max", series.max)] {
        if let Some(b) = bound.filter(|b| b.is_finite()) {
            let y = y_of(b, lo, hi);
            let _ = write!(
                out,
                r#"<line class="threshold" x1="{PAD_L}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{label} {}</text>"#,
                CHART_W - PAD_R,
                PAD_L - 6.0,
                y + 4.0,
                num(b)
            );
        }
    }
    let points: Vec<String> = series
        .points
        .iter()
        .filter_map(|p| p.value.filter(|v| v.is_finite()).map(|v| (p.time, v)))
        .map(|(t, v)| format!("{:.1},{:.1}", x_of(t, t0, t1), y_of(v, lo, hi)))
        .collect();
    let _ = write!(out, r#"<polyline class="line" points="{}"/>"#, points.join(" "));
    for p in &series.points {
        let x = x_of(p.time, t0, t1);
        let (y, text) = match p.value.filter(|v| v.is_finite()) {
            Some(v) => (y_of(v, lo, hi), num(v)),
            None => (CHART_H - PAD_B, "no data".to_string()),
        };
        let note = if p.message.is_empty() { String::new() } else { format!(": {}", p.message) };
        let _ = write!(
            out,
            r#"<circle class="dot {}" cx="{x:.1}" cy="{y:.1}" r="3"><title>{} {}{}</title></circle>"#,
            if p.passed { "ok" } else { "fail" },
            p.time.strftime("%H:%M:%S"),
            esc(&text),
            esc(&note)
        );
    }
    axis_times(&mut out, t0, t1);
    out.push_str("</svg>");
    out
}

fn weights_section(d: &Detail, now: Timestamp) -> String {
    let end = d.deleted.unwrap_or(now);
    let dropped = if d.samples_dropped > 0 {
        format!(" ({} older changes dropped)", d.samples_dropped)
    } else {
        String::new()
    };
    format!(
        r#"<section><h2>Canary weight</h2>{}<p class="muted">Recorded by this dashboard from its watch while it runs: the last {} changes of this Canary{dropped}, kept in memory only. Before the dashboard started, the Events below tell the story.</p></section>
"#,
        weight_chart(&d.samples, end),
        d.history_limit,
    )
}

fn checks_section(d: &Detail) -> String {
    let mut out = String::from("<section><h2>Checks</h2>");
    if d.checks.is_empty() {
        out.push_str(r#"<p class="muted">No check result in this run yet.</p>"#);
    } else {
        out.push_str(
            r#"<table class="checks"><thead><tr><th>Kind</th><th>Name</th><th>Value</th><th>Range</th><th>Result</th><th>Details</th><th>At</th></tr></thead><tbody>"#,
        );
        for c in &d.checks {
            let _ = write!(
                out,
                r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="message">{}</td><td>{}</td></tr>"#,
                if passed(c) { "ok" } else { "fail" },
                esc(&c.kind),
                esc(&c.name),
                c.value.map(num).unwrap_or_default(),
                esc(&range(c.min, c.max)),
                esc(&c.result),
                esc(&c.message),
                time(c.time)
            );
        }
        out.push_str("</tbody></table>");
    }
    for series in &d.metrics {
        let _ = write!(
            out,
            r#"<h3>{} <span class="range">{}</span></h3>{}"#,
            esc(&series.name),
            esc(&range(series.min, series.max)),
            metric_chart(series)
        );
    }
    if !d.metrics.is_empty() {
        let _ = write!(
            out,
            r#"<p class="muted">Each metric's results as the dashboard saw them change (the last {} results of this Canary).</p>"#,
            d.check_history_limit
        );
    }
    out.push_str("</section>\n");
    out
}

fn timeline_section(entries: &[Entry]) -> String {
    let mut out = String::from(r#"<section><h2>Timeline</h2><ol id="timeline" class="timeline">"#);
    if entries.is_empty() {
        out.push_str(r#"<li class="muted">Nothing recorded yet.</li>"#);
    }
    for e in entries {
        let kind = match e.kind {
            EntryKind::Event => "event",
            EntryKind::Decision => "decision",
            EntryKind::Webhook => "webhook",
            EntryKind::Phase => "phase",
        };
        let count =
            if e.count > 1 { format!(r#" <span class="count">×{}</span>"#, e.count) } else { String::new() };
        let _ = write!(
            out,
            r#"<li class="entry k-{kind}{}">{} <span class="kind">{kind}</span> <span class="title">{}</span> <span class="message">{}</span>{count}</li>"#,
            if e.warning { " warning" } else { "" },
            time(e.time),
            esc(&e.title),
            esc(&e.message),
        );
    }
    out.push_str("</ol></section>\n");
    out
}

/// The page of a Canary the dashboard does not know.
pub fn unknown(namespace: &str, name: &str, scope: &str) -> String {
    format!(
        r#"<p class="back"><a href="/">← all Canaries</a></p><h1>{} <span class="ns">{}</span></h1><div class="banner error">No Canary {}.{} in {}. The page shows it as soon as it appears.</div>"#,
        esc(name),
        esc(namespace),
        esc(name),
        esc(namespace),
        esc(scope)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{CanaryStatus, Decision},
        dashboard::{
            store::{Key, Store},
            view::{Summary, TargetRevision},
        },
        fixtures,
    };

    const HOSTILE: &str = r#"<script>alert("x")</script><img src=x onerror='alert(1)'>&amp;"#;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc(HOSTILE),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=&#39;alert(1)&#39;&gt;&amp;amp;"
        );
        assert_eq!(esc("podinfo.test ≥ 99%"), "podinfo.test ≥ 99%");
        // Quoted attributes cannot be left either.
        assert!(!esc(r#"" onmouseover="x"#).contains('"'));
        assert!(!esc("' onmouseover='x").contains('\''));
    }

    fn hostile_canary() -> crate::api::Canary {
        let mut c = fixtures::canary("podinfo", "test").uid("u1").build();
        let time = Timestamp::from_second(1_700_000_000).unwrap();
        c.status = Some(CanaryStatus {
            phase: Phase::Progressing,
            canary_weight: 30,
            decision: Some(Decision { time, reason: HOSTILE.into(), message: HOSTILE.into() }),
            checks: vec![
                CheckRecord {
                    kind: "metric".into(),
                    name: HOSTILE.into(),
                    result: "Failed".into(),
                    value: Some(1.0),
                    min: Some(99.0),
                    message: HOSTILE.into(),
                    time,
                    ..Default::default()
                },
                CheckRecord {
                    kind: "webhook".into(),
                    name: HOSTILE.into(),
                    result: "Failed".into(),
                    message: HOSTILE.into(),
                    time,
                    ..Default::default()
                },
            ],
            conditions: vec![crate::api::CanaryCondition {
                type_: "Stalled".into(),
                status: "True".into(),
                reason: "X".into(),
                message: Some(HOSTILE.into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        c.metadata.annotations = Some([("veer.dev/request".to_string(), HOSTILE.to_string())].into());
        c
    }

    /// Whatever the cluster holds, no markup of it reaches the page.
    #[test]
    fn no_value_from_the_cluster_injects_markup() {
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        let mut store = Store::default();
        store.apply_canary(hostile_canary(), now);
        let mut event = crate::dashboard::store::tests::event("podinfo", "u1", HOSTILE, now, 2);
        event.reason = Some(HOSTILE.into());
        store.apply_event(&event, now);
        let key = Key::new("test", "podinfo");
        let tracked = store.get(&key).unwrap();
        let detail = Detail::of(&key, tracked, &TargetRevision::Unreadable(HOSTILE.into()), now);
        let summaries = [Summary::of(tracked.canary.as_ref().unwrap(), now)];
        let health = WatchHealth { synced: true, error: Some(HOSTILE.into()), error_since: Some(now) };
        let frame = Frame {
            title: HOSTILE,
            scope: HOSTILE,
            token: "t",
            generation: 1,
            canaries: &health,
            events: &health,
            now,
        };
        for html in [
            page(&frame, &overview(&summaries, HOSTILE)),
            page(&frame, &canary(&detail, now)),
            unknown(HOSTILE, HOSTILE, HOSTILE),
        ] {
            assert!(!html.contains("<script>alert"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("onerror='"), "{html}");
            assert!(html.contains("&lt;script&gt;"), "the text is shown, escaped");
            // The only scripts are the dashboard's own.
            assert_eq!(html.matches("<script").count(), usize::from(html.starts_with("<!doctype")));
        }
    }

    #[test]
    fn the_overview_shows_phase_weight_failed_checks_metrics_and_the_decision() {
        let now = Timestamp::from_second(1_700_000_100).unwrap();
        let mut c = fixtures::canary("podinfo", "test")
            .spec(serde_json::json!({"analysis": {"threshold": 2, "stepWeight": 10}}))
            .build();
        c.status = Some(CanaryStatus {
            phase: Phase::Failed,
            canary_weight: 0,
            failed_checks: 2,
            decision: Some(Decision {
                time: now,
                reason: "RolledBack".into(),
                message: "rolled back podinfo.test".into(),
            }),
            checks: vec![CheckRecord {
                kind: "metric".into(),
                name: "request-success-rate".into(),
                result: "Failed".into(),
                value: Some(83.8),
                min: Some(99.0),
                time: now,
                ..Default::default()
            }],
            ..Default::default()
        });
        let html = overview(&[Summary::of(&c, now)], "namespace test");
        for part in [
            r#"<tr class="canary phase-failed" data-canary="test/podinfo">"#,
            r#"<a href="/canaries/test/podinfo">podinfo</a>"#,
            r#"<span class="phase phase-failed">Failed</span>"#,
            r#"<td class="failed">2/2</td>"#,
            "request-success-rate 83.8 <span class=\"range\">(≥ 99)</span>",
            r#"<span class="check fail""#,
            "RolledBack",
        ] {
            assert!(html.contains(part), "{part:?} missing from {html}");
        }
    }

    #[test]
    fn the_weight_chart_steps_through_the_samples() {
        let t = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        let sample = |s: i64, weight: i32| Sample {
            time: t(s),
            phase: Phase::Progressing,
            weight,
            failed_checks: 0,
            iterations: 0,
        };
        let svg = weight_chart(&[sample(0, 0), sample(10, 50), sample(20, 100)], t(20));
        // x from 64 to 708 over 20 s, y from 138 (0%) to 10 (100%).
        assert!(
            svg.contains(r#"d="M64.0,138.0 L386.0,138.0 L386.0,74.0 L708.0,74.0 L708.0,10.0 L708.0,10.0""#),
            "{svg}"
        );
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(weight_chart(&[], t(0)).contains("No sample yet"));
    }

    #[test]
    fn numbers_and_ranges_read_well() {
        assert_eq!(num(99.0), "99");
        assert_eq!(num(83.8), "83.8");
        assert_eq!(num(0.126), "0.13");
        assert_eq!(num(-2.0), "-2");
        assert_eq!(range(Some(99.0), None), "≥ 99");
        assert_eq!(range(None, Some(500.0)), "≤ 500");
        assert_eq!(range(Some(1.0), Some(2.5)), "1..2.5");
    }
}
