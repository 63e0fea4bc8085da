//! Latency histograms (HDR, microsecond resolution) and the percentile summaries built from them.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram holds: 10 minutes, in microseconds. Larger values are clamped.
const HIGHEST_US: u64 = 600_000_000;
/// Three significant digits: every recorded value is exact to within 0.1 %.
const SIGFIG: u8 = 3;

/// One latency distribution, in microseconds.
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    /// An empty histogram covering 1 µs to 10 min.
    pub fn new() -> Hist {
        // The bounds are constants that hdrhistogram accepts (low ≥ 1, high ≥ 2·low, sigfig ≤ 5).
        match Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG) {
            Ok(h) => Hist(h),
            Err(_) => unreachable!("constant histogram bounds are valid"),
        }
    }

    /// Records one duration (clamped to the histogram's range; sub-microsecond values count as 1 µs).
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(HIGHEST_US);
        self.0.saturating_record(us.clamp(1, HIGHEST_US));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Hist) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at quantile `q` (0..=1) in microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    /// Count, mean and the usual percentiles, in milliseconds.
    pub fn summary(&self) -> Summary {
        let ms = |us: u64| us as f64 / 1000.0;
        if self.0.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.0.len(),
            mean_ms: self.0.mean() / 1000.0,
            min_ms: ms(self.0.min()),
            p50_ms: ms(self.quantile_us(0.50)),
            p90_ms: ms(self.quantile_us(0.90)),
            p99_ms: ms(self.quantile_us(0.99)),
            p999_ms: ms(self.quantile_us(0.999)),
            max_ms: ms(self.0.max()),
        }
    }
}

/// A latency distribution reduced to a few numbers (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// The exact nearest-rank percentile of `sorted` (ascending): the smallest value with at least
/// `q · n` samples at or below it. The reference the HDR figures are checked against.
pub fn nearest_rank(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_of(values: &[u64]) -> Hist {
        let mut h = Hist::new();
        for &v in values {
            h.record(Duration::from_micros(v));
        }
        h
    }

    /// HDR quantiles are within the histogram's precision (0.1 %, +1 µs) of the exact ones.
    fn assert_close(hdr: u64, exact: u64) {
        let tol = exact / 1000 + 1;
        assert!(hdr.abs_diff(exact) <= tol, "hdr {hdr} vs exact {exact}");
    }

    #[test]
    fn nearest_rank_matches_the_definition() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(50));
        assert_eq!(nearest_rank(&v, 0.99), Some(99));
        assert_eq!(nearest_rank(&v, 0.999), Some(100));
        assert_eq!(nearest_rank(&v, 0.0), Some(1));
        assert_eq!(nearest_rank(&v, 1.0), Some(100));
        assert_eq!(nearest_rank(&[7], 0.5), Some(7));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }

    #[test]
    fn uniform_percentiles() {
        let v: Vec<u64> = (1..=10_000).collect();
        let h = hist_of(&v);
        assert_eq!(h.count(), 10_000);
        for q in [0.5, 0.9, 0.99, 0.999] {
            let exact = nearest_rank(&v, q).unwrap_or_default();
            assert_close(h.quantile_us(q), exact);
        }
        let s = h.summary();
        assert!((s.mean_ms - 5.0005).abs() < 0.01, "{s:?}");
        assert!((s.min_ms - 0.001).abs() < 1e-9);
        assert!((s.max_ms - 10.0).abs() < 0.011, "{s:?}");
    }

    #[test]
    fn skewed_percentiles_against_exact() {
        // A long-tailed mix: 98 % fast (100–199 µs), 2 % slow (20–40 ms).
        let mut v = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(if i % 50 == 0 {
                20_000 + x % 20_000
            } else {
                100 + x % 100
            });
        }
        let h = hist_of(&v);
        v.sort_unstable();
        for q in [0.5, 0.9, 0.98, 0.99, 0.999] {
            let exact = nearest_rank(&v, q).unwrap_or_default();
            assert_close(h.quantile_us(q), exact);
        }
    }

    #[test]
    fn merge_equals_recording_everything_once() {
        let a: Vec<u64> = (1..=500).collect();
        let b: Vec<u64> = (501..=1000).map(|v| v * 3).collect();
        let mut merged = hist_of(&a);
        merged.merge(&hist_of(&b));
        let all: Vec<u64> = a.iter().chain(b.iter()).copied().collect();
        let once = hist_of(&all);
        assert_eq!(merged.count(), 1000);
        for q in [0.1, 0.5, 0.75, 0.99] {
            assert_eq!(merged.quantile_us(q), once.quantile_us(q));
        }
    }

    #[test]
    fn empty_and_out_of_range() {
        let h = Hist::new();
        assert_eq!(h.quantile_us(0.99), 0);
        assert_eq!(h.summary(), Summary::default());
        let mut h = Hist::new();
        h.record(Duration::from_nanos(10)); // below 1 µs: counted as 1 µs
        h.record(Duration::from_secs(3600)); // above the range: clamped
        assert_eq!(h.count(), 2);
        assert_eq!(h.quantile_us(0.0), 1);
        assert_close(h.quantile_us(1.0), HIGHEST_US);
    }
}
