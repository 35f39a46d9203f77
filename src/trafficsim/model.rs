//! One stream of simulated traffic: its rates, its counters and its latency histogram.
//!
//! Everything here is pure: the caller passes the clock in, so the integration can be tested to the
//! last bit without sleeping.

use std::time::Instant;

use thiserror::Error;

/// Upper bound on `rps` and `primaryRps`.
pub const MAX_RPS: f64 = 100_000.0;
/// Upper bound on `latencyMs`; real requests may sleep up to 1.5 times this.
pub const MAX_LATENCY_MS: f64 = 30_000.0;
/// Smallest non-zero `latencyMs`: below it the ±50 % spread would round to nothing (see [`Profile`]).
pub const MIN_NONZERO_LATENCY_MS: f64 = 0.01;
/// Histogram buckets one stream may add on top of its defaults (three per distinct latency).
pub const MAX_EXTRA_BUCKETS: usize = 45;

/// Istio's default `istio_request_duration_milliseconds` buckets, in microseconds.
pub const ISTIO_BUCKETS_US: [u64; 19] = [
    1_000,
    2_000,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    600_000_000,
    1_800_000_000,
    3_600_000_000,
];

/// The Prometheus client default buckets (NGINX ingress uses them for response durations), in µs.
pub const DEFAULT_BUCKETS_US: [u64; 11] =
    [5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000];

/// Why a traffic profile was refused.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SpecError {
    #[error("{field} must be a number from {min} to {max}, got {value}")]
    OutOfRange { field: &'static str, value: f64, min: f64, max: f64 },
    #[error("latencyMs must be 0 or at least {MIN_NONZERO_LATENCY_MS}, got {0}")]
    LatencyTooSmall(f64),
    #[error(
        "this stream has used too many distinct latencies ({MAX_EXTRA_BUCKETS} extra histogram buckets); \
         DELETE it and create it again"
    )]
    TooManyBuckets,
}

fn check_range(field: &'static str, value: f64, min: f64, max: f64) -> Result<f64, SpecError> {
    // `contains` is false for NaN, so NaN is refused too.
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(SpecError::OutOfRange { field, value, min, max })
    }
}

/// Validated rates of one stream.
///
/// Latencies are distributed so that both the p99 (Istio's query) and the mean (NGINX's query) equal
/// the configured latency `L`: 1 % of requests take `L - d`, 98 % take `L`, 1 % take `L + d`, with
/// `d` one microsecond (none for `L = 0`). The mean is `L` because the two tails are symmetric; the
/// p99 is `L` because exactly 99 % are at or below it and `L` is a bucket boundary.
///
/// Through Prometheus "exactly 99 %" holds only to a few ulps, and when `0.99 × total` comes out
/// above the `le=L` count, `histogram_quantile` interpolates in the next bucket that holds more.
/// That bucket must be `(L, L + d]`, so the answer stays within a hair of `L`; with a wider tail
/// a default bound in between (1000 ms for `L` = 800 ms) would become the answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    rps: f64,
    error_rate: f64,
    latency_us: u64,
}

impl Profile {
    /// Validates the three numbers a client sends. The latency is rounded to a whole microsecond so
    /// that bucket boundaries are exact and render the same way on every scrape.
    pub fn new(rps: f64, error_rate: f64, latency_ms: f64) -> Result<Self, SpecError> {
        let rps = check_range("rps", rps, 0.0, MAX_RPS)?;
        let error_rate = check_range("errorRate", error_rate, 0.0, 1.0)?;
        let latency_ms = check_range("latencyMs", latency_ms, 0.0, MAX_LATENCY_MS)?;
        if latency_ms > 0.0 && latency_ms < MIN_NONZERO_LATENCY_MS {
            return Err(SpecError::LatencyTooSmall(latency_ms));
        }
        Ok(Self { rps, error_rate, latency_us: (latency_ms * 1000.0).round() as u64 })
    }

    pub fn rps(&self) -> f64 {
        self.rps
    }

    pub fn error_rate(&self) -> f64 {
        self.error_rate
    }

