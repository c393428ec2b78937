//! Target counters.

use std::sync::atomic::{AtomicU64, Ordering};

use l2san_common::stats::{Histogram, HistogramSnapshot};

/// A field of a counter struct and its plain copy: a relaxed atomic read, or a histogram's
/// snapshot.
pub trait Counter {
    type Value: core::fmt::Debug + Clone + Copy + Default + PartialEq + Eq;
    fn value(&self) -> Self::Value;
}

impl Counter for AtomicU64 {
    type Value = u64;
    fn value(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
}

impl Counter for Histogram {
    type Value = HistogramSnapshot;
    fn value(&self) -> HistogramSnapshot {
        self.snapshot()
    }
}

/// Declares a struct of counters, its plain copy (`Name => NameSnapshot`) and `snapshot()`,
/// so that each counter is named once.
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub struct $name:ident => $snap:ident {
            $( $(#[$fmeta:meta])* pub $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        #[doc = concat!("A plain copy of [`", stringify!($name), "`].")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $snap {
            $( pub $field: <$ty as $crate::target::stats::Counter>::Value, )*
        }

        impl $name {
            pub fn snapshot(&self) -> $snap {
                use $crate::target::stats::Counter as _;
                $snap {
                    $( $field: self.$field.value(), )*
                }
            }
        }
    };
}
pub(super) use counters;

counters! {
    /// Counters, all relaxed atomics. Drops are counted per reason; a broadcast frame that
    /// reaches several exports may count once per export.
    pub struct AoeStats => AoeStatsSnapshot {
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
}

pub(super) fn bump(c: &AtomicU64) -> u64 {
    c.fetch_add(1, Ordering::Relaxed) + 1
}

pub(super) fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

counters! {
    /// Counters of one export, all relaxed atomics, written on the frame path without a lock or
    /// an allocation.
    pub struct ExportStats => ExportStatsSnapshot {
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
        /// ATA command service times: the frame's `now` to the reply handed to the transmit path.
        pub latency: Histogram,
    }
}
