//! Target counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters, all relaxed atomics. Drops are counted per reason; a broadcast frame that
/// reaches several exports may count once per export.
#[derive(Debug, Default)]
pub struct AoeStats {
    /// Frames handed to [`AoeTarget::handle_frame`](super::AoeTarget::handle_frame).
    pub frames: AtomicU64,
    /// Replies committed (adverts included).
    pub replies: AtomicU64,
    /// Shorter than the header or the command's fixed argument.
    pub truncated: AtomicU64,
    /// Not ethertype 0x88A2.
    pub not_aoe: AtomicU64,
    /// Ver ≠ 1 (answered with Error 5 when unicast-addressed).
    pub bad_version: AtomicU64,
    /// R flag set: a response from another target.
    pub response_flag: AtomicU64,
    /// No export has this Major/Minor, or the source MAC is a group address.
    pub not_addressed: AtomicU64,
    /// Source MAC not on a non-empty Mac Mask List.
    pub masked: AtomicU64,
    /// Source MAC not on the export's allow-list.
    pub not_allowed: AtomicU64,
    /// Responses from another MAC for one of our shelf.slot addresses.
    pub conflicts: AtomicU64,
    /// Broadcast-addressed command other than the few that answer broadcasts.
    pub broadcast_refused: AtomicU64,
    /// Vendor-specific command (≥ 0xF0), ignored.
    pub vendor: AtomicU64,
    /// Replies with the AoE E flag.
    pub aoe_errors: AtomicU64,
    /// ATA commands answered with ERR in the status.
    pub ata_errors: AtomicU64,
    /// Store I/O errors among `ata_errors`.
    pub io_errors: AtomicU64,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub flushes: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
}

/// A plain copy of [`AoeStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AoeStatsSnapshot {
    pub frames: u64,
    pub replies: u64,
    pub truncated: u64,
    pub not_aoe: u64,
    pub bad_version: u64,
    pub response_flag: u64,
    pub not_addressed: u64,
    pub masked: u64,
    pub not_allowed: u64,
    pub conflicts: u64,
    pub broadcast_refused: u64,
    pub vendor: u64,
    pub aoe_errors: u64,
    pub ata_errors: u64,
    pub io_errors: u64,
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl AoeStats {
    pub fn snapshot(&self) -> AoeStatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AoeStatsSnapshot {
            frames: g(&self.frames),
            replies: g(&self.replies),
            truncated: g(&self.truncated),
            not_aoe: g(&self.not_aoe),
            bad_version: g(&self.bad_version),
            response_flag: g(&self.response_flag),
            not_addressed: g(&self.not_addressed),
            masked: g(&self.masked),
            not_allowed: g(&self.not_allowed),
            conflicts: g(&self.conflicts),
            broadcast_refused: g(&self.broadcast_refused),
            vendor: g(&self.vendor),
            aoe_errors: g(&self.aoe_errors),
            ata_errors: g(&self.ata_errors),
            io_errors: g(&self.io_errors),
            reads: g(&self.reads),
            writes: g(&self.writes),
            flushes: g(&self.flushes),
            bytes_read: g(&self.bytes_read),
            bytes_written: g(&self.bytes_written),
        }
    }
}

pub(super) fn bump(c: &AtomicU64) -> u64 {
    c.fetch_add(1, Ordering::Relaxed) + 1
}

pub(super) fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

/// Counters of one export, all relaxed atomics, written on the frame path without a lock or
/// an allocation.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Commands addressed to this export that passed its allow-list and Mac Mask List (every
    /// AoE command: ATA, config, mask, reserve; a broadcast one counts once per export).
    pub requests: AtomicU64,
    /// ATA reads and writes that succeeded, and their bytes.
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    /// ATA commands answered with ERR in the status.
    pub ata_errors: AtomicU64,
    /// ATA command service times (when the worker says when a frame arrived).
    pub latency: super::Histogram,
}

/// A plain copy of [`ExportStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStatsSnapshot {
    pub requests: u64,
    pub reads: u64,
    pub writes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub ata_errors: u64,
    pub latency: super::HistogramSnapshot,
}

impl ExportStats {
    pub fn snapshot(&self) -> ExportStatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExportStatsSnapshot {
            requests: g(&self.requests),
            reads: g(&self.reads),
            writes: g(&self.writes),
            bytes_read: g(&self.bytes_read),
            bytes_written: g(&self.bytes_written),
            ata_errors: g(&self.ata_errors),
            latency: self.latency.snapshot(),
        }
    }
}