    /// The latency actually used (rounded to a microsecond), in milliseconds.
    pub fn latency_ms(&self) -> f64 {
        us_to_ms(self.latency_us)
    }

    /// The same profile with another request rate and no errors (NGINX's primary stream).
    pub fn healthy_at(&self, rps: f64) -> Result<Self, SpecError> {
        Ok(Self { rps: check_range("primaryRps", rps, 0.0, MAX_RPS)?, error_rate: 0.0, ..*self })
    }

    /// `(fast, nominal, slow)` latencies in µs; every observation takes one of them.
    fn latency_points(&self) -> [u64; 3] {
        let d = self.latency_us.min(1);
        [self.latency_us - d, self.latency_us, self.latency_us + d]
    }

    /// Share of synthetic observations at or below `bound_us`.
    fn fraction_at_or_below(&self, bound_us: u64) -> f64 {
        let [fast, nominal, slow] = self.latency_points();
        if bound_us >= slow {
            1.0
        } else if bound_us >= nominal {
            0.99
        } else if bound_us >= fast {
            0.01
        } else {
            0.0
        }
    }
}

pub(crate) fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

/// Counters of one response class (2xx or 5xx): a Prometheus histogram plus its request count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Requests, which is also the histogram's `_count` and its `+Inf` bucket.
    pub count: f64,
    /// Sum of latencies in milliseconds.
    pub sum_ms: f64,
    /// Cumulative bucket counts, one per bound of the owning [`Traffic`].
    pub buckets: Vec<f64>,
}

/// Which response a real request gets and how long it takes, decided before it sleeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealRequest {
    pub error: bool,
    pub latency_us: u64,
}

/// One stream of traffic: synthetic requests at the profile's rate, plus real requests recorded one
/// by one. All counters only ever grow.
///
/// Invariant: every observation ever recorded sits exactly on one of `bounds_us`, and bounds are never
/// removed. So a bound inserted later starts with the cumulative count of the bound below it, and
/// the histogram stays exact across any number of profile changes.
#[derive(Clone, Debug)]
pub struct Traffic {
    profile: Profile,
    bounds_us: Vec<u64>,
    default_buckets: usize,
    ok: Series,
    err: Series,
    last: Instant,
    /// Real requests since the last profile change: drives the running ratios, so that a new error
    /// rate applies from the next request on.
    real_seq: u64,
    real_total: u64,
}

