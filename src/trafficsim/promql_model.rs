//! Test-only model of the PromQL arithmetic the built-in queries rely on, as Prometheus 2.42 does
//! it: `rate()` with its extrapolation to the window edges (and towards zero for young counters),
//! `sum`, and `histogram_quantile` over classic buckets. Written from the documented behaviour, to
//! check that the simulator's float counters give the configured values back exactly.

use std::collections::BTreeMap;

use super::exposition::Sample;

/// Per-second rate of one counter over `[end - range, end]`; `None` with fewer than two points.
pub fn rate(points: &[(f64, f64)], end: f64, range: f64) -> Option<f64> {
    let start = end - range;
    let window: Vec<(f64, f64)> = points.iter().copied().filter(|(t, _)| *t >= start && *t <= end).collect();
    if window.len() < 2 {
        return None;
    }
    let (first, last) = (window[0], window[window.len() - 1]);
    // A decrease is a counter reset: the value before it was lost, so add it back.
    let resets: f64 = window.windows(2).filter(|w| w[1].1 < w[0].1).map(|w| w[0].1).sum();
    let increase = last.1 - first.1 + resets;

    let sampled = last.0 - first.0;
    let average_gap = sampled / (window.len() - 1) as f64;
    let mut to_start = first.0 - start;
    let to_end = end - last.0;
    if increase > 0.0 && first.1 >= 0.0 {
        // A counter cannot be extrapolated to before it was zero.
        to_start = to_start.min(sampled * first.1 / increase);
    }
    // Extrapolate to an edge only when it is near; otherwise by half a scrape gap.
    let threshold = average_gap * 1.1;
    let reach = |d: f64| if d < threshold { d } else { average_gap / 2.0 };
    let covered = sampled + reach(to_start) + reach(to_end);
    Some(increase * covered / sampled / range)
}

