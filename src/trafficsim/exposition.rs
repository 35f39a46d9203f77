//! The Prometheus text format (0.0.4): rendering the simulator's series, and a small parser for
//! tests and the client.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thiserror::Error;

use super::model::{Series, Traffic};
use super::sim::{Key, NginxIngress, Shape, Sim};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rust's shortest round-trip form, which Prometheus parses back to the same `f64`.
fn number(v: f64) -> String {
    if v == f64::INFINITY { "+Inf".to_owned() } else { format!("{v}") }
}

/// Label values are validated Kubernetes names or fixed strings, so nothing needs escaping.
fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{v}\"");
    }
    let _ = writeln!(out, "}} {}", number(value));
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[derive(Clone, Copy)]
enum Unit {
    Milliseconds,
    Seconds,
}

impl Unit {
    fn of_us(self, us: u64) -> f64 {
        match self {
            Unit::Milliseconds => us as f64 / 1_000.0,
            Unit::Seconds => us as f64 / 1_000_000.0,
        }
    }

    fn of_ms(self, ms: f64) -> f64 {
        match self {
            Unit::Milliseconds => ms,
            Unit::Seconds => ms / 1_000.0,
        }
    }
}

fn histogram(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    bounds_us: &[u64],
    unit: Unit,
    s: &Series,
) {
    let bucket = format!("{name}_bucket");
    let les: Vec<String> =
        bounds_us.iter().map(|&b| number(unit.of_us(b))).chain(["+Inf".to_owned()]).collect();
    let counts = s.buckets.iter().copied().chain([s.count]);
    let mut with_le = labels.to_vec();
    for (le, count) in les.iter().zip(counts) {
        with_le.push(("le", le));
        line(out, &bucket, &with_le, count);
        with_le.pop();
    }
    line(out, &format!("{name}_sum"), labels, unit.of_ms(s.sum_ms));
    line(out, &format!("{name}_count"), labels, s.count);
}

/// `(status code, series)` of a stream; both classes are always exported so that the error series
/// exists (at 0) before the first error, as Prometheus's rate extrapolation prefers.
fn classes(t: &Traffic) -> [(&'static str, &Series); 2] {
    [("200", t.ok()), ("500", t.errors())]
}

/// Pod name that matches the generic observer's `<target>-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)`; Linkerd's
/// `pod` label carries the same name.
fn pod_name(key: &Key) -> String {
    format!("{}-trafficsim-0", key.name())
}

/// Linkerd's `classification` of a response: 5xx are failures.
fn linkerd_classification(code: &str) -> &'static str {
    if code.starts_with('5') { "failure" } else { "success" }
}

