//! A fixed-size latency histogram with about 1% relative precision, so that a run of any length
//! (an hour at thousands of requests per second) reports percentiles in constant memory.

use std::time::Duration;

/// Bits kept below the leading bit: values under 2^8 µs are exact, larger ones fall in buckets at
/// most 1/128 (0.8%) of their value wide.
const SUB_BITS: u32 = 8;
const SUB: u64 = 1 << SUB_BITS;
const HALF: u64 = SUB / 2;
/// Values up to 2^40 µs (about 12.7 days) are distinguished; longer ones share the last bucket.
const MAX_SHIFT: u64 = 40 - SUB_BITS as u64;
const BUCKETS: usize = (SUB + MAX_SHIFT * HALF) as usize;

/// Latency histogram in microseconds with log-linear buckets.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    sum_micros: u128,
    max_micros: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0, sum_micros: 0, max_micros: 0 }
    }
}

fn index_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let leading_bit = u64::from(63 - v.leading_zeros());
    let shift = leading_bit - u64::from(SUB_BITS) + 1;
    if shift > MAX_SHIFT {
        return BUCKETS - 1;
    }
    let mantissa = v >> shift; // in [HALF, SUB)
    (SUB + (shift - 1) * HALF + (mantissa - HALF)) as usize
}

/// The largest value that falls in bucket `i` (percentiles report this upper bound, so they
/// never understate latency).
fn upper_of(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let j = i - SUB;
    let shift = j / HALF + 1;
    let mantissa = j % HALF + HALF;
    ((mantissa + 1) << shift) - 1
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[index_of(micros)] += 1;
        self.total += 1;
        self.sum_micros += u128::from(micros);
        self.max_micros = self.max_micros.max(micros);
    }

    /// Adds another histogram's samples to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum_micros += other.sum_micros;
        self.max_micros = self.max_micros.max(other.max_micros);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q`-quantile (0..=1) by nearest rank, as the upper bound of its bucket, capped at the
    /// largest sample; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_micros(upper_of(i).min(self.max_micros)));
            }
        }
        Some(Duration::from_micros(self.max_micros))
    }

    /// Mean latency; `None` when empty.
    pub fn mean(&self) -> Option<Duration> {
        (self.total > 0).then(|| Duration::from_micros((self.sum_micros / u128::from(self.total)) as u64))
    }

    /// Largest latency; `None` when empty.
    pub fn max(&self) -> Option<Duration> {
        (self.total > 0).then(|| Duration::from_micros(self.max_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        // Every value maps to a bucket whose upper bound is >= the value and within 1%.
        let mut last = 0;
        for v in (0..5_000_000u64).step_by(7).chain([u64::from(u32::MAX), 1 << 39]) {
            let i = index_of(v);
            assert!(i >= last, "index not monotonic at {v}");
            last = i;
            let up = upper_of(i);
            assert!(up >= v, "{v} above its bucket's upper bound {up}");
            assert!((up - v) as f64 <= v as f64 / 100.0 + 1.0, "bucket too wide at {v}: {up}");
        }
        assert_eq!(index_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn exact_below_256_microseconds() {
        for v in 0..256 {
            assert_eq!(upper_of(index_of(v)), v);
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let within = |got: Duration, want_ms: u64| {
            let want = Duration::from_millis(want_ms);
            assert!(got >= want && got <= want + want / 100, "got {got:?}, want ~{want:?}");
        };
        within(h.quantile(0.5).unwrap(), 50);
        within(h.quantile(0.9).unwrap(), 90);
        within(h.quantile(0.99).unwrap(), 99);
        assert_eq!(h.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(h.max(), Some(Duration::from_millis(100)));
        assert_eq!(h.mean(), Some(Duration::from_micros(50_500)));
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn merge_adds_samples() {
        let mut a = LatencyHistogram::default();
        let mut b = LatencyHistogram::default();
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        b.record(Duration::from_millis(5));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max(), Some(Duration::from_millis(5)));
        assert_eq!(a.mean(), Some(Duration::from_millis(3)));
    }
}
