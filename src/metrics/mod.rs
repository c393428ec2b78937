//! Counters for operators: the Prometheus text exposition (format 0.0.4) that `serve --metrics`
//! answers on `GET /metrics`, and the table that `l2san ctl stats` prints.
//!
//! Nothing here is on the frame path: the workers and targets count with relaxed atomics, and a
//! scrape reads them.
//!
//! - [`exposition`]: the text format, families and samples;
//! - one collector per source: [`workers`], [`aoe`], [`fcoe`], [`images`] (overlays, flushes);
//! - [`table`](mod@table): what `ctl stats` prints;
//! - [`http`]: the scrape server.

mod aoe;
mod exposition;
mod fcoe;
mod http;
mod images;
mod table;
mod workers;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use l2san_aoe::AoeTarget;
use l2san_common::store::OverlaySet;
use l2san_common::worker::WorkerStats;
use l2san_fcoe::FcoeTarget;

pub use exposition::Exposition;
pub use http::{bind, spawn};
pub use table::{push_table, table};

/// What one interface counts.
pub struct IfaceSources {
    pub name: String,
    /// One per worker thread, by worker index.
    pub workers: Vec<Arc<WorkerStats>>,
    pub aoe: Option<Arc<AoeTarget>>,
    pub fcoe: Option<Arc<FcoeTarget>>,
}

/// Flushes of writeback images by the periodic flusher and at exit.
#[derive(Debug, Default)]
pub struct FlushStats {
    /// Images flushed (each image counts once per flush).
    pub flushes: AtomicU64,
    pub errors: AtomicU64,
}

/// Everything a scrape or `ctl stats` reads.
pub struct Sources {
    pub interfaces: Vec<IfaceSources>,
    pub flush: FlushStats,
    /// The overlay exports by name (replaced on reload), for `ctl overlay` and the metrics.
    pub overlays: RwLock<Vec<(String, Arc<OverlaySet>)>>,
}

impl Sources {
    /// The overlay exports now.
    pub fn overlays(&self) -> Vec<(String, Arc<OverlaySet>)> {
        self.overlays
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Every counter of `sources`, source by source. A family's samples are written together,
/// so each source is read for every interface before the next source.
pub fn collect(sources: &Sources) -> Exposition {
    let mut e = Exposition::default();
    e.gauge(
        "l2san_build_info",
        "The running l2san's version (always 1).",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    let per_interface: [fn(&mut Exposition, &IfaceSources); 6] = [
        workers::collect,
        aoe::target,
        aoe::exports,
        aoe::clients,
        fcoe::port,
        fcoe::io,
    ];
    for source in per_interface {
        for iface in &sources.interfaces {
            source(&mut e, iface);
        }
    }
    images::overlays(&mut e, sources);
    images::flushes(&mut e, &sources.flush);
    e
}

#[cfg(test)]
mod tests;