pub(crate) fn render(sim: &Sim) -> String {
    let mut out = String::new();

    if sim.exports(Shape::Istio) {
        header(
            &mut out,
            "istio_requests_total",
            "counter",
            "Requests (simulated Istio destination telemetry).",
        );
        for (key, w) in &sim.istio {
            for (code, s) in classes(&w.traffic) {
                line(&mut out, "istio_requests_total", &istio_labels(key, code), s.count);
            }
        }

        let name = "istio_request_duration_milliseconds";
        header(
            &mut out,
            name,
            "histogram",
            "Request duration in ms (simulated Istio destination telemetry).",
        );
        for (key, w) in &sim.istio {
            for (code, s) in classes(&w.traffic) {
                histogram(
                    &mut out,
                    name,
                    &istio_labels(key, code),
                    w.traffic.bounds_us(),
                    Unit::Milliseconds,
                    s,
                );
            }
        }
    }

    if sim.exports(Shape::Generic) {
        let name = "http_request_duration_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Request duration in s (generic shape, from the Istio workloads).",
        );
        for (key, w) in &sim.istio {
            let pod = pod_name(key);
            for (code, s) in classes(&w.traffic) {
                let labels = [
                    ("kubernetes_namespace", key.namespace()),
                    ("kubernetes_pod_name", &pod),
                    ("status", code),
                ];
                histogram(&mut out, name, &labels, w.traffic.bounds_us(), Unit::Seconds, s);
            }
        }
    }

    if sim.exports(Shape::Linkerd) {
        // Linkerd's proxy, inbound side: one response per request, so the same counters again.
        let name = "response_total";
        header(&mut out, name, "counter", "Responses (simulated Linkerd proxy, from the Istio workloads).");
        for (key, w) in &sim.istio {
            let pod = pod_name(key);
            for (code, s) in classes(&w.traffic) {
                let mut labels = linkerd_labels(key, &pod, code).to_vec();
                labels.push(("classification", linkerd_classification(code)));
                line(&mut out, name, &labels, s.count);
            }
        }

        let name = "response_latency_ms";
        header(
            &mut out,
            name,
            "histogram",
            "Response latency in ms (simulated Linkerd proxy, from the Istio workloads).",
        );
        for (key, w) in &sim.istio {
            let pod = pod_name(key);
            for (code, s) in classes(&w.traffic) {
                let labels = linkerd_labels(key, &pod, code);
                histogram(&mut out, name, &labels, w.traffic.bounds_us(), Unit::Milliseconds, s);
            }
        }
    }

    if sim.exports(Shape::Osm) {
        // Open Service Mesh's Envoy statistics, destination side: the same counters again.
        let name = "osm_request_total";
        header(
            &mut out,
            name,
            "counter",
            "Requests (simulated Open Service Mesh, from the Istio workloads).",
        );
        for (key, w) in &sim.istio {
            let pod = pod_name(key);
            for (code, s) in classes(&w.traffic) {
                line(&mut out, name, &osm_labels(key, &pod, code), s.count);
            }
        }

        let name = "osm_request_duration_ms";
        header(&mut out, name, "histogram", "Request duration in ms (simulated Open Service Mesh).");
        for (key, w) in &sim.istio {
            let pod = pod_name(key);
            for (code, s) in classes(&w.traffic) {
                histogram(
                    &mut out,
                    name,
                    &osm_labels(key, &pod, code),
                    w.traffic.bounds_us(),
                    Unit::Milliseconds,
                    s,
                );
            }
        }
    }

    let name = "nginx_ingress_controller_requests";
    header(&mut out, name, "counter", "Requests (simulated NGINX ingress controller).");
    for (key, i) in &sim.nginx {
        for (canary, traffic) in nginx_streams(key, i) {
            for (code, s) in classes(traffic) {
                line(&mut out, name, &nginx_labels(key, &canary, code), s.count);
            }
        }
    }

    let name = "nginx_ingress_controller_response_duration_seconds";
    header(&mut out, name, "histogram", "Upstream response time in s (simulated NGINX ingress controller).");
    for (key, i) in &sim.nginx {
        for (canary, traffic) in nginx_streams(key, i) {
            for (code, s) in classes(traffic) {
                histogram(
                    &mut out,
                    name,
                    &nginx_labels(key, &canary, code),
                    traffic.bounds_us(),
                    Unit::Seconds,
                    s,
                );
            }
        }
    }
    out
}

fn istio_labels<'a>(key: &'a Key, code: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("reporter", "destination"),
        ("destination_workload", key.name()),
        ("destination_workload_namespace", key.namespace()),
        ("response_code", code),
    ]
}

/// Open Service Mesh's destination-side labels of a workload (a Deployment).
fn osm_labels<'a>(key: &'a Key, pod: &'a str, code: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("destination_namespace", key.namespace()),
        ("destination_kind", "Deployment"),
        ("destination_name", key.name()),
        ("destination_pod", pod),
        ("response_code", code),
    ]
}

fn linkerd_labels<'a>(key: &'a Key, pod: &'a str, code: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("direction", "inbound"),
        ("namespace", key.namespace()),
        ("deployment", key.name()),
        ("pod", pod),
        ("status_code", code),
    ]
}

fn nginx_streams<'a>(key: &Key, i: &'a NginxIngress) -> [(String, &'a Traffic); 2] {
    [(NginxIngress::canary_label(key), &i.canary), (String::new(), &i.primary)]
}

fn nginx_labels<'a>(key: &'a Key, canary: &'a str, status: &'a str) -> [(&'static str, &'a str); 4] {
    [("namespace", key.namespace()), ("ingress", key.name()), ("canary", canary), ("status", status)]
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

#[derive(Debug, Error, PartialEq)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Parses the text format: comment lines are skipped, timestamps ignored. Enough for the output of
/// this simulator and of similar exporters, not a full implementation.
///
/// Not the `prometheus-parse` crate, which the design names for parsing exposition text in tests:
/// this parser is needed at run time, by [`super::Client::metrics`] (the simulator's client, used
/// by its users: `tests/trafficsim_http.rs`, the e2e tests), so a crate for it would be a normal
/// dependency of the library, and prometheus-parse 0.2.5 (edition 2018) brings chrono along for
/// these few lines. The e2e tests that read the controller's and the load tester's `/metrics` use
/// this parser as well, so that the project has one, tested below.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| parse_line(l.trim()).map_err(|reason| ParseError { line: i + 1, reason }))
        .collect()
}

