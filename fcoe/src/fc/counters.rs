//! Per-LUN and per-initiator I/O counters of the FC port. The port is under one mutex, so the
//! counts are plain integers; the latency histograms are the shared atomic ones.
//!
//! Only LUNs that exist are counted by LUN (a command to an absent LUN counts for its
//! initiator and the port), and at most [`MAX_INITIATORS`] initiator WWPNs one by one; the
//! rest go to one "other" entry, so no peer can grow the tables without end.

use std::collections::BTreeMap;
use std::time::Duration;

use l2san_common::stats::{Histogram, HistogramSnapshot};

use crate::wire::Wwn;

/// Most initiator WWPNs counted one by one.
pub const MAX_INITIATORS: usize = 1024;

/// What was done through one LUN or by one initiator.
#[derive(Debug, Default)]
pub(crate) struct IoCounters {
    reads: u64,
    writes: u64,
    read_bytes: u64,
    write_bytes: u64,
    errors: u64,
    latency: Histogram,
}

/// A plain copy of the counters of a LUN or an initiator, with the writes now waiting for data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStatsSnapshot {
    /// READ and WRITE commands completed with GOOD status, and their bytes.
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Commands answered with CHECK CONDITION.
    pub errors: u64,
    /// Service times of READ and WRITE: command (or, for writes, the command's arrival) to
    /// status handed to the transmit path.
    pub latency: HistogramSnapshot,
    /// Writes waiting for their data now.
    pub outstanding: u64,
}

impl IoCounters {
    fn snapshot(&self, outstanding: u64) -> IoStatsSnapshot {
        IoStatsSnapshot {
            reads: self.reads,
            writes: self.writes,
            read_bytes: self.read_bytes,
            write_bytes: self.write_bytes,
            errors: self.errors,
            latency: self.latency.snapshot(),
            outstanding,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Done {
    Read { bytes: u64, took: Duration },
    Write { bytes: u64, took: Duration },
    Error,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    luns: BTreeMap<u16, IoCounters>,
    initiators: BTreeMap<Wwn, IoCounters>,
    other: IoCounters,
}

impl Counters {
    /// Count `done` for LUN `lun` (when it exists) and initiator `wwpn`.
    pub(crate) fn record(&mut self, lun: Option<u16>, wwpn: Wwn, done: Done) {
        if let Some(n) = lun {
            apply(self.luns.entry(n).or_default(), done);
        }
        let full = self.initiators.len() >= MAX_INITIATORS;
        let c = match self.initiators.get_mut(&wwpn) {
            Some(c) => c,
            None if full => &mut self.other,
            None => self.initiators.entry(wwpn).or_default(),
        };
        apply(c, done);
    }

    /// Counters by LUN; `outstanding(n)` gives each LUN's writes waiting for data.
    pub(crate) fn luns(&self, outstanding: impl Fn(u16) -> u64) -> Vec<(u16, IoStatsSnapshot)> {
        self.luns
            .iter()
            .map(|(&n, c)| (n, c.snapshot(outstanding(n))))
            .collect()
    }

    /// Counters by initiator WWPN (`None`: those past [`MAX_INITIATORS`]).
    pub(crate) fn initiators(
        &self,
        outstanding: impl Fn(Wwn) -> u64,
    ) -> Vec<(Option<Wwn>, IoStatsSnapshot)> {
        let mut out: Vec<_> = self
            .initiators
            .iter()
            .map(|(&w, c)| (Some(w), c.snapshot(outstanding(w))))
            .collect();
        let other = self.other.snapshot(0);
        if other != IoStatsSnapshot::default() {
            out.push((None, other));
        }
        out
    }
}

fn apply(c: &mut IoCounters, done: Done) {
    match done {
        Done::Read { bytes, took } => {
            c.reads += 1;
            c.read_bytes += bytes;
            c.latency.record(took);
        }
        Done::Write { bytes, took } => {
            c.writes += 1;
            c.write_bytes += bytes;
            c.latency.record(took);
        }
        Done::Error => c.errors += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luns_and_initiators_are_counted_and_bounded() {
        let mut c = Counters::default();
        let a = Wwn(0x2000_0000_0000_0001);
        let ms = Duration::from_millis(1);
        c.record(
            Some(0),
            a,
            Done::Read {
                bytes: 512,
                took: ms,
            },
        );
        c.record(
            Some(1),
            a,
            Done::Write {
                bytes: 1024,
                took: ms,
            },
        );
        c.record(None, a, Done::Error);
        let luns = c.luns(|n| u64::from(n) * 7);
        assert_eq!(luns.len(), 2);
        assert_eq!((luns[0].1.reads, luns[0].1.read_bytes), (1, 512));
        assert_eq!((luns[1].1.writes, luns[1].1.outstanding), (1, 7));
        let ini = c.initiators(|_| 0);
        assert_eq!(ini.len(), 1);
        assert_eq!(
            (ini[0].1.reads, ini[0].1.writes, ini[0].1.errors),
            (1, 1, 1)
        );
        assert_eq!(ini[0].1.latency.count(), 2);
        for i in 0..MAX_INITIATORS as u64 + 5 {
            c.record(None, Wwn(0x1000 + i), Done::Error);
        }
        let ini = c.initiators(|_| 0);
        assert_eq!(ini.len(), MAX_INITIATORS + 1);
        assert_eq!(ini.last().unwrap().0, None);
        assert_eq!(ini.last().unwrap().1.errors, 6);
    }
}
