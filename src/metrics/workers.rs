//! The frame I/O workers' counters, per interface and worker thread.

use std::sync::atomic::{AtomicU64, Ordering};

use super::exposition::Exposition;
use super::IfaceSources;

/// Each worker's frames, batches, drops and errors.
pub(super) fn collect(e: &mut Exposition, iface: &IfaceSources) {
    for (i, w) in iface.workers.iter().enumerate() {
        let index = i.to_string();
        let l = [("iface", iface.name.as_str()), ("worker", index.as_str())];
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        e.counters(
            "l2san_worker_",
            &l,
            &[
                (
                    "frames_total",
                    "Frames received by the worker.",
                    g(&w.frames),
                ),
                (
                    "batches_total",
                    "Receive batches handled by the worker.",
                    g(&w.batches),
                ),
                (
                    "unknown_ethertype_total",
                    "Frames of an ethertype no target serves.",
                    g(&w.unknown_ethertype),
                ),
                (
                    "runts_total",
                    "Frames shorter than an Ethernet header.",
                    g(&w.runts),
                ),
                (
                    "tx_frames_total",
                    "Frames sent by the worker.",
                    g(&w.tx_frames),
                ),
                (
                    "tx_dropped_total",
                    "Replies the worker could not send.",
                    g(&w.tx_dropped),
                ),
                (
                    "ring_drops_total",
                    "Frames the kernel dropped because the receive ring was full.",
                    g(&w.ring_drops),
                ),
                (
                    "io_errors_total",
                    "Socket errors of the worker.",
                    g(&w.io_errors),
                ),
            ],
        );
    }
}