fn parse_line(l: &str) -> Result<Sample, String> {
    let name_end = l.find(|c: char| c == '{' || c.is_whitespace()).ok_or("no value")?;
    let name = &l[..name_end];
    if name.is_empty() {
        return Err("empty metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &l[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end = loop {
            while chars.next_if(|(_, c)| *c == ',' || c.is_whitespace()).is_some() {}
            let Some(&(start, c)) = chars.peek() else { return Err("unterminated label set".into()) };
            if c == '}' {
                break start + 1;
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=') {
                key.push(c);
            }
            if chars.next().is_none() || chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key:?} has no quoted value"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    None => return Err(format!("label {key:?} value is unterminated")),
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c @ ('\\' | '"')) => value.push(c),
                        other => return Err(format!("bad escape {other:?} in label {key:?}")),
                    },
                    Some(c) => value.push(c),
                }
            }
            labels.insert(key.trim().to_owned(), value);
        };
        rest = &after[end..];
    }
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample { name: name.to_owned(), labels, value })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::trafficsim::api::{IstioSpec, NginxSpec};

    fn sim_with_traffic() -> (Sim, String) {
        let t0 = Instant::now();
        let mut sim = Sim::new();
        let spec = IstioSpec { rps: 10.0, error_rate: 0.25, latency_ms: 333.3 };
        sim.put_istio(Key::new("shop", "cart", "workload").unwrap(), &spec, t0).unwrap();
        let spec = NginxSpec { rps: 4.0, error_rate: 0.5, latency_ms: 120.0, primary_rps: 6.0 };
        sim.put_nginx(Key::new("shop", "web", "ingress").unwrap(), &spec, t0).unwrap();
        let text = sim.scrape(t0 + Duration::from_secs(2));
        (sim, text)
    }

    fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> &'a Sample {
        let mut hits =
            samples.iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)));
        let hit = hits.next().unwrap_or_else(|| panic!("no {name} {labels:?}"));
        assert!(hits.next().is_none(), "several {name} {labels:?}");
        hit
    }

    #[test]
    fn only_the_chosen_shapes_are_exported() {
        let mut sim = Sim::with_shapes(&[Shape::Istio]);
        let spec = IstioSpec { rps: 10.0, error_rate: 0.0, latency_ms: 50.0 };
        sim.put_istio(Key::new("ns", "app", "workload").unwrap(), &spec, Instant::now()).unwrap();
        let text = render(&sim);
        assert!(text.contains("istio_requests_total{"), "{text}");
        assert!(text.contains("istio_request_duration_milliseconds_bucket{"), "{text}");
        for other in ["http_request_duration_seconds", "response_total", "response_latency_ms", "osm_request"]
        {
            assert!(!text.contains(&format!("\n{other}")), "{other} exported: {text}");
        }
        let all = Sim::new();
        assert_eq!(all.shapes, Shape::ALL.to_vec());
    }

    #[test]
    fn rendered_text_parses_back_to_the_counters() {
        let (_, text) = sim_with_traffic();
        let samples = parse(&text).unwrap();
        let req = "istio_requests_total";
        let base = [("reporter", "destination"), ("destination_workload", "cart")];
        assert_eq!(find(&samples, req, &[base[0], base[1], ("response_code", "200")]).value, 15.0);
        assert_eq!(find(&samples, req, &[base[0], base[1], ("response_code", "500")]).value, 5.0);
        // 333.3 ms is a bucket in ms, and its tails are 333.299 / 333.301 ms.
        let b = "istio_request_duration_milliseconds_bucket";
        let ok = ("response_code", "200");
        assert_eq!(find(&samples, b, &[ok, ("le", "333.3")]).value, 15.0 * 0.99);
        assert_eq!(find(&samples, b, &[ok, ("le", "333.299")]).value, 15.0 * 0.01);
        assert_eq!(find(&samples, b, &[ok, ("le", "+Inf")]).value, 15.0);
        let g = "http_request_duration_seconds_bucket";
        let pod = ("kubernetes_pod_name", "cart-trafficsim-0");
        assert_eq!(find(&samples, g, &[pod, ("status", "500"), ("le", "0.3333")]).value, 5.0 * 0.99);
        let sum = find(&samples, "http_request_duration_seconds_sum", &[pod, ("status", "500")]).value;
        assert!((sum - 5.0 * 0.3333).abs() < 1e-12);

        // Linkerd's inbound side: the same counters, classified, per deployment and pod.
        let r = "response_total";
        let inbound = [("direction", "inbound"), ("namespace", "shop"), ("deployment", "cart")];
        let linkerd = |extra: &[(&'static str, &'static str)]| [&inbound[..], extra].concat();
        let success = [("pod", "cart-trafficsim-0"), ("classification", "success"), ("status_code", "200")];
        assert_eq!(find(&samples, r, &linkerd(&success)).value, 15.0);
        let failure = [("classification", "failure"), ("status_code", "500")];
        assert_eq!(find(&samples, r, &linkerd(&failure)).value, 5.0);
        assert_eq!(samples.iter().filter(|s| s.name == r).count(), 2, "one series per status code");
        let l = "response_latency_ms_bucket";
        assert_eq!(
            find(&samples, l, &linkerd(&[("status_code", "200"), ("le", "333.3")])).value,
            15.0 * 0.99
        );
        assert_eq!(find(&samples, l, &linkerd(&[("status_code", "500"), ("le", "333.301")])).value, 5.0);
        let sum = find(&samples, "response_latency_ms_sum", &linkerd(&[("status_code", "500")])).value;
        assert!((sum - 5.0 * 333.3).abs() < 1e-9);
        assert_eq!(
            find(&samples, "response_latency_ms_count", &linkerd(&[("status_code", "200")])).value,
            15.0
        );
        assert!(!samples.iter().any(|s| s.name == l && s.label("classification").is_some()));

        // Open Service Mesh: the same counters, by destination.
        let dest = [
            ("destination_namespace", "shop"),
            ("destination_kind", "Deployment"),
            ("destination_name", "cart"),
        ];
        let osm = |extra: &[(&'static str, &'static str)]| [&dest[..], extra].concat();
        assert_eq!(find(&samples, "osm_request_total", &osm(&[("response_code", "200")])).value, 15.0);
        assert_eq!(find(&samples, "osm_request_total", &osm(&[("response_code", "500")])).value, 5.0);
        let o = "osm_request_duration_ms_bucket";
        assert_eq!(find(&samples, o, &osm(&[("response_code", "200"), ("le", "333.3")])).value, 15.0 * 0.99);

        let n = "nginx_ingress_controller_requests";
        let canary = ("canary", "shop-web-canary-80");
        assert_eq!(find(&samples, n, &[canary, ("status", "500")]).value, 4.0);
        assert_eq!(find(&samples, n, &[("canary", ""), ("status", "200")]).value, 12.0);
        assert_eq!(find(&samples, n, &[("canary", ""), ("status", "500")]).value, 0.0);
        let h = "nginx_ingress_controller_response_duration_seconds";
        assert_eq!(find(&samples, &format!("{h}_count"), &[canary, ("status", "200")]).value, 4.0);
        let sum = find(&samples, &format!("{h}_sum"), &[canary, ("status", "200")]).value;
        assert!((sum - 4.0 * 0.12).abs() < 1e-12);
    }

    #[test]
    fn every_family_has_one_type_line_and_no_duplicate_series() {
        let (_, text) = sim_with_traffic();
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let n = types.len();
        types.dedup();
        assert_eq!(types.len(), n);
        let samples = parse(&text).unwrap();
        let mut ids: Vec<String> = samples.iter().map(|s| format!("{}{:?}", s.name, s.labels)).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), samples.len(), "a duplicate series makes Prometheus reject the whole scrape");
    }

    #[test]
    fn buckets_are_cumulative_in_every_histogram() {
        let (_, text) = sim_with_traffic();
        let samples = parse(&text).unwrap();
        let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples.iter().filter(|s| s.name.ends_with("_bucket")) {
            let mut labels = s.labels.clone();
            let le: f64 = match labels.remove("le").unwrap().as_str() {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap(),
            };
            by_series.entry(format!("{}{labels:?}", s.name)).or_default().push((le, s.value));
        }
        // Istio: 2 codes in ms, 2 in the generic shape, 2 in Linkerd's and 2 in OSM's; NGINX: 2 codes ×
        // canary and primary.
        assert_eq!(by_series.len(), 8 + 4);
        for (series, mut buckets) in by_series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(buckets.last().unwrap().0, f64::INFINITY, "{series}");
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{series}: {buckets:?}");
        }
    }

    #[test]
    fn parser_handles_escapes_timestamps_and_errors() {
        let s = parse("# c\nm{a=\"x\\\"y\\\\z\\n\", b=\"\"} 1.5 1700000000\nplain +Inf\n").unwrap();
        assert_eq!(s[0].label("a"), Some("x\"y\\z\n"));
        assert_eq!(s[0].label("b"), Some(""));
        assert_eq!(s[0].value, 1.5);
        assert_eq!((s[1].name.as_str(), s[1].value), ("plain", f64::INFINITY));
        assert_eq!(parse("ok 1\nm{a=\"1\"").unwrap_err().line, 2);
        assert!(parse("m{a=1} 2").is_err());
        assert!(parse("m{a=\"1\"} x").is_err());
    }
}
