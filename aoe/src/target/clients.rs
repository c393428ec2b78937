//! Per-client counters: one entry per source MAC that addressed one of the target's exports,
//! with its I/O, its refusals and a latency histogram.
//!
//! The table is bounded: after [`MAX_CLIENTS`] MACs, newcomers are counted together in one
//! "other" entry, so that a host sending from random MACs cannot grow it without end. Reads
//! on the frame path take a [`ReadMostly`] stripe and a binary search; a new client copies
//! the table once (rare: a boot farm has a fixed set of MACs).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use l2san_common::stats::Histogram;
use l2san_common::sync::{Read, ReadMostly};
use l2san_common::MacAddr;

use super::stats::counters;

/// Most clients counted one by one per target.
pub const MAX_CLIENTS: usize = 1024;

counters! {
    /// What one client did, all relaxed atomics.
    pub struct ClientStats => ClientStatsSnapshot {
        /// Commands that reached an export (after allow-list and Mac Mask List).
        pub requests: AtomicU64,
        pub reads: AtomicU64,
        pub writes: AtomicU64,
        pub bytes_read: AtomicU64,
        pub bytes_written: AtomicU64,
        /// ATA commands answered with ERR, and replies with the AoE E flag.
        pub ata_errors: AtomicU64,
        pub aoe_errors: AtomicU64,
        /// Dropped: not on the export's allow-list.
        pub not_allowed: AtomicU64,
        /// Dropped: not on a non-empty Mac Mask List.
        pub masked: AtomicU64,
        /// Dropped: a broadcast-addressed command that only unicast may carry.
        pub broadcast_refused: AtomicU64,
        /// ATA commands refused with AoE Error 6: the export is reserved by another host.
        pub reserved: AtomicU64,
        /// ATA command service times.
        pub latency: Histogram,
    }
}

type Table = Vec<(MacAddr, Arc<ClientStats>)>;

/// The clients of one target.
#[derive(Debug, Default)]
pub struct Clients {
    /// Sorted by MAC.
    table: ReadMostly<Table>,
    /// Serializes additions (readers never wait for it).
    grow: Mutex<()>,
    /// Everyone after the first [`MAX_CLIENTS`].
    overflow: ClientStats,
}

/// One client's counters, held for the handling of one frame.
pub struct Client<'a> {
    table: Option<(Read<'a, Table>, usize)>,
    overflow: &'a ClientStats,
}

impl std::ops::Deref for Client<'_> {
    type Target = ClientStats;
    fn deref(&self) -> &ClientStats {
        match &self.table {
            Some((t, i)) => &t[*i].1,
            None => self.overflow,
        }
    }
}

impl Clients {
    /// The counters of `mac`, added if new (or the "other" entry when the table is full).
    pub fn get(&self, mac: MacAddr) -> Client<'_> {
        let t = self.table.read();
        if let Ok(i) = t.binary_search_by_key(&mac, |(m, _)| *m) {
            return Client {
                table: Some((t, i)),
                overflow: &self.overflow,
            };
        }
        let full = t.len() >= MAX_CLIENTS;
        drop(t);
        if !full {
            let _g = self.grow.lock().unwrap_or_else(|e| e.into_inner());
            let t = self.table.load();
            if let Err(at) = t.binary_search_by_key(&mac, |(m, _)| *m) {
                if t.len() < MAX_CLIENTS {
                    let mut grown = Vec::with_capacity(t.len() + 1);
                    grown.extend_from_slice(&t[..at]);
                    grown.push((mac, Arc::default()));
                    grown.extend_from_slice(&t[at..]);
                    self.table.replace(grown);
                }
            }
        }
        let t = self.table.read();
        match t.binary_search_by_key(&mac, |(m, _)| *m) {
            Ok(i) => Client {
                table: Some((t, i)),
                overflow: &self.overflow,
            },
            Err(_) => Client {
                table: None,
                overflow: &self.overflow,
            },
        }
    }

    /// Every client's counters, by MAC; `None` is everyone past [`MAX_CLIENTS`] (listed only
    /// when it counted something).
    pub fn snapshot(&self) -> Vec<(Option<MacAddr>, ClientStatsSnapshot)> {
        let mut out: Vec<_> = self
            .table
            .read()
            .iter()
            .map(|(m, s)| (Some(*m), s.snapshot()))
            .collect();
        let other = self.overflow.snapshot();
        if other != ClientStatsSnapshot::default() {
            out.push((None, other));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn clients_are_counted_apart_and_the_table_is_bounded() {
        let c = Clients::default();
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        let b = MacAddr([2, 0, 0, 0, 0, 2]);
        c.get(b).requests.fetch_add(2, Ordering::Relaxed);
        c.get(a).requests.fetch_add(1, Ordering::Relaxed);
        c.get(b).requests.fetch_add(1, Ordering::Relaxed);
        let s = c.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].0, s[0].1.requests), (Some(a), 1), "sorted by MAC");
        assert_eq!((s[1].0, s[1].1.requests), (Some(b), 3));
        for i in 0..(MAX_CLIENTS + 10) as u32 {
            let mac = MacAddr([4, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 0]);
            c.get(mac).requests.fetch_add(1, Ordering::Relaxed);
        }
        let s = c.snapshot();
        assert_eq!(s.len(), MAX_CLIENTS + 1, "the table plus 'other'");
        let other = s.last().unwrap();
        assert_eq!(other.0, None);
        assert_eq!(other.1.requests, 12, "the 10 + 2 that found the table full");
        // Known clients are still counted one by one.
        c.get(a).requests.fetch_add(1, Ordering::Relaxed);
        assert_eq!(c.snapshot()[0].1.requests, 2);
    }
}
