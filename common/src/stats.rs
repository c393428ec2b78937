//! Latency histograms shared by the targets' counters: relaxed atomics, fixed buckets, no
//! allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets (the last bucket has none): service time from the
/// `now` the worker read for the frame's receive batch to its reply handed to the transmit
/// path ([`Transmit::now`](crate::io::Transmit::now)).
pub const LATENCY_BOUNDS: [Duration; 12] = [
    Duration::from_micros(10),
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_secs(1),
];

/// A latency histogram of relaxed atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

/// A plain copy of a [`Histogram`]: counts per bucket (not cumulative), their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub buckets: [u64; LATENCY_BOUNDS.len() + 1],
    pub sum_ns: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let i = LATENCY_BOUNDS
            .iter()
            .position(|&b| d <= b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::default();
        h.record(Duration::from_micros(3));
        h.record(Duration::from_micros(10));
        h.record(Duration::from_micros(11));
        h.record(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 2, "<= 10 us");
        assert_eq!(s.buckets[1], 1, "<= 50 us");
        assert_eq!(s.buckets[LATENCY_BOUNDS.len()], 1, "+Inf");
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum_ns, 3_000 + 10_000 + 11_000 + 5_000_000_000);
    }
}