/// `histogram_quantile(q, ...)` over `(le, count)` buckets.
pub fn quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Equal bounds are one bucket.
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (le, count) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += count,
            _ => merged.push((le, count)),
        }
    }
    // Counts are forced to be non-decreasing.
    let mut high = f64::NEG_INFINITY;
    for b in &mut merged {
        high = high.max(b.1);
        b.1 = high;
    }
    let total = merged[merged.len() - 1].1;
    if merged.len() < 2 || total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let finite = merged.len() - 1;
    let b = merged[..finite].iter().position(|b| b.1 >= rank).unwrap_or(finite);
    if b == finite {
        return merged[finite - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (start, below) = if b > 0 { merged[b - 1] } else { (0.0, 0.0) };
    start + (merged[b].0 - start) * ((rank - below) / (merged[b].1 - below))
}

/// Scrapes kept in time order, as a tiny TSDB.
#[derive(Default)]
pub struct Tsdb {
    scrapes: Vec<(f64, Vec<Sample>)>,
}

impl Tsdb {
    pub fn push(&mut self, t: f64, samples: Vec<Sample>) {
        self.scrapes.push((t, samples));
    }

    /// `sum(rate(name{matcher}[range]))` at `end`, optionally `by (label)`.
    pub fn sum_rate(
        &self,
        name: &str,
        matcher: impl Fn(&Sample) -> bool,
        by: Option<&str>,
        end: f64,
        range: f64,
    ) -> BTreeMap<String, f64> {
        let mut series: BTreeMap<String, (String, Vec<(f64, f64)>)> = BTreeMap::new();
        for (t, samples) in &self.scrapes {
            for s in samples.iter().filter(|s| s.name == name && matcher(s)) {
                let group = by.and_then(|l| s.label(l)).unwrap_or_default().to_owned();
                let entry = series.entry(format!("{:?}", s.labels)).or_insert_with(|| (group, Vec::new()));
                entry.1.push((*t, s.value));
            }
        }
        let mut sums = BTreeMap::new();
        for (group, points) in series.into_values() {
            if let Some(r) = rate(&points, end, range) {
                *sums.entry(group).or_insert(0.0) += r;
            }
        }
        sums
    }

    /// `sum(rate(name{matcher}[range]))` at `end` as a single value; `None` for an empty result.
    pub fn sum_rate_total(
        &self,
        name: &str,
        matcher: impl Fn(&Sample) -> bool,
        end: f64,
        range: f64,
    ) -> Option<f64> {
        self.sum_rate(name, matcher, None, end, range).remove("")
    }

    /// `histogram_quantile(q, sum(rate(name_bucket{matcher}[range])) by (le))` at `end`.
    pub fn histogram_quantile(
        &self,
        q: f64,
        name: &str,
        matcher: impl Fn(&Sample) -> bool,
        end: f64,
        range: f64,
    ) -> f64 {
        let by_le = self.sum_rate(&format!("{name}_bucket"), matcher, Some("le"), end, range);
        let buckets = by_le
            .into_iter()
            .map(|(le, v)| (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, v))
            .collect();
        quantile(q, buckets)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::trafficsim::api::{IstioSpec, NginxSpec};
    use crate::trafficsim::exposition::parse;
    use crate::trafficsim::sim::{Key, Sim};

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // 1/s counter scraped every second from t=0 (value 0): the window [5, 15] holds 11 points
        // from 5 to 15, no extrapolation is needed.
        let points: Vec<(f64, f64)> = (0..=20).map(|t| (t as f64, t as f64)).collect();
        assert_eq!(rate(&points, 15.0, 10.0), Some(1.0));
        // Points half a second off the edges are extrapolated to the edges.
        let shifted: Vec<(f64, f64)> = points.iter().map(|(t, v)| (t + 0.5, *v)).collect();
        assert!((rate(&shifted, 15.0, 10.0).unwrap() - 1.0).abs() < 1e-12);
        // A young counter is not extrapolated to before zero: window [0, 10] but started at t=8.
        let young = [(8.0, 0.0), (9.0, 1.0), (10.0, 2.0)];
        assert_eq!(rate(&young, 10.0, 10.0), Some(0.2));
        // Across a reset: 2 before it, then 1 counted from zero, over 2 s.
        assert_eq!(rate(&[(0.0, 5.0), (1.0, 7.0), (2.0, 1.0)], 2.0, 2.0), Some(1.5));
        assert_eq!(rate(&[(1.0, 1.0)], 2.0, 2.0), None);
    }

    #[test]
    fn quantile_interpolates_and_clamps_like_prometheus() {
        let inf = f64::INFINITY;
        assert_eq!(quantile(0.5, vec![(10.0, 50.0), (20.0, 100.0), (inf, 100.0)]), 10.0);
        assert_eq!(quantile(0.75, vec![(10.0, 50.0), (20.0, 100.0), (inf, 100.0)]), 15.0);
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(quantile(0.99, vec![(10.0, 50.0), (20.0, 90.0), (inf, 100.0)]), 20.0);
        // Lowest bucket interpolates from 0, or returns its bound when that is <= 0.
        assert_eq!(quantile(0.5, vec![(10.0, 100.0), (inf, 100.0)]), 5.0);
        assert_eq!(quantile(0.5, vec![(0.0, 100.0), (inf, 100.0)]), 0.0);
        assert!(quantile(0.5, vec![(10.0, 100.0)]).is_nan());
        assert!(quantile(0.5, vec![(10.0, 0.0), (inf, 0.0)]).is_nan());
    }

    const RANGE: f64 = 30.0;

    /// Scrapes `sim` every second (with a deterministic jitter of up to 0.3 s, as real scrapes have)
    /// from `from` to `to` seconds after `t0`.
    fn scrape(sim: &mut Sim, db: &mut Tsdb, t0: Instant, from: u32, to: u32) {
        for k in from..to {
            let t = k as f64 + ((k * 7919) % 100) as f64 * 0.003;
            let text = sim.scrape(t0 + Duration::from_secs_f64(t));
            db.push(t, parse(&text).unwrap());
        }
    }

    fn label_is(s: &Sample, name: &str, value: &str) -> bool {
        s.label(name) == Some(value)
    }

    fn not_5xx(s: &Sample, name: &str) -> bool {
        !s.label(name).unwrap_or_default().starts_with('5')
    }

    struct Observed {
        istio_success: f64,
        istio_p99: f64,
        generic_p99_ms: f64,
        linkerd_success: f64,
        linkerd_p99: f64,
        osm_success: f64,
        osm_p99: f64,
        nginx_success: f64,
        nginx_avg_ms: f64,
    }

    /// The §4.1 built-in queries (Istio, generic, Linkerd, OSM, NGINX) for workload `cart` and ingress `web`
    /// in namespace `shop`.
    fn built_ins(db: &Tsdb, at: f64) -> Observed {
        let istio = |s: &Sample| {
            label_is(s, "reporter", "destination")
                && label_is(s, "destination_workload_namespace", "shop")
                && label_is(s, "destination_workload", "cart")
        };
        let ok =
            db.sum_rate_total("istio_requests_total", |s| istio(s) && not_5xx(s, "response_code"), at, RANGE);
        let all = db.sum_rate_total("istio_requests_total", istio, at, RANGE);
        let istio_p99 = db.histogram_quantile(0.99, "istio_request_duration_milliseconds", istio, at, RANGE);

        let generic = |s: &Sample| {
            label_is(s, "kubernetes_namespace", "shop")
                && s.label("kubernetes_pod_name").is_some_and(|p| p.starts_with("cart-"))
        };
        let generic_p99 = db.histogram_quantile(0.99, "http_request_duration_seconds", generic, at, RANGE);

        let linkerd = |s: &Sample| {
            label_is(s, "namespace", "shop")
                && label_is(s, "deployment", "cart")
                && label_is(s, "direction", "inbound")
        };
        let l_ok = db.sum_rate_total(
            "response_total",
            |s| linkerd(s) && s.label("classification") != Some("failure"),
            at,
            RANGE,
        );
        let l_all = db.sum_rate_total("response_total", linkerd, at, RANGE);
        let linkerd_p99 = db.histogram_quantile(0.99, "response_latency_ms", linkerd, at, RANGE);

        let osm = |s: &Sample| {
            label_is(s, "destination_namespace", "shop")
                && label_is(s, "destination_kind", "Deployment")
                && label_is(s, "destination_name", "cart")
        };
        let o_ok =
            db.sum_rate_total("osm_request_total", |s| osm(s) && not_5xx(s, "response_code"), at, RANGE);
        let o_all = db.sum_rate_total("osm_request_total", osm, at, RANGE);
        let osm_p99 = db.histogram_quantile(0.99, "osm_request_duration_ms", osm, at, RANGE);

        let nginx = |s: &Sample| {
            label_is(s, "namespace", "shop") && label_is(s, "ingress", "web") && s.label("canary") != Some("")
        };
        let n = "nginx_ingress_controller_requests";
        let n_ok = db.sum_rate_total(n, |s| nginx(s) && not_5xx(s, "status"), at, RANGE);
        let n_all = db.sum_rate_total(n, nginx, at, RANGE);
        let h = "nginx_ingress_controller_response_duration_seconds";
        let sum = db.sum_rate_total(&format!("{h}_sum"), nginx, at, RANGE);
        let count = db.sum_rate_total(&format!("{h}_count"), nginx, at, RANGE);
        Observed {
            istio_success: ok.unwrap() / all.unwrap() * 100.0,
            istio_p99,
            generic_p99_ms: generic_p99 * 1000.0,
            linkerd_success: l_ok.unwrap() / l_all.unwrap() * 100.0,
            linkerd_p99,
            osm_success: o_ok.unwrap() / o_all.unwrap() * 100.0,
            osm_p99,
            nginx_success: n_ok.unwrap() / n_all.unwrap() * 100.0,
            nginx_avg_ms: sum.unwrap() / count.unwrap() * 1000.0,
        }
    }

    fn assert_exact(what: &str, got: f64, want: f64) {
        assert!((got - want).abs() <= 1e-9 * want.max(1.0), "{what}: got {got}, want {want}");
    }

    fn check(db: &Tsdb, at: f64, istio: &IstioSpec, nginx: &NginxSpec) {
        let o = built_ins(db, at);
        assert_exact("istio success rate", o.istio_success, (1.0 - istio.error_rate) * 100.0);
        assert_exact("istio p99", o.istio_p99, istio.latency_ms);
        assert_exact("generic p99", o.generic_p99_ms, istio.latency_ms);
        assert_exact("linkerd success rate", o.linkerd_success, (1.0 - istio.error_rate) * 100.0);
        assert_exact("linkerd p99", o.linkerd_p99, istio.latency_ms);
        assert_exact("osm success rate", o.osm_success, (1.0 - istio.error_rate) * 100.0);
        assert_exact("osm p99", o.osm_p99, istio.latency_ms);
        assert_exact("nginx success rate", o.nginx_success, (1.0 - nginx.error_rate) * 100.0);
        assert_exact("nginx average", o.nginx_avg_ms, nginx.latency_ms);
    }

    #[test]
    fn built_in_queries_return_the_configured_values() {
        let t0 = Instant::now();
        let mut sim = Sim::new();
        let mut db = Tsdb::default();
        let cart = Key::new("shop", "cart", "workload").unwrap();
        let web = Key::new("shop", "web", "ingress").unwrap();
        // Same-named workload elsewhere: the namespace matcher must keep it out.
        let decoy = Key::new("other", "cart", "workload").unwrap();

        let istio = IstioSpec { rps: 7.0, error_rate: 0.13, latency_ms: 333.3 };
        let nginx = NginxSpec { rps: 3.0, error_rate: 0.07, latency_ms: 120.5, primary_rps: 40.0 };
        sim.put_istio(cart.clone(), &istio, t0).unwrap();
        sim.put_nginx(web.clone(), &nginx, t0).unwrap();
        let decoy_spec = IstioSpec { rps: 50.0, error_rate: 0.9, latency_ms: 5.0 };
        sim.put_istio(decoy, &decoy_spec, t0).unwrap();
        scrape(&mut sim, &mut db, t0, 0, 40);
        // Young series (window reaching back before the first sample) and a full window.
        check(&db, 10.0, &istio, &nginx);
        check(&db, 39.5, &istio, &nginx);

        // Changed at run time: exact again once the window no longer spans the change.
        let t_change = Duration::from_secs_f64(40.1);
        let istio2 = IstioSpec { rps: 20.0, error_rate: 0.5, latency_ms: 80.0 };
        let nginx2 = NginxSpec { rps: 0.5, error_rate: 0.25, latency_ms: 1000.0, primary_rps: 0.0 };
        sim.put_istio(cart, &istio2, t0 + t_change).unwrap();
        sim.put_nginx(web, &nginx2, t0 + t_change).unwrap();
        scrape(&mut sim, &mut db, t0, 40, 80);
        let mid = built_ins(&db, 55.0);
        assert!(mid.istio_success > 50.0 && mid.istio_success < 87.0, "a window over the change blends both");
        assert!((mid.linkerd_success - mid.istio_success).abs() < 1e-9, "the same counters");
        check(&db, 72.0, &istio2, &nginx2);
    }

    #[test]
    fn zero_error_rate_and_zero_latency_are_exact_too() {
        let t0 = Instant::now();
        let mut sim = Sim::new();
        let mut db = Tsdb::default();
        let istio = IstioSpec { rps: 1.0, error_rate: 0.0, latency_ms: 0.0 };
        let nginx = NginxSpec { rps: 1.0, error_rate: 1.0, latency_ms: 0.0, primary_rps: 1.0 };
        sim.put_istio(Key::new("shop", "cart", "workload").unwrap(), &istio, t0).unwrap();
        sim.put_nginx(Key::new("shop", "web", "ingress").unwrap(), &nginx, t0).unwrap();
        scrape(&mut sim, &mut db, t0, 0, 35);
        check(&db, 34.0, &istio, &nginx);
    }
}
