//! What the images and their overlays count: the overlays' sizes per client, and flushes.

use std::sync::atomic::Ordering;

use super::exposition::Exposition;
use super::{FlushStats, Sources};

/// Each overlay export's clients: blocks written and bytes on disk.
pub(super) fn overlays(e: &mut Exposition, sources: &Sources) {
    for (export, set) in sources.overlays() {
        for o in set.list() {
            let client = o.client.to_string();
            let l = [("export", export.as_str()), ("client", client.as_str())];
            e.gauge(
                "l2san_overlay_blocks",
                "4 KiB blocks a client has written to its overlay.",
                &l,
                o.blocks_written,
            );
            e.gauge(
                "l2san_overlay_allocated_bytes",
                "Bytes the client's overlay files take on disk.",
                &l,
                o.bytes_allocated,
            );
        }
    }
}

/// Flushes of written-back image data, and their failures.
pub(super) fn flushes(e: &mut Exposition, flush: &FlushStats) {
    e.counter(
        "l2san_image_flushes_total",
        "Flushes of written-back image data to stable storage.",
        &[],
        flush.flushes.load(Ordering::Relaxed),
    );
    e.counter(
        "l2san_image_flush_errors_total",
        "Failed flushes of image data.",
        &[],
        flush.errors.load(Ordering::Relaxed),
    );
}