impl Traffic {
    pub fn new(profile: Profile, default_bounds_us: &[u64], now: Instant) -> Result<Self, SpecError> {
        let mut bounds_us = default_bounds_us.to_vec();
        bounds_us.sort_unstable();
        bounds_us.dedup();
        let n = bounds_us.len();
        let empty = Series { count: 0.0, sum_ms: 0.0, buckets: vec![0.0; n] };
        let mut traffic = Self {
            profile,
            bounds_us,
            default_buckets: n,
            ok: empty.clone(),
            err: empty,
            last: now,
            real_seq: 0,
            real_total: 0,
        };
        traffic.set_profile(profile, now)?;
        Ok(traffic)
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn bounds_us(&self) -> &[u64] {
        &self.bounds_us
    }

    /// Successful (non-5xx) requests.
    pub fn ok(&self) -> &Series {
        &self.ok
    }

    /// Failed (5xx) requests.
    pub fn errors(&self) -> &Series {
        &self.err
    }

    /// Real requests recorded so far.
    pub fn real_total(&self) -> u64 {
        self.real_total
    }

    /// Adds the synthetic requests of the time since the last call, at the current profile.
    pub fn advance(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        self.last = now;
        let requests = self.profile.rps * dt;
        let failed = requests * self.profile.error_rate;
        let classes = [(&mut self.ok, requests - failed), (&mut self.err, failed)];
        for (series, n) in classes {
            series.count += n;
            // The mean of the three-point distribution is the nominal latency.
            series.sum_ms += n * self.profile.latency_ms();
            for (bucket, &bound) in series.buckets.iter_mut().zip(&self.bounds_us) {
                *bucket += n * self.profile.fraction_at_or_below(bound);
            }
        }
    }

    /// Integrates the old profile up to `now`, then switches to the new one. Refuses (changing
    /// nothing) if the new latency would need more buckets than allowed.
    pub fn set_profile(&mut self, profile: Profile, now: Instant) -> Result<(), SpecError> {
        let points = profile.latency_points();
        let mut missing: Vec<u64> =
            points.iter().copied().filter(|p| self.bounds_us.binary_search(p).is_err()).collect();
        missing.dedup();
        if self.bounds_us.len() + missing.len() > self.default_buckets + MAX_EXTRA_BUCKETS {
            return Err(SpecError::TooManyBuckets);
        }
        self.advance(now);
        for bound in missing {
            self.insert_bound(bound);
        }
        self.profile = profile;
        self.real_seq = 0;
        Ok(())
    }

    fn insert_bound(&mut self, bound: u64) {
        let Err(at) = self.bounds_us.binary_search(&bound) else { return };
        self.bounds_us.insert(at, bound);
        for series in [&mut self.ok, &mut self.err] {
            // No observation lies strictly between the neighbours (they all sit on bounds), so the
            // new bucket holds exactly what the one below it holds.
            let below = if at == 0 { 0.0 } else { series.buckets[at - 1] };
            series.buckets.insert(at, below);
        }
    }

    /// Decides the next real request: the `n`-th since the last profile change fails when
    /// `floor(n * errorRate)` steps up, so any run of requests fails in the configured proportion
    /// (±1); of each hundred, one is fast, one is slow and the rest nominal.
    pub fn next_real(&mut self) -> RealRequest {
        self.real_seq += 1;
        let n = self.real_seq as f64;
        // The epsilon keeps e.g. 5 × 0.2 from landing just under 1.0.
        let failures = |k: f64| (k * self.profile.error_rate + 1e-9).floor();
        let error = failures(n) > failures(n - 1.0);
        let [fast, nominal, slow] = self.profile.latency_points();
        let latency_us = match self.real_seq % 100 {
            50 => fast,
            0 => slow,
            _ => nominal,
        };
        RealRequest { error, latency_us }
    }

    /// Records a real request decided by [`Traffic::next_real`] on this same stream.
    pub fn record_real(&mut self, request: RealRequest) {
        // Bounds are never removed, so the latency decided earlier is still a bound.
        let Ok(at) = self.bounds_us.binary_search(&request.latency_us) else { return };
        let series = if request.error { &mut self.err } else { &mut self.ok };
        series.count += 1.0;
        series.sum_ms += us_to_ms(request.latency_us);
        for bucket in &mut series.buckets[at..] {
            *bucket += 1.0;
        }
        self.real_total += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(t0: Instant, secs: f64) -> Instant {
        t0 + Duration::from_secs_f64(secs)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn profile_validation() {
        assert!(Profile::new(10.0, 0.2, 250.0).is_ok());
        assert!(Profile::new(0.0, 0.0, 0.0).is_ok());
        assert!(matches!(Profile::new(-1.0, 0.0, 1.0), Err(SpecError::OutOfRange { field: "rps", .. })));
        assert!(matches!(Profile::new(1.0, 1.5, 1.0), Err(SpecError::OutOfRange { field: "errorRate", .. })));
        assert!(matches!(Profile::new(1.0, f64::NAN, 1.0), Err(SpecError::OutOfRange { .. })));
        assert!(matches!(Profile::new(1.0, 0.0, 1e9), Err(SpecError::OutOfRange { field: "latencyMs", .. })));
        assert_eq!(Profile::new(1.0, 0.0, 0.001), Err(SpecError::LatencyTooSmall(0.001)));
        assert_eq!(Profile::new(1.0, 0.0, 12.3456789).unwrap().latency_ms(), 12.346);
    }

    #[test]
    fn counters_integrate_piecewise_and_never_decrease() {
        let t0 = Instant::now();
        let mut t = Traffic::new(Profile::new(10.0, 0.2, 250.0).unwrap(), &ISTIO_BUCKETS_US, t0).unwrap();
        t.advance(at(t0, 3.0));
        assert!(close(t.ok().count, 24.0) && close(t.errors().count, 6.0));
        let before = (t.ok().clone(), t.errors().clone());
        t.set_profile(Profile::new(100.0, 0.5, 40.0).unwrap(), at(t0, 5.0)).unwrap();
        // The change integrates the old profile up to the switch: 2 s more at 10 rps.
        assert!(close(t.ok().count, 40.0) && close(t.errors().count, 10.0));
        t.advance(at(t0, 6.0));
        assert!(close(t.ok().count, 90.0) && close(t.errors().count, 60.0));
        // Sum of latencies: 50 requests at 250 ms, 100 at 40 ms.
        assert!(close(t.ok().sum_ms + t.errors().sum_ms, 50.0 * 250.0 + 100.0 * 40.0));
        for (old, new) in [(&before.0, t.ok()), (&before.1, t.errors())] {
            assert!(new.count >= old.count && new.sum_ms >= old.sum_ms);
            // Old buckets are a subset of the new ones, each of which may only have grown.
            for (bound, old_value) in ISTIO_BUCKETS_US.iter().zip(&old.buckets) {
                let i = t.bounds_us().binary_search(bound).unwrap();
                assert!(new.buckets[i] >= *old_value);
            }
        }
        // The clock going backwards adds nothing.
        let snapshot = t.ok().clone();
        t.advance(at(t0, 1.0));
        assert_eq!(t.ok(), &snapshot);
    }

    #[test]
    fn histogram_puts_99_percent_at_or_below_the_latency() {
        let t0 = Instant::now();
        let mut t = Traffic::new(Profile::new(50.0, 0.0, 300.0).unwrap(), &ISTIO_BUCKETS_US, t0).unwrap();
        t.advance(at(t0, 10.0));
        let bounds = t.bounds_us().to_vec();
        // 300 ms is not a default bucket; it and the tails (299.999, 300.001 ms) were added.
        for b in [299_999, 300_000, 300_001] {
            assert!(bounds.contains(&b));
        }
        let s = t.ok();
        let cum = |b: u64| s.buckets[bounds.binary_search(&b).unwrap()];
        assert!(close(s.count, 500.0));
        assert_eq!(cum(100_000), 0.0);
        assert!(close(cum(250_000), 0.0));
        assert!(close(cum(299_999), 5.0));
        assert!(close(cum(300_000), 495.0));
        assert!(close(cum(300_001), 500.0));
        assert!(close(cum(500_000), 500.0));
        assert!(close(cum(3_600_000_000), 500.0));
        assert!(close(s.sum_ms / s.count, 300.0));
        for w in s.buckets.windows(2) {
            assert!(w[0] <= w[1], "cumulative buckets must not decrease: {:?}", s.buckets);
        }
    }

    #[test]
    fn inserted_bound_starts_at_the_count_below_it() {
        let t0 = Instant::now();
        let mut t = Traffic::new(Profile::new(10.0, 0.0, 100.0).unwrap(), &ISTIO_BUCKETS_US, t0).unwrap();
        t.advance(at(t0, 10.0));
        // 100 requests: 1 at 99.999 ms, 98 at 100 ms, 1 at 100.001 ms. New bounds start at the count
        // of the bound below them: 120 ms and its tails at all 100, 80 ms and its tails at none.
        t.set_profile(Profile::new(10.0, 0.0, 120.0).unwrap(), at(t0, 10.0)).unwrap();
        t.set_profile(Profile::new(10.0, 0.0, 80.0).unwrap(), at(t0, 10.0)).unwrap();
        let cum = |b: u64| t.ok().buckets[t.bounds_us().binary_search(&b).unwrap()];
        for (bound, count) in [
            (79_999, 0.0),
            (80_000, 0.0),
            (80_001, 0.0),
            (99_999, 1.0),
            (100_000, 99.0),
            (100_001, 100.0),
            (119_999, 100.0),
            (120_000, 100.0),
            (120_001, 100.0),
        ] {
            assert!(close(cum(bound), count), "bound {bound} µs: {}", cum(bound));
        }
    }

    #[test]
    fn p99_stays_at_the_latency_when_rounding_tips_the_rank_over() {
        // Through Prometheus the `le=L` rate is 99 % of the total only to a few ulps. When
        // `0.99 × total` comes out above it, histogram_quantile interpolates in the next bucket that
        // holds more: that must start at L, not at a default bound such as 1000 ms for 800 ms.
        let t0 = Instant::now();
        for latency in [0.05, 20.0, 333.3, 800.0, 2000.0] {
            let profile = Profile::new(20.0, 0.0, latency).unwrap();
            let mut t = Traffic::new(profile, &ISTIO_BUCKETS_US, t0).unwrap();
            t.advance(at(t0, 30.0));
            let mut buckets: Vec<(f64, f64)> =
                t.bounds_us().iter().map(|b| us_to_ms(*b)).zip(t.ok().buckets.iter().copied()).collect();
            buckets.push((f64::INFINITY, t.ok().count));
            for q in [0.99, 0.99 * (1.0 + 1e-12), 0.99 * (1.0 - 1e-12)] {
                let p99 = crate::trafficsim::promql_model::quantile(q, buckets.clone());
                assert!((p99 - latency).abs() < 1e-9, "L = {latency} ms, q = {q}: p99 {p99}");
            }
        }
    }

    #[test]
    fn too_many_distinct_latencies_are_refused_without_change() {
        let t0 = Instant::now();
        let mut t = Traffic::new(Profile::new(1.0, 0.0, 1.0).unwrap(), &ISTIO_BUCKETS_US, t0).unwrap();
        let mut latency = 1.0;
        let result = loop {
            latency += 1.0;
            match t.set_profile(Profile::new(1.0, 0.0, latency).unwrap(), t0) {
                Ok(()) => assert!(latency < 100.0, "the bucket limit never applied"),
                Err(e) => break e,
            }
        };
        assert_eq!(result, SpecError::TooManyBuckets);
        assert!(t.bounds_us().len() <= ISTIO_BUCKETS_US.len() + MAX_EXTRA_BUCKETS);
        assert_eq!(t.profile().latency_ms(), latency - 1.0);
    }

    #[test]
    fn real_requests_follow_running_ratios() {
        let t0 = Instant::now();
        let mut t = Traffic::new(Profile::new(0.0, 0.2, 20.0).unwrap(), &ISTIO_BUCKETS_US, t0).unwrap();
        let decided: Vec<RealRequest> = (0..100).map(|_| t.next_real()).collect();
        for (i, r) in decided.iter().enumerate() {
            // Every fifth request fails, whatever the prefix length.
            assert_eq!(r.error, (i + 1) % 5 == 0, "request {}", i + 1);
        }
        let slow = decided.iter().filter(|r| r.latency_us == 20_001).count();
        let fast = decided.iter().filter(|r| r.latency_us == 19_999).count();
        assert_eq!((fast, slow), (1, 1));
        for r in decided {
            t.record_real(r);
        }
        assert_eq!((t.ok().count, t.errors().count, t.real_total()), (80.0, 20.0, 100));
        assert!(close((t.ok().sum_ms + t.errors().sum_ms) / 100.0, 20.0));
        // A new error rate restarts the ratio.
        t.set_profile(Profile::new(0.0, 1.0, 20.0).unwrap(), t0).unwrap();
        assert!(t.next_real().error);
        t.set_profile(Profile::new(0.0, 0.0, 20.0).unwrap(), t0).unwrap();
        assert!(!(0..50).any(|_| t.next_real().error));
    }

    #[test]
    fn zero_latency_is_a_single_bucket() {
        let t0 = Instant::now();
        let mut t = Traffic::new(Profile::new(4.0, 0.0, 0.0).unwrap(), &DEFAULT_BUCKETS_US, t0).unwrap();
        t.advance(at(t0, 1.0));
        assert_eq!(t.bounds_us()[0], 0);
        assert!(close(t.ok().buckets[0], 4.0));
        assert_eq!(t.ok().sum_ms, 0.0);
    }
}
